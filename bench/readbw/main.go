// Command readbw measures read bandwidth with herd's AVX2 dot kernel: T goroutines (locked to
// threads) each run kernels.Dot(a, a) over a 1 GiB float32 buffer in 1 MiB
// pieces (the same slice twice, so each byte comes from memory once), each
// thread over its own half ("halves") or the threads over alternate pieces
// ("interleaved"); best of 5 passes, GB/s = 1e9 bytes/s. It measures the
// buffer twice: from the Go heap (4 KiB pages) and from anonymous memory
// the kernel is asked to back with transparent huge pages, as herd's
// packed weights are (fileio.AllocHuge); it prints how much of the second
// got huge pages. Given a file (readbw MODEL.gguf), it also reads the
// file's read-only mapping (its first GiB), as herd reads the matrices it
// does not pack in place, and prints how much of the mapping the kernel
// maps with huge pages (FilePmdMapped: page-cache folios of 2 MiB, which
// ext4 and xfs make on recent kernels).
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
	"github.com/herd-llm/herd/tensor"
)

const n = 1 << 28

func main() {
	buf := make([]float32, n)
	fill(buf)
	measure("4 KiB pages", buf)
	hb, free := fileio.AllocHuge(4 * n)
	hf := unsafe.Slice((*float32)(unsafe.Pointer(&hb[0])), n)
	fill(hf)
	measure("huge pages", hf)
	fmt.Printf("(%s of the second buffer in huge pages)\n", rollup("AnonHugePages"))
	free()
	if len(os.Args) < 2 {
		return
	}
	b, unmap, err := fileio.Map(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "readbw:", err)
		os.Exit(1)
	}
	defer unmap()
	f := tensor.F32s(b[:min(len(b), 4*n)&^(4<<20-1)])
	if len(f) == 0 {
		fmt.Fprintf(os.Stderr, "readbw: %s: smaller than the 4 MiB a measurement takes\n", os.Args[1])
		os.Exit(1)
	}
	measure("file mapping", f)
	fmt.Printf("(%s of the mapping in huge pages; %d MiB read)\n", rollup("FilePmdMapped"), 4*len(f)>>20)
}

func fill(buf []float32) {
	for i := range buf {
		buf[i] = float32(i & 7)
	}
}

// rollup returns the value of one line of the process's smaps_rollup.
func rollup(key string) string {
	f, err := os.Open("/proc/self/smaps_rollup")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func measure(what string, buf []float32) {
	n := len(buf)
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
