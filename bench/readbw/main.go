// Command readbw measures read bandwidth with herd's AVX2 dot kernel: T goroutines (locked to
// threads) each run kernels.Dot(a, a) over a 1 GiB float32 buffer in 1 MiB
// pieces (the same slice twice, so each byte comes from memory once), each
// thread over its own half ("halves") or the threads over alternate pieces
// ("interleaved"); best of 5 passes, GB/s = 1e9 bytes/s. It measures the
// buffer twice: from the Go heap (4 KiB pages) and from anonymous memory
// the kernel is asked to back with transparent huge pages, as herd's
// packed weights are (fileio.AllocHuge); it prints how much of the second
// got huge pages.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/kernels"
)

const n = 1 << 28

func main() {
	buf := make([]float32, n)
	measure("4 KiB pages", buf)
	hb, free := fileio.AllocHuge(4 * n)
	measure("huge pages", unsafe.Slice((*float32)(unsafe.Pointer(&hb[0])), n))
	fmt.Printf("(%s of the second buffer in huge pages)\n", anonHuge())
	free()
}

// anonHuge returns the process's AnonHugePages line from smaps_rollup.
func anonHuge() string {
	f, err := os.Open("/proc/self/smaps_rollup")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "AnonHugePages:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func measure(what string, buf []float32) {
	for i := range buf {
		buf[i] = float32(i & 7)
	}
	const piece = 1 << 18 // floats: 1 MiB
	for _, th := range []int{1, 2} {
		for _, layout := range []string{"halves", "interleaved"} {
			if th == 1 && layout == "interleaved" {
				continue
			}
			best := 0.0
			for pass := 0; pass < 5; pass++ {
				var wg sync.WaitGroup
				t0 := time.Now()
				for k := 0; k < th; k++ {
					wg.Add(1)
					go func(k int) {
						runtime.LockOSThread()
						defer wg.Done()
						// "halves": thread k reads its own half, a piece at
						// a time; "interleaved": pieces k, k+th, …, the threads
						// side by side, as MatMul's chunks of rows are handed out
						lo, hi, step := k*(n/th), (k+1)*(n/th), piece
						if layout == "interleaved" {
							lo, hi, step = k*piece, n, th*piece
						}
						for i := lo; i < hi; i += step {
							c := buf[i : i+piece]
							_ = kernels.Dot(c, c)
						}
					}(k)
				}
				wg.Wait()
				if g := float64(4*n) / time.Since(t0).Seconds() / 1e9; g > best {
					best = g
				}
			}
			fmt.Printf("%s: threads=%d %s read %.1f GB/s\n", what, th, layout, best)
		}
	}
}
