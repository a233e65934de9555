package train

import (
	"fmt"
	"math"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/dist"
)

// Overlap of the gradient all-reduce with the backward pass
// (Config.Overlap, without ZeRO). The trained tensors are packed into
// buckets of about bucketValues values in reverse order (the last
// block's first: the backward pass finishes them first). During a rank's
// last micro-batch of a step, the forward pass's MarkReady steps say
// when a tensor's gradient is final (the model marks each block's and
// the output head's); the loop then completes it (adds the step's
// earlier micro-batches, see stashGrads) and, once every tensor of the
// next bucket in order is final, copies the bucket and starts its
// non-blocking all-reduce, polling the ones in flight at every mark so
// that MPI progresses them. After the backward pass the remaining
// buckets start, in order, and the loop waits for all and copies the
// sums back. Every rank starts the same buckets in the same order
// whatever its timing, so the sums are the blocking path's: the run is
// bit for bit the same with and without overlap. A tensor's gradient
// that changes after its bucket started (an op adding to it after its
// mark) is an error, checked by a checksum taken at the mark.
type overlap struct {
	comm     dist.Comm
	params   []autograd.Param
	buckets  [][]int // param indices, in starting order
	bufs     [][]float32
	bucketOf []int            // param → bucket
	of       map[*float32]int // a gradient's first value → param
	stashOff []int            // param → its offset in loop.stash
	// this step's state
	ready, stashed []bool
	sums           []uint64
	count          []int // per bucket, its tensors final
	next           int   // the next bucket to start
	reqs           []dist.Request
	err            error
	early          int  // tensors marked final during the backward pass, this step
	reported       bool // the first step's count was logged
}

func newOverlap(comm dist.Comm, params []autograd.Param) *overlap {
	o := &overlap{comm: comm, params: params, bucketOf: make([]int, len(params)), of: map[*float32]int{},
		stashOff: make([]int, len(params)), ready: make([]bool, len(params)), stashed: make([]bool, len(params)),
		sums: make([]uint64, len(params))}
	off := 0
	for i, p := range params {
		o.stashOff[i] = off
		off += len(p.Grad)
		if len(p.Grad) > 0 {
			o.of[&p.Grad[0]] = i
		}
	}
	size := bucketValues + 1 // start a bucket
	for i := len(params) - 1; i >= 0; i-- {
		n := len(params[i].Grad)
		if size+n > bucketValues {
			o.buckets = append(o.buckets, nil)
			o.bufs = append(o.bufs, nil)
			size = 0
		}
		b := len(o.buckets) - 1
		o.buckets[b] = append(o.buckets[b], i)
		o.bucketOf[i] = b
		size += n
	}
	for b, ps := range o.buckets {
		n := 0
		for _, i := range ps {
			n += len(params[i].Grad)
		}
		o.bufs[b] = make([]float32, n)
	}
	o.count = make([]int, len(o.buckets))
	return o
}

// begin readies the state for a step.
func (o *overlap) begin() {
	clear(o.ready)
	clear(o.stashed)
	clear(o.count)
	o.next, o.reqs, o.err = 0, o.reqs[:0], nil
}

// hook is the tape's Ready during a rank's last micro-batch; withStash
// says that the step's earlier micro-batches wait in l.stash.
func (o *overlap) hook(l *loop, withStash bool) func([][]float32) {
	return func(grads [][]float32) {
		if err := l.timeComm(func() error {
			for _, g := range grads {
				i, ok := o.of[&g[0]]
				if !ok || o.ready[i] {
					continue
				}
				if withStash {
					addInto(o.params[i].Grad, l.stash[o.stashOff[i]:])
					o.stashed[i] = true
				}
				o.sums[i] = checksum(o.params[i].Grad)
				o.markReady(i)
			}
			if err := o.start(); err != nil {
				return err
			}
			for _, r := range o.reqs { // let MPI progress them
				if _, err := r.Test(); err != nil {
					return err
				}
			}
			return nil
		}); err != nil && o.err == nil {
			o.err = err
		}
	}
}

func (o *overlap) markReady(i int) {
	o.ready[i] = true
	o.count[o.bucketOf[i]]++
}

// start starts the next buckets in order while every tensor of them is
// final.
func (o *overlap) start() error {
	for o.next < len(o.buckets) && o.count[o.next] == len(o.buckets[o.next]) {
		b, off := o.bufs[o.next], 0
		for _, i := range o.buckets[o.next] {
			off += copy(b[off:], o.params[i].Grad)
		}
		r, err := o.comm.IAllReduceF32(b)
		if err != nil {
			return fmt.Errorf("all-reduce of the gradients: %w", err)
		}
		o.reqs = append(o.reqs, r)
		o.next++
	}
	return nil
}

// finish starts the buckets left, waits for all, checks that no
// gradient changed after its bucket started and copies the sums back.
func (o *overlap) finish() error {
	hooked := make([]bool, len(o.params))
	copy(hooked, o.ready)
	o.early = 0
	for _, h := range hooked {
		if h {
			o.early++
		}
	}
	for i := range o.params {
		if !o.ready[i] {
			o.markReady(i)
		}
	}
	err := o.start()
	for _, r := range o.reqs {
		if werr := r.Wait(); werr != nil && err == nil {
			err = fmt.Errorf("all-reduce of the gradients: %w", werr)
		}
	}
	if err == nil {
		err = o.err
	}
	if err != nil {
		return err
	}
	for i, h := range hooked {
		if h && checksum(o.params[i].Grad) != o.sums[i] {
			return fmt.Errorf("the gradient of %s changed after its all-reduce started: an op adds to it after the forward pass marked it final (autograd.Tape.MarkReady); train without --overlap", o.params[i].Name)
		}
	}
	for b, ps := range o.buckets {
		off := 0
		for _, i := range ps {
			off += copy(o.params[i].Grad, o.bufs[b][off:])
		}
	}
	return nil
}

// addInto adds s (at least as long) into g: g = s + g, as addStash.
func addInto(g, s []float32) {
	for j := range g {
		g[j] = s[j] + g[j]
	}
}

// checksum is a Fletcher-style sum of the values' bits.
func checksum(g []float32) uint64 {
	var a, b uint64
	for _, v := range g {
		a += uint64(math.Float32bits(v))
		b += a
	}
	return a ^ b<<1
}
