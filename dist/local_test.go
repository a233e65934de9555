package dist

import (
	"sync"
	"testing"
)

// Local's ranks run every collective among goroutines, sums in rank order.
func TestLocal(t *testing.T) {
	const n = 3
	comms := Local(n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = localRank(comms[r])
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

type fail string

func (f fail) Error() string { return string(f) }

func localRank(c Comm) error {
	r, n := c.Rank(), c.Size()
	buf := []float32{float32(r), 1, 0.1 * float32(r)}
	if err := c.AllReduceF32(buf); err != nil {
		return err
	}
	if buf[0] != 3 || buf[1] != 3 || buf[2] != (float32(0)+0.1)+0.2 {
		return fail("all-reduce f32 wrong")
	}
	req, err := c.IAllReduceF32(buf)
	if err != nil || req.Wait() != nil || buf[0] != 9 {
		return fail("non-blocking all-reduce wrong")
	}
	f64 := []float64{float64(r)}
	if err := c.AllReduceF64(f64); err != nil || f64[0] != 3 {
		return fail("all-reduce f64 wrong")
	}
	b := []byte{byte(r)}
	if err := c.Bcast(b, 2); err != nil || b[0] != 2 {
		return fail("broadcast wrong")
	}
	send := make([]float32, 2*n)
	for i := range send {
		send[i] = float32(i)
	}
	part := make([]float32, 2)
	if err := c.ReduceScatterF32(send, part); err != nil || part[0] != float32(3*2*r) {
		return fail("reduce-scatter wrong")
	}
	whole := make([]float32, 2*n)
	if err := c.AllGatherF32(part, whole); err != nil || whole[2*n-1] != float32(3*(2*n-1)) {
		return fail("all-gather wrong")
	}
	msgs := make([][]byte, n)
	for q := range msgs {
		msgs[q] = []byte{byte(r), byte(q)}
	}
	in, err := c.AllToAll(msgs)
	if err != nil {
		return err
	}
	for q := range in {
		if len(in[q]) != 2 || in[q][0] != byte(q) || in[q][1] != byte(r) {
			return fail("all-to-all wrong")
		}
	}
	return c.Barrier()
}
