// Command readbw measures read bandwidth with herd's AVX2 dot kernel: T goroutines (locked to
// threads) each run kernels.Dot(a, a) over their half of a 1 GiB float32
// buffer, in 1 MiB pieces (the same slice twice, so each byte comes from
// memory once); best of 5 passes, GB/s = 1e9 bytes/s.
package main

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/herd-llm/herd/kernels"
)

func main() {
	const n = 1 << 28
	buf := make([]float32, n)
	for i := range buf {
		buf[i] = float32(i & 7)
	}
	for _, th := range []int{1, 2} {
		best := 0.0
		for pass := 0; pass < 5; pass++ {
			var wg sync.WaitGroup
			part := n / th
			t0 := time.Now()
			for k := 0; k < th; k++ {
				wg.Add(1)
				go func(k int) {
					runtime.LockOSThread()
					defer wg.Done()
					s := buf[k*part : (k+1)*part]
					for i := 0; i < len(s); i += 1 << 18 {
						c := s[i : i+1<<18]
						_ = kernels.Dot(c, c)
					}
				}(k)
			}
			wg.Wait()
			if g := float64(4*n) / time.Since(t0).Seconds() / 1e9; g > best {
				best = g
			}
		}
		fmt.Printf("threads=%d read %.1f GB/s\n", th, best)
	}
}
