//go:build mpi && cgo

// Command allreducebench times MPI all-reduce, reduce-scatter and
// all-gather of float32 buffers over the ranks of an mpirun job, for
// BENCHMARKS.md's communication model:
//
//	go build -tags mpi -o /tmp/arb ./dist/internal/allreducebench
//	mpirun --oversubscribe --allow-run-as-root -np 2 /tmp/arb -n 15191712 -r 10
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/herd-llm/herd/dist"
)

func main() {
	n := flag.Int("n", 1<<20, "float32 values per buffer")
	reps := flag.Int("r", 10, "repetitions (the median is reported)")
	flag.Parse()
	c, err := dist.World()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer dist.Finalize()
	buf := make([]float32, *n/c.Size()*c.Size())
	part := make([]float32, len(buf)/c.Size())
	ops := []struct {
		name string
		f    func() error
	}{
		{"all-reduce", func() error { return c.AllReduceF32(buf) }},
		{"reduce-scatter", func() error { return c.ReduceScatterF32(buf, part) }},
		{"all-gather", func() error { return c.AllGatherF32(part, buf) }},
	}
	for _, op := range ops {
		var ts []float64
		for range *reps {
			if err := c.Barrier(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			t := time.Now()
			if err := op.f(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			ts = append(ts, time.Since(t).Seconds())
		}
		slices.Sort(ts)
		med := ts[len(ts)/2]
		bytes := 4 * float64(len(buf))
		if c.Rank() == 0 {
			fmt.Printf("%d ranks, %s of %.1f MB: median %.2f ms (min %.2f), %.2f GB/s of buffer\n", c.Size(), op.name, bytes/1e6, med*1e3, ts[0]*1e3, bytes/med/1e9)
		}
	}
}
