package kernels

import (
	"fmt"
	"math"
)

// attnBlock is the number of keys whose scores are held at once.
const attnBlock = 64

// Attention computes causal grouped-query attention for nq consecutive query
// positions pos0..pos0+nq-1. q and out hold nq rows of nHeads·headDim; k and
// v hold the cache rows 0..pos0+nq-1, each of nKVHeads·headDim. Query head h
// reads KV head h/(nHeads/nKVHeads); query row i sees cache rows 0..pos0+i;
// scores are scaled by 1/sqrt(headDim). The softmax is computed online over
// blocks of attnBlock keys: no more than one block of scores per head is
// held at a time, whatever the context length. out may alias q.
func Attention(out, q, k, v []float32, nq, pos0, nHeads, nKVHeads, headDim int) {
	if nq <= 0 || nHeads <= 0 {
		return
	}
	checkAttention(nHeads, nKVHeads)
	kvdim := nKVHeads * headDim
	checkSame("Attention", nq*nHeads*headDim, out, q)
	checkSame("Attention", (pos0+nq)*kvdim, k, v)
	attention(out, q, k, v, nil, nil, nq, pos0, nHeads, nKVHeads, headDim, nil)
}

// AttentionALiBi is Attention with ALiBi's linear position bias (Press et
// al. 2022) instead of a rotation: score(i, j) += slopes[h]·(j − (pos0+i)),
// a penalty growing with the distance from the query (slopes: one per query
// head). The F16 cache variant is AttentionF16ALiBi.
func AttentionALiBi(out, q, k, v []float32, nq, pos0, nHeads, nKVHeads, headDim int, slopes []float32) {
	if nq <= 0 || nHeads <= 0 {
		return
	}
	checkAttention(nHeads, nKVHeads)
	checkSame("AttentionALiBi", nq*nHeads*headDim, out, q)
	checkSame("AttentionALiBi", (pos0+nq)*nKVHeads*headDim, k, v)
	checkSame("AttentionALiBi", nHeads, slopes)
	attention(out, q, k, v, nil, nil, nq, pos0, nHeads, nKVHeads, headDim, slopes)
}

// AttentionF16ALiBi is AttentionF16 with ALiBi slopes (see AttentionALiBi).
func AttentionF16ALiBi(out, q []float32, k, v []uint16, nq, pos0, nHeads, nKVHeads, headDim int, slopes []float32) {
	if nq <= 0 || nHeads <= 0 {
		return
	}
	checkAttention(nHeads, nKVHeads)
	checkSame("AttentionF16ALiBi", nq*nHeads*headDim, out, q)
	checkSame("AttentionF16ALiBi", nHeads, slopes)
	if len(k) != (pos0+nq)*nKVHeads*headDim || len(v) != len(k) {
		panic(fmt.Sprintf("kernels.AttentionF16ALiBi: keys %d and values %d, want %d", len(k), len(v), (pos0+nq)*nKVHeads*headDim))
	}
	attention(out, q, nil, nil, k, v, nq, pos0, nHeads, nKVHeads, headDim, slopes)
}

// addALiBi adds slope·(first + z) to scores[z]: first is the first key's
// position minus the query's.
func addALiBi(scores []float32, slope float32, first int) {
	for z := range scores {
		scores[z] += slope * float32(first+z)
	}
}

// AttentionF16 is Attention with the keys and values stored as IEEE half
// floats (an F16 KV cache, as llama.cpp keeps by default). The kernels
// widen them as they read them; the arithmetic is otherwise that of
// Attention, so the result is bit-identical to Attention on the widened
// values.
func AttentionF16(out, q []float32, k, v []uint16, nq, pos0, nHeads, nKVHeads, headDim int) {
	if nq <= 0 || nHeads <= 0 {
		return
	}
	checkAttention(nHeads, nKVHeads)
	kvdim := nKVHeads * headDim
	checkSame("AttentionF16", nq*nHeads*headDim, out, q)
	if len(k) != (pos0+nq)*kvdim || len(v) != len(k) {
		panic(fmt.Sprintf("kernels.AttentionF16: keys %d and values %d, want %d", len(k), len(v), (pos0+nq)*kvdim))
	}
	attention(out, q, nil, nil, k, v, nq, pos0, nHeads, nKVHeads, headDim, nil)
}

func checkAttention(nHeads, nKVHeads int) {
	if nKVHeads <= 0 || nHeads%nKVHeads != 0 {
		panic(fmt.Sprintf("kernels.Attention: %d heads is not a multiple of %d KV heads", nHeads, nKVHeads))
	}
}

