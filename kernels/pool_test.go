package kernels

import (
	"sync/atomic"
	"testing"
)

func TestParallelForCoversEachIndexOnce(t *testing.T) {
	withThreads(t, func(t *testing.T) {
		for _, n := range []int{0, 1, 2, 7, 33, 1000, 4097} {
			for _, grain := range []int{0, 1, 3, 64, 5000} {
				hits := make([]atomic.Int32, n)
				ParallelFor(n, grain, func(lo, hi int) {
					if hi-lo < max(grain, 1) && hi != n {
						t.Errorf("n=%d grain=%d: chunk [%d,%d) smaller than grain", n, grain, lo, hi)
					}
					for i := lo; i < hi; i++ {
						hits[i].Add(1)
					}
				})
				for i := range hits {
					if h := hits[i].Load(); h != 1 {
						t.Fatalf("threads=%d n=%d grain=%d: index %d ran %d times", Threads(), n, grain, i, h)
					}
				}
			}
		}
	})
}

func TestParallelForNested(t *testing.T) {
	withThreads(t, func(t *testing.T) {
		var total atomic.Int64
		ParallelFor(16, 1, func(lo, hi int) {
			for range hi - lo {
				ParallelFor(100, 1, func(lo, hi int) { total.Add(int64(hi - lo)) })
			}
		})
		if total.Load() != 1600 {
			t.Fatalf("nested ParallelFor ran %d indices, want 1600", total.Load())
		}
	})
}

func TestSetThreads(t *testing.T) {
	SetThreads(3)
	if Threads() != 3 {
		t.Fatalf("Threads() = %d after SetThreads(3)", Threads())
	}
	SetThreads(0)
	if Threads() < 1 {
		t.Fatalf("Threads() = %d after SetThreads(0)", Threads())
	}
}
