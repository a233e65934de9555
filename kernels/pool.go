package kernels

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The pool: persistent worker goroutines that take jobs from a buffered
// channel. A ParallelFor call posts one job per helper it wants, then works on
// the job itself. Chunks are claimed with an atomic counter, and the caller
// waits only for the chunks, never for the helpers, so a helper that picks up
// a job late (or never, because all workers are busy, e.g. in a nested
// ParallelFor) costs nothing and cannot deadlock.

type job struct {
	n, chunk int
	nchunks  int64
	next     atomic.Int64
	finished atomic.Int64
	done     sync.WaitGroup
	fn       func(lo, hi int)
}

// run claims and runs chunks of j until none are left.
func (j *job) run() {
	for {
		c := j.next.Add(1) - 1
		if c >= j.nchunks {
			return
		}
		lo := int(c) * j.chunk
		hi := min(lo+j.chunk, j.n)
		j.fn(lo, hi)
		j.finished.Add(1)
		j.done.Done()
	}
}

// spinFor is how long a worker that has run a job keeps polling for the
// next one, and how long a caller polls for its job's last chunk, before
// either blocks. Decoding posts a job every few hundred microseconds; a
// blocked thread takes tens of microseconds to wake (a futex and, in a
// virtual machine, often a halted virtual CPU), which left a quarter of
// the second core idle in a Q4_0 generation. The spin is bounded, so an
// idle pool still sleeps.
var spinFor = spinDuration()

func spinDuration() time.Duration {
	if v := os.Getenv("HERD_SPIN_US"); v != "" {
		if us, err := strconv.Atoi(v); err == nil && us >= 0 {
			return time.Duration(us) * time.Microsecond
		}
	}
	return 200 * time.Microsecond
}

// spinRecv polls the job queue for up to spinFor; nil if nothing came.
func spinRecv() *job {
	if spinFor <= 0 {
		return nil
	}
	deadline := time.Now().Add(spinFor)
	for {
		for range 64 {
			select {
			case j := <-pool.jobs:
				return j
			default:
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
	}
}

// wait returns when every chunk of j has run: it polls for up to spinFor,
// then blocks.
func (j *job) wait() {
	if spinFor > 0 && j.finished.Load() < j.nchunks {
		deadline := time.Now().Add(spinFor)
	poll:
		for j.finished.Load() < j.nchunks {
			for range 64 {
				if j.finished.Load() >= j.nchunks {
					break poll
				}
			}
			if time.Now().After(deadline) {
				break
			}
		}
	}
	j.done.Wait()
}

var pool struct {
	mu      sync.Mutex
	threads atomic.Int32
	workers int // goroutines started so far
	jobs    chan *job
}

func init() {
	pool.jobs = make(chan *job, 256)
	SetThreads(0)
}

// SetThreads sets the number of threads ParallelFor uses (the caller counts as
// one). n <= 0 means runtime.NumCPU(). Workers are started on demand and kept.
func SetThreads(n int) {
	if n <= 0 {
		n = runtime.NumCPU()
	}
	pool.mu.Lock()
	defer pool.mu.Unlock()
	for pool.workers < n-1 {
		go worker()
		pool.workers++
	}
	pool.threads.Store(int32(n))
}

// Threads returns the number of threads ParallelFor uses.
func Threads() int { return int(pool.threads.Load()) }

func worker() {
	for j := range pool.jobs {
		for j != nil {
			j.run()
			j = spinRecv()
		}
	}
}

// ParallelFor splits [0,n) into chunks of at least grain indices and runs
// fn(lo, hi) on each, spread over the pool's threads; it returns when all
// chunks are done. It runs fn(0, n) on the caller when n <= grain or only one
// thread is configured. fn must be safe to call concurrently on disjoint
// ranges.
func ParallelFor(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	chunk, nchunks := split(n, grain)
	if nchunks <= 1 {
		fn(0, n)
		return
	}
	parallelChunks(n, chunk, nchunks, Threads(), fn)
}

// split is how ParallelFor cuts [0,n): chunks of chunk indices, nchunks of
// them (1: the caller runs it all).
func split(n, grain int) (chunk, nchunks int) {
	grain = max(grain, 1)
	t := Threads()
	if n <= grain || t == 1 {
		return n, 1
	}
	// A few chunks per thread balance load on a noisy machine.
	chunk = max(grain, (n+4*t-1)/(4*t))
	return chunk, (n + chunk - 1) / chunk
}

// serial reports whether ParallelFor(n, grain, …) would run everything on
// the caller, so that a kernel can call its body directly and build no
// closure (and allocate nothing) for work too small to share.
func serial(n, grain int) bool {
	_, nchunks := split(n, grain)
	return nchunks <= 1
}

// parallelTasks runs fn(i) for every i in [0,n), one index per claim.
func parallelTasks(n int, fn func(i int)) {
	if n <= 0 {
		return
	}
	t := Threads()
	if n == 1 || t == 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	parallelChunks(n, 1, n, t, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			fn(i)
		}
	})
}

func parallelChunks(n, chunk, nchunks, t int, fn func(lo, hi int)) {
	j := &job{n: n, chunk: chunk, nchunks: int64(nchunks), fn: fn}
	j.done.Add(nchunks)
	helpers := min(t, nchunks) - 1
	for range helpers {
		select {
		case pool.jobs <- j:
		default: // queue full: the caller does the work
		}
	}
	j.run()
	j.wait()
}

// scratchPool recycles the large temporary buffers of kernels called over
// and over in training (attention backward), so that each call does not
// leave megabytes of garbage behind.
var scratchPool sync.Pool

// getScratch returns a buffer of n float32s with unspecified contents;
// putScratch gives it back.
func getScratch(n int) *[]float32 {
	if b, ok := scratchPool.Get().(*[]float32); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]float32, n)
	return &b
}

func putScratch(b *[]float32) { scratchPool.Put(b) }
