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
// blocks of keys. out may alias q.
func Attention(out, q, k, v []float32, nq, pos0, nHeads, nKVHeads, headDim int) {
	if nq <= 0 || nHeads <= 0 {
		return
	}
	if nKVHeads <= 0 || nHeads%nKVHeads != 0 {
		panic(fmt.Sprintf("kernels.Attention: %d heads is not a multiple of %d KV heads", nHeads, nKVHeads))
	}
	qdim, kvdim := nHeads*headDim, nKVHeads*headDim
	checkSame("Attention", nq*qdim, out, q)
	checkSame("Attention", (pos0+nq)*kvdim, k, v)
	group := nHeads / nKVHeads
	scale := float32(1 / math.Sqrt(float64(headDim)))
	work := (pos0 + nq) * headDim // per (query, head) pair, roughly
	ParallelFor(nq*nHeads, max(1, (1<<14)/max(work, 1)), func(lo, hi int) {
		var scores [attnBlock]float32
		acc := make([]float32, headDim)
		for id := lo; id < hi; id++ {
			i, h := id/nHeads, id%nHeads
			qv := q[i*qdim+h*headDim : i*qdim+(h+1)*headDim]
			koff := (h / group) * headDim
			n := pos0 + i + 1
			m := float32(math.Inf(-1)) // running max of the scores
			var l float32              // running Σ exp(score - m)
			clear(acc)
			for j0 := 0; j0 < n; j0 += attnBlock {
				j1 := min(n, j0+attnBlock)
				s := scores[:j1-j0]
				kb := k[j0*kvdim+koff : (j1-1)*kvdim+koff+headDim]
				scoresImpl(s, qv, kb, kvdim, scale)
				bm := max(m, maxImpl(s))
				if bm > m {
					// Rescale what was accumulated under the old max.
					if l != 0 {
						corr := float32(math.Exp(float64(m - bm)))
						scaleImpl(acc, corr)
						l *= corr
					}
					m = bm
				}
				l += expSubSumImpl(s, m)
				vb := v[j0*kvdim+koff : (j1-1)*kvdim+koff+headDim]
				accumVImpl(acc, vb, kvdim, s)
			}
			o := out[i*qdim+h*headDim : i*qdim+(h+1)*headDim]
			inv := 1 / l
			for d, a := range acc {
				o[d] = a * inv
			}
		}
	})
}
