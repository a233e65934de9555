package dist

import (
	"fmt"
	"os"
	"sync"
)

// Local is a group of n ranks inside one process, for goroutines: rank r
// is Local(n)[r], each used by one goroutine. Every collective is an
// exchange through shared memory (each rank posts its part, waits for all,
// reads what it needs, waits again); sums are taken in rank order, the
// same on every rank. It is pure Go, so the code that runs across MPI
// ranks can be run with several ranks by any build (the tests do).
func Local(n int) []Comm {
	g := &localGroup{n: n, slots: make([]any, n)}
	g.cond = sync.NewCond(&g.mu)
	out := make([]Comm, n)
	for r := range out {
		out[r] = &localComm{g: g, rank: r}
	}
	return out
}

type localGroup struct {
	n       int
	mu      sync.Mutex
	cond    *sync.Cond
	arrived int
	gen     uint64
	slots   []any
}

// wait is a barrier of the group's n ranks.
func (g *localGroup) wait() {
	g.mu.Lock()
	gen := g.gen
	g.arrived++
	if g.arrived == g.n {
		g.arrived = 0
		g.gen++
		g.cond.Broadcast()
	} else {
		for gen == g.gen {
			g.cond.Wait()
		}
	}
	g.mu.Unlock()
}

type localComm struct {
	g    *localGroup
	rank int
}

// exchange posts v and calls read with every rank's post, between two
// barriers.
func (c *localComm) exchange(v any, read func(slots []any)) {
	c.g.slots[c.rank] = v
	c.g.wait()
	read(c.g.slots)
	c.g.wait()
}

func (c *localComm) Rank() int { return c.rank }
func (c *localComm) Size() int { return c.g.n }

func (c *localComm) Barrier() error { c.g.wait(); return nil }

func (c *localComm) Bcast(buf []byte, root int) error {
	if err := checkRoot(root, c.g.n); err != nil {
		return err
	}
	var err error
	c.exchange(buf, func(s []any) {
		if src := s[root].([]byte); len(src) != len(buf) {
			err = fmt.Errorf("dist: broadcast of %d bytes into %d", len(src), len(buf))
		} else if c.rank != root {
			copy(buf, src)
		}
	})
	return err
}

func (c *localComm) BcastF32(buf []float32, root int) error {
	if err := checkRoot(root, c.g.n); err != nil {
		return err
	}
	var err error
	c.exchange(buf, func(s []any) {
		if src := s[root].([]float32); len(src) != len(buf) {
			err = fmt.Errorf("dist: broadcast of %d values into %d", len(src), len(buf))
		} else if c.rank != root {
			copy(buf, src)
		}
	})
	return err
}

// sumInto is the rank-order sum of every rank's slice of T into out.
func sumInto[T float32 | float64](s []any, out []T) error {
	for q := range s {
		if len(s[q].([]T)) != len(out) {
			return fmt.Errorf("dist: all-reduce of %d values against %d", len(s[q].([]T)), len(out))
		}
	}
	for i := range out {
		var v T
		for q := range s {
			v += s[q].([]T)[i]
		}
		out[i] = v
	}
	return nil
}

func (c *localComm) AllReduceF32(buf []float32) error {
	sum := make([]float32, len(buf))
	var err error
	c.exchange(buf, func(s []any) { err = sumInto(s, sum) })
	copy(buf, sum)
	return err
}

// IAllReduceF32 is AllReduceF32, done when it returns (the ranks are
// goroutines: it blocks until every rank has started it).
func (c *localComm) IAllReduceF32(buf []float32) (Request, error) {
	err := c.AllReduceF32(buf)
	return done{err}, err
}

func (c *localComm) AllReduceF64(buf []float64) error {
	sum := make([]float64, len(buf))
	var err error
	c.exchange(buf, func(s []any) { err = sumInto(s, sum) })
	copy(buf, sum)
	return err
}

func (c *localComm) ReduceScatterF32(send, recv []float32) error {
	if len(send) != c.g.n*len(recv) {
		return fmt.Errorf("dist: reduce-scatter of %d values into blocks of %d over %d ranks", len(send), len(recv), c.g.n)
	}
	sum := make([]float32, len(send))
	var err error
	c.exchange(send, func(s []any) { err = sumInto(s, sum) })
	copy(recv, sum[c.rank*len(recv):])
	return err
}

func (c *localComm) AllGatherF32(send, recv []float32) error {
	if len(recv) != c.g.n*len(send) {
		return fmt.Errorf("dist: all-gather of %d values a rank into %d over %d ranks", len(send), len(recv), c.g.n)
	}
	var err error
	c.exchange(send, func(s []any) {
		for q := range s {
			if len(s[q].([]float32)) != len(send) {
				err = fmt.Errorf("dist: all-gather of unequal blocks")
				return
			}
			copy(recv[q*len(send):], s[q].([]float32))
		}
	})
	return err
}

func (c *localComm) AllToAll(send [][]byte) ([][]byte, error) {
	if len(send) != c.g.n {
		return nil, fmt.Errorf("dist: all-to-all of %d messages over %d ranks", len(send), c.g.n)
	}
	recv := make([][]byte, c.g.n)
	c.exchange(send, func(s []any) {
		for q := range s {
			recv[q] = append([]byte(nil), s[q].([][]byte)[c.rank]...)
		}
	})
	return recv, nil
}

// Abort exits the process with code (every rank is in it).
func (c *localComm) Abort(code int) { os.Exit(code) }