// attention is the body of Attention (keys and values k32, v32) and
// AttentionF16 (k16, v16).
func attention(out, q, k32, v32 []float32, k16, v16 []uint16, nq, pos0, nHeads, nKVHeads, headDim int, slopes []float32) {
	j := attnJob{out: out, q: q, k32: k32, v32: v32, k16: k16, v16: v16, pos0: pos0, slopes: slopes,
		nHeads: nHeads, headDim: headDim, kvdim: nKVHeads * headDim, group: nHeads / nKVHeads,
		scale: float32(1 / math.Sqrt(float64(headDim)))}
	// A work item is one query row and a run of sg heads sharing a KV head,
	// so that each block of keys and values is read from memory once and
	// stays in L1 while the heads of the run use it. Runs are shortened when
	// there would be too few items to keep the threads busy.
	j.sg = j.group
	for j.sg%2 == 0 && nq*(nHeads/j.sg) < 4*Threads() {
		j.sg /= 2
	}
	j.runs = nHeads / j.sg
	n := nq * j.runs
	work := j.sg * (pos0 + nq) * headDim // per item, roughly
	grain := max(1, (1<<14)/max(work, 1))
	if serial(n, grain) {
		j.run(0, n) // no closure, no allocation: the common case of decoding small models
		return
	}
	pj := j
	ParallelFor(n, grain, pj.run)
}

// attnJob is one attention call's work: items [0, nq·runs) of a query row
// and a run of sg heads.
type attnJob struct {
	out, q, k32, v32 []float32
	k16, v16         []uint16
	pos0, nHeads     int
	headDim, kvdim   int
	group, sg, runs  int
	scale            float32
	slopes           []float32 // ALiBi, per query head; nil: none
}

// run computes the items [lo, hi).
func (j *attnJob) run(lo, hi int) {
	sg, headDim, kvdim, qdim := j.sg, j.headDim, j.kvdim, j.nHeads*j.headDim
	q, out, k32, v32, k16, v16 := j.q, j.out, j.k32, j.v32, j.k16, j.v16
	// scores of one block, the accumulators of the run's heads, room to
	// widen one half-float row (for the generic kernels), and the running
	// max and Σ exp(score - max) per head
	buf := getScratch(attnBlock + sg*headDim + headDim + 2*sg)
	defer putScratch(buf)
	b := *buf
	scores, b := b[:attnBlock], b[attnBlock:]
	acc, b := b[:sg*headDim], b[sg*headDim:]
	w, b := b[:headDim], b[headDim:]
	m, l := b[:sg], b[sg:2*sg]
	for id := lo; id < hi; id++ {
		i, h0 := id/j.runs, (id%j.runs)*sg
		koff := (h0 / j.group) * headDim
		n := j.pos0 + i + 1
		for x := range m {
			m[x], l[x] = float32(math.Inf(-1)), 0
		}
		clear(acc)
		for j0 := 0; j0 < n; j0 += attnBlock {
			j1 := min(n, j0+attnBlock)
			lo, hi := j0*kvdim+koff, (j1-1)*kvdim+koff+headDim
			s := scores[:j1-j0]
			for x := range sg {
				qv := q[i*qdim+(h0+x)*headDim : i*qdim+(h0+x+1)*headDim]
				a := acc[x*headDim : (x+1)*headDim]
				if k16 != nil {
					scoresF16Impl(s, qv, k16[lo:hi], kvdim, j.scale, w)
				} else {
					scoresImpl(s, qv, k32[lo:hi], kvdim, j.scale)
				}
				if j.slopes != nil {
					addALiBi(s, j.slopes[h0+x], j0-(j.pos0+i))
				}
				if bm := max(m[x], maxImpl(s)); bm > m[x] {
					// Rescale what was accumulated under the old max.
					if l[x] != 0 {
						corr := float32(math.Exp(float64(m[x] - bm)))
						scaleImpl(a, corr)
						l[x] *= corr
					}
					m[x] = bm
				}
				// A short last block is padded to whole vectors of
				// -Inf scores, so the vector exponential does it all.
				// Their exponentials are 0 (in the assembly, which
				// clamps its input, below 2e-38: nothing, once added to
				// l, which holds exp(0) = 1 for the running maximum).
				if n8 := (len(s) + 7) &^ 7; n8 != len(s) {
					for z := len(s); z < n8; z++ {
						scores[z] = float32(math.Inf(-1))
					}
					l[x] += expSubSumImpl(scores[:n8], m[x])
				} else {
					l[x] += expSubSumImpl(s, m[x])
				}
				if v16 != nil {
					accumVF16Impl(a, v16[lo:hi], kvdim, s, w)
				} else {
					accumVImpl(a, v32[lo:hi], kvdim, s)
				}
			}
		}
		// Written only now: out may alias q.
		for x := range sg {
			o := out[i*qdim+(h0+x)*headDim : i*qdim+(h0+x+1)*headDim]
			inv := 1 / l[x]
			for d, a := range acc[x*headDim : (x+1)*headDim] {
				o[d] = a * inv
			}
		}
	}
}
