package train

import (
	"fmt"
	"math"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/dist"
)

// ZeRO stage 1 (Rajbhandari et al. 2020): the optimizer's state sharded
// over the ranks. The trained values are cut into units (each tensor in
// runs of normChunk values, GradNorm's chunks), given to the ranks in
// contiguous, about equal shares; a rank keeps AdamW's moments of its own
// units only, so the optimizer's memory per rank falls by the number of
// ranks. A step reduce-scatters the gradients (each rank receives the
// sum of its units'), takes the global norm from the units' sums of
// squares (gathered and added in GradNorm's order, so the norm is the one
// process's own computation), clips and updates its units, and
// all-gathers the updated values. AdamW is element by element, so the
// weights are those of the run without sharding given the same gradients.

// normChunk is GradNorm's chunk.
const normChunk = 1 << 16

// zunit is a run of one tensor's values, [lo, hi) of params[param].
type zunit struct{ param, lo, hi, owner int }

// zero is the sharded optimizer state of a run.
type zero struct {
	comm  dist.Comm
	units []zunit
	mine  []int // this rank's units, in order
	block int   // the longest share (the collectives' block)
	m, v  [][]float32
	send  []float32 // ranks × block
	recv  []float32 // block
	sums  []float64 // per unit
}

// newZero cuts params into units and gives them to comm's ranks.
func newZero(comm dist.Comm, params []autograd.Param) *zero {
	var total int
	for _, p := range params {
		total += len(p.Data)
	}
	z := &zero{comm: comm}
	size := comm.Size()
	share := make([]int, size)
	off := 0
	for i, p := range params {
		for lo := 0; lo < len(p.Data); lo += normChunk {
			hi := min(len(p.Data), lo+normChunk)
			owner := min(size-1, int(int64(off)*int64(size)/int64(max(1, total))))
			z.units = append(z.units, zunit{param: i, lo: lo, hi: hi, owner: owner})
			share[owner] += hi - lo
			if owner == comm.Rank() {
				z.mine = append(z.mine, len(z.units)-1)
			}
			off += hi - lo
		}
	}
	for _, n := range share {
		z.block = max(z.block, n)
	}
	z.send, z.recv = make([]float32, size*z.block), make([]float32, z.block)
	z.sums = make([]float64, len(z.units))
	return z
}

// take keeps this rank's moments of opt (whole on every rank, as restored
// and broadcast) and drops opt's.
func (z *zero) take(opt *AdamW) {
	for _, u := range z.mine {
		x := z.units[u]
		z.m = append(z.m, append([]float32(nil), opt.M[x.param][x.lo:x.hi]...))
		z.v = append(z.v, append([]float32(nil), opt.V[x.param][x.lo:x.hi]...))
	}
	for i := range opt.M {
		opt.M[i], opt.V[i] = nil, nil
	}
}

// pack copies each rank's units of vals (a tensor's values by index) into
// its block of buf.
func (z *zero) pack(buf []float32, vals func(param int) []float32, only int) {
	at := make([]int, z.comm.Size())
	for _, u := range z.units {
		if only >= 0 && u.owner != only {
			continue
		}
		base := u.owner * z.block
		if only >= 0 {
			base = 0
		}
		at[u.owner] += copy(buf[base+at[u.owner]:], vals(u.param)[u.lo:u.hi])
	}
}

// step is the optimizer step of a rank: reduce-scatter the gradients, the
// global norm, the divergence check (check, given the norm), clipping,
// the update of this rank's units and the all-gather of the values. It
// returns the norm.
func (z *zero) step(l *loop, lr float64, check func(norm float64) error) (float64, error) {
	clear(z.send)
	z.pack(z.send, func(i int) []float32 { return l.params[i].Grad }, -1)
	if err := l.timeComm(func() error { return z.comm.ReduceScatterF32(z.send, z.recv) }); err != nil {
		return 0, fmt.Errorf("reduce-scatter of the gradients: %w", err)
	}
	clear(z.sums)
	off := 0
	for _, u := range z.mine {
		var s float64
		for _, g := range z.recv[off : off+z.units[u].hi-z.units[u].lo] {
			s += float64(g) * float64(g)
		}
		z.sums[u] = s
		off += z.units[u].hi - z.units[u].lo
	}
	if err := l.timeComm(func() error { return z.comm.AllReduceF64(z.sums) }); err != nil {
		return 0, fmt.Errorf("all-reduce of the gradient norm: %w", err)
	}
	var total float64
	for _, s := range z.sums { // GradNorm's order: tensors, then chunks
		total += s
	}
	norm := math.Sqrt(total)
	if err := check(norm); err != nil {
		return norm, err
	}
	g := z.recv[:off]
	if c := l.cfg.GradClip; c > 0 && norm > c {
		s := float32(c / norm)
		for j := range g {
			g[j] *= s
		}
	}
	l.opt.Step++
	co := l.opt.coefficients(lr)
	off = 0
	for k, u := range z.mine {
		x := z.units[u]
		p := l.params[x.param]
		n := x.hi - x.lo
		co.update(z.m[k], z.v[k], p.Data[x.lo:x.hi], g[off:off+n], co.decayOf(p))
		off += n
	}
	return norm, z.gatherValues(l)
}

// gatherValues gives every rank every rank's updated values.
func (z *zero) gatherValues(l *loop) error {
	z.pack(z.recv, func(i int) []float32 { return l.params[i].Data }, z.comm.Rank())
	if err := l.timeComm(func() error { return z.comm.AllGatherF32(z.recv, z.send) }); err != nil {
		return fmt.Errorf("all-gather of the weights: %w", err)
	}
	at := make([]int, z.comm.Size())
	for _, u := range z.units {
		base := u.owner * z.block
		at[u.owner] += copy(l.params[u.param].Data[u.lo:u.hi], z.send[base+at[u.owner]:])
	}
	return nil
}

// full is the whole optimizer, gathered from every rank's units, for a
// checkpoint (every rank calls it; its moments are the gathered ones).
func (z *zero) full(opt *AdamW, params []autograd.Param) (*AdamW, error) {
	out := &AdamW{Beta1: opt.Beta1, Beta2: opt.Beta2, Eps: opt.Eps, WeightDecay: opt.WeightDecay, Step: opt.Step,
		M: make([][]float32, len(params)), V: make([][]float32, len(params))}
	for i, p := range params {
		out.M[i], out.V[i] = make([]float32, len(p.Data)), make([]float32, len(p.Data))
	}
	for _, mv := range []struct{ mine, all [][]float32 }{{z.m, out.M}, {z.v, out.V}} {
		off := 0
		for k, u := range z.mine {
			off += copy(z.recv[off:], mv.mine[k][:z.units[u].hi-z.units[u].lo])
		}
		if err := z.comm.AllGatherF32(z.recv, z.send); err != nil {
			return nil, fmt.Errorf("all-gather of the optimizer's moments: %w", err)
		}
		at := make([]int, z.comm.Size())
		for _, u := range z.units {
			base := u.owner * z.block
			at[u.owner] += copy(mv.all[u.param][u.lo:u.hi], z.send[base+at[u.owner]:])
		}
	}
	return out, nil
}

// StateBytes is the optimizer state this rank keeps.
func (z *zero) StateBytes() int64 {
	var n int64
	for _, m := range z.m {
		n += 8 * int64(len(m))
	}
	return n
}
