// Command kernelcpu measures the CPU time (getrusage) of one kernels.MatMul
// call per weight type and activation-row count, one thread, weights in
// cache: go run ./bench/kernelcpu -t Q4_0,Q8_0 -nt 1,64 (BENCHMARKS.md, issue 16).
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	types := flag.String("t", "Q4_0,Q8_0,F16,Q4_K", "types")
	rows := flag.Int("rows", 256, "")
	cols := flag.Int("cols", 2048, "")
	nts := flag.String("nt", "1,64", "")
	work := flag.Int("work", 2000, "rows·nt units ×1000 of work per run")
	prof := flag.String("prof", "", "")
	flag.Parse()
	if *prof != "" {
		f, _ := os.Create(*prof)
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	kernels.SetThreads(1)
	r := rand.New(rand.NewPCG(1, 2))
	for _, ts := range split(*types) {
		dt, err := tensor.ParseDType(ts)
		if err != nil {
			panic(err)
		}
		rb, _ := dt.RowBytes(*cols)
		w := make([]byte, rb**rows)
		x := make([]float32, *cols)
		for i := range *rows {
			for j := range x {
				x[j] = float32(r.NormFloat64())
			}
			if err := tensor.Quantize(dt, w[i*rb:(i+1)*rb], x); err != nil {
				panic(err)
			}
		}
		for _, ns := range split(*nts) {
			var nt int
			fmt.Sscan(ns, &nt)
			xs := make([]float32, nt**cols)
			for i := range xs {
				xs[i] = float32(r.NormFloat64())
			}
			y := make([]float32, nt**rows)
			calls := max(1, *work*1000/(nt**rows/16+1)/16)
			best := time.Duration(1 << 62)
			for rep := 0; rep < 5; rep++ {
				c0 := cpu()
				for range calls {
					kernels.MatMul(dt, w, *rows, *cols, xs, nt, y)
				}
				if d := (cpu() - c0) / time.Duration(calls); d < best {
					best = d
				}
			}
			macs := float64(*rows) * float64(*cols) * float64(nt)
			fmt.Printf("%-6s %dx%d nt=%-4d %9.1f µs/call  %6.1f GMAC/s (cpu)\n", ts, *rows, *cols, nt, float64(best.Nanoseconds())/1e3, macs/float64(best.Nanoseconds()))
		}
	}
}

func split(s string) []string {
	var out []string
	cur := ""
	for _, c := range s {
		if c == ',' {
			out = append(out, cur)
			cur = ""
		} else {
			cur += string(c)
		}
	}
	return append(out, cur)
}
