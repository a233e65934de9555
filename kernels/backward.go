package kernels

import (
	"fmt"
	"math"

	"github.com/herd-llm/herd/tensor"
)

// The backward twins of the forward kernels: given dL/d(output) they add
// dL/d(input) (and dL/d(weight)) into gradient buffers. Every backward
// kernel accumulates (+=) into its gradient outputs, so a value read by
// several consumers collects all their contributions; callers zero the
// buffers once per step. Reductions over rows (a norm's gain gradient) are
// cut into a fixed number of chunks summed in chunk order, so the result
// does not depend on the thread count or on scheduling.

// MatMulBackward adds dY·W to dX: the gradient of Y = X·Wᵀ with respect to
// X, for W of rows×cols elements of dtype dt (stored as MatMul reads it), dY
// of nt×rows and dX of nt×cols. Non-F32 weights are expanded to float32 a
// block of rows at a time, so a frozen quantized weight passes gradient to
// its input.
func MatMulBackward(dt tensor.DType, w []byte, rows, cols int, dy []float32, nt int, dx []float32) {
	need, err := dt.RowBytes(cols)
	if err != nil || !Supports(dt) {
		panic(fmt.Sprintf("kernels.MatMulBackward: dtype %s with %d columns: unsupported (%v)", dt, cols, err))
	}
	if len(w) < need*rows {
		panic(fmt.Sprintf("kernels.MatMulBackward: %d weight bytes, need %d", len(w), need*rows))
	}
	checkLen("MatMulBackward", "dy", dy, nt*rows)
	checkLen("MatMulBackward", "dx", dx, nt*cols)
	if nt <= 0 || rows == 0 || cols == 0 {
		return
	}
	if dt == tensor.F32 {
		GemmNN(nt, cols, rows, dy, tensor.F32s(w[:need*rows]), dx, true)
		return
	}
	const block = 256 // rows of W expanded at a time
	wb := getBuf(min(block, rows) * cols)
	defer putBuf(wb)
	for r0 := 0; r0 < rows; r0 += block {
		r1 := min(rows, r0+block)
		buf := (*wb)[:(r1-r0)*cols]
		if err := tensor.Dequantize(dt, buf, w[r0*need:r1*need]); err != nil {
			panic(fmt.Sprintf("kernels.MatMulBackward: %v", err))
		}
		// dX += dY[:, r0:r1] · W[r0:r1, :]
		gemm(nt, cols, r1-r0, operand{f32: dy[r0:], rs: rows, cs: 1}, operand{f32: buf, rs: cols, cs: 1}, dx, cols, true)
	}
}

// reduceChunks is the number of row chunks whose partial sums a row
// reduction adds in order: fixed, so results are the same for any thread
// count.
const reduceChunks = 16

// RMSNormBackward is the backward of RMSNorm applied to each of rows rows of
// dim elements: y = w ⊙ x̂ with x̂ = x·r, r = 1/sqrt(mean(x²) + eps). With
// g = w ⊙ dy it adds
//
//	dx += r·(g − x̂·mean(g ⊙ x̂))   (the direct term, minus the change of r)
//	dw += Σ_rows dy ⊙ x̂
//
// dw may be nil (a frozen gain).
func RMSNormBackward(dx, dw, dy, x, w []float32, rows, dim int, eps float32) {
	checkSame("RMSNormBackward", rows*dim, dx, dy, x)
	checkSame("RMSNormBackward", dim, w)
	if dw != nil {
		checkSame("RMSNormBackward", dim, dw)
	}
	if rows <= 0 || dim <= 0 {
		return
	}
	nch := min(rows, reduceChunks)
	per := (rows + nch - 1) / nch
	nch = (rows + per - 1) / per
	var partial []float32
	if dw != nil {
		p := getBuf(nch * dim)
		defer putBuf(p)
		partial = *p
		clear(partial)
	}
	ParallelFor(nch, 1, func(lo, hi int) {
		g := make([]float32, dim)
		for c := lo; c < hi; c++ {
			var pw []float32
			if partial != nil {
				pw = partial[c*dim : (c+1)*dim]
			}
			for i := c * per; i < min(rows, (c+1)*per); i++ {
				xr, dyr, dxr := x[i*dim:(i+1)*dim], dy[i*dim:(i+1)*dim], dx[i*dim:(i+1)*dim]
				r := float32(1 / math.Sqrt(float64(sumSqImpl(xr)/float32(dim)+eps)))
				var gx float32 // Σ g ⊙ x̂
				for j, d := range dyr {
					xh := xr[j] * r
					g[j] = d * w[j]
					gx += g[j] * xh
					if pw != nil {
						pw[j] += d * xh
					}
				}
				mean := gx / float32(dim)
				for j, gj := range g {
					dxr[j] += r * (gj - xr[j]*r*mean)
				}
			}
		}
	})
	for c := range nch {
		if partial != nil {
			axpyImpl(1, partial[c*dim:(c+1)*dim], dw[:dim])
		}
	}
}

// RoPEInterleavedBackward turns dL/d(rotated x) in place into dL/dx for
// RoPEInterleaved at position pos. A rotation's transpose is the rotation by
// the opposite angle, so this is RoPEInterleaved at position −pos.
func RoPEInterleavedBackward(dx []float32, nHeads, headDim, pos int, theta float32) {
	RoPEInterleaved(dx, nHeads, headDim, -pos, theta)
}

// RoPEHalfBackward is RoPEInterleavedBackward for the rotate-half layout.
func RoPEHalfBackward(dx []float32, nHeads, headDim, pos int, theta float32) {
	RoPEHalf(dx, nHeads, headDim, -pos, theta)
}

// attnBwdBlock is the number of query rows whose probabilities are held at
// once by AttentionBackward.
const attnBwdBlock = 64

// AttentionBackward is the backward of Attention over one sequence: nq query
// rows at positions pos0.., keys and values of positions 0..pos0+nq-1. For
// query i of head h with probabilities p = softmax(s), s_j = c·q_i·k_j
// (c = 1/sqrt(headDim)), output o_i = Σ_j p_j v_j, it adds
//
//	dv_j += p_j·do_i
//	ds_j  = p_j·(do_i·v_j − Σ_l p_l·do_i·v_l)   (softmax backward)
//	dq_i += c·Σ_j ds_j·k_j,   dk_j += c·ds_j·q_i
//
// into dq (nq rows like q) and dk, dv (pos0+nq rows like k and v). The
// probabilities are recomputed from q and k. Work is split over KV heads,
// each task owning its rows of dk and dv, so the sums are deterministic.
func AttentionBackward(dq, dk, dv, dout, q, k, v []float32, nq, pos0, nHeads, nKVHeads, headDim int) {
	AttentionBackwardALiBi(dq, dk, dv, dout, q, k, v, nq, pos0, nHeads, nKVHeads, headDim, nil)
}

// AttentionBackwardALiBi is the backward of AttentionALiBi (slopes nil:
// of Attention). The bias is a constant: only the recomputed
// probabilities see it.
func AttentionBackwardALiBi(dq, dk, dv, dout, q, k, v []float32, nq, pos0, nHeads, nKVHeads, headDim int, slopes []float32) {
	if nq <= 0 || nHeads <= 0 {
		return
	}
	if nKVHeads <= 0 || nHeads%nKVHeads != 0 {
		panic(fmt.Sprintf("kernels.AttentionBackward: %d heads is not a multiple of %d KV heads", nHeads, nKVHeads))
	}
	qdim, kvdim := nHeads*headDim, nKVHeads*headDim
	nk := pos0 + nq
	checkSame("AttentionBackward", nq*qdim, dq, dout, q)
	checkSame("AttentionBackward", nk*kvdim, dk, dv, k, v)
	group := nHeads / nKVHeads
	scale := float32(1 / math.Sqrt(float64(headDim)))
	ParallelFor(nKVHeads, 1, func(lo, hi int) {
		bq := min(attnBwdBlock, nq)
		// pt[j·bq + i] and dst[j·bq + i]: probability and scaled score
		// gradient of query i (of the block) for key j, stored by key so the
		// key-side sums read them contiguously.
		buf := getScratch(2*nk*bq + 2*nk) // every element is written before it is read
		defer putScratch(buf)
		pt, dst := (*buf)[:nk*bq], (*buf)[nk*bq:2*nk*bq]
		p, dp := (*buf)[2*nk*bq:2*nk*bq+nk], (*buf)[2*nk*bq+nk:2*nk*bq+2*nk]
		for g := lo; g < hi; g++ {
			koff := g * headDim
			for h := g * group; h < (g+1)*group; h++ {
				qoff := h * headDim
				for i0 := 0; i0 < nq; i0 += bq {
					i1 := min(nq, i0+bq)
					// Query side: recompute the probabilities, then dq.
					for i := i0; i < i1; i++ {
						n := pos0 + i + 1
						qi := q[i*qdim+qoff : i*qdim+qoff+headDim]
						doi := dout[i*qdim+qoff : i*qdim+qoff+headDim]
						pr, dpr := p[:n], dp[:n]
						kb := k[koff : (n-1)*kvdim+koff+headDim]
						vb := v[koff : (n-1)*kvdim+koff+headDim]
						scoresImpl(pr, qi, kb, kvdim, scale)
						if slopes != nil {
							addALiBi(pr, slopes[h], -(pos0 + i))
						}
						sum := expSubSumImpl(pr, maxImpl(pr))
						scaleImpl(pr, 1/sum)
						scoresImpl(dpr, doi, vb, kvdim, 1)
						d := dotImpl(pr, dpr)
						for j, pj := range pr {
							dpr[j] = scale * pj * (dpr[j] - d)
						}
						accumVImpl(dq[i*qdim+qoff:i*qdim+qoff+headDim], kb, kvdim, dpr)
						c := i - i0
						for j := range n {
							pt[j*bq+c] = pr[j]
							dst[j*bq+c] = dpr[j]
						}
					}
					// Key side: key j is seen by the block's queries i >= j−pos0.
					for j := range pos0 + i1 {
						first := max(i0, j-pos0)
						if first >= i1 {
							continue
						}
						c0, c1 := first-i0, i1-i0
						accumVImpl(dk[j*kvdim+koff:j*kvdim+koff+headDim], q[first*qdim+qoff:], qdim, dst[j*bq+c0:j*bq+c1])
						accumVImpl(dv[j*kvdim+koff:j*kvdim+koff+headDim], dout[first*qdim+qoff:], qdim, pt[j*bq+c0:j*bq+c1])
					}
				}
			}
		}
	})
}

// SiLUMulBackward is the backward of SiLUMul, out = g·σ(g)·u. It adds
//
//	dgate += dout·u·σ(g)·(1 + g·(1 − σ(g)))   (d silu/dg)
//	dup   += dout·g·σ(g)
func SiLUMulBackward(dgate, dup, dout, gate, up []float32) {
	n := len(dout)
	checkSame("SiLUMulBackward", n, dgate, dup, gate, up)
	ParallelFor(n, 1<<13, func(lo, hi int) {
		var buf [512]float32
		for b0 := lo; b0 < hi; b0 += len(buf) {
			b1 := min(hi, b0+len(buf))
			e := buf[:b1-b0]
			for i := range e {
				e[i] = -gate[b0+i]
			}
			expSubSumImpl(e, 0) // e = exp(−g)
			for i, ei := range e {
				j := b0 + i
				g, s := gate[j], 1/(1+ei)
				d := dout[j]
				dgate[j] += d * up[j] * s * (1 + g*(1-s))
				dup[j] += d * g * s
			}
		}
	})
}

// SoftmaxCrossEntropy computes, for each row r < len(targets) of logits
// (rows of vocab), the loss −log softmax(row)[targets[r]] into losses[r],
// and replaces the row by its softmax probabilities. A negative target
// marks a row that does not count: its loss is 0 (its row still becomes
// probabilities). Targets must be below vocab.
func SoftmaxCrossEntropy(losses, logits []float32, targets []int, vocab int) {
	rows := len(targets)
	checkSame("SoftmaxCrossEntropy", rows, losses)
	checkSame("SoftmaxCrossEntropy", rows*vocab, logits)
	for r, t := range targets {
		if t >= vocab {
			panic(fmt.Sprintf("kernels.SoftmaxCrossEntropy: target %d of row %d outside the vocabulary of %d", t, r, vocab))
		}
	}
	ParallelFor(rows, max(1, (1<<15)/max(vocab, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := logits[r*vocab : (r+1)*vocab]
			m := maxImpl(row)
			var lt float32
			if t := targets[r]; t >= 0 {
				lt = row[t]
			}
			sum := expSubSumImpl(row, m)
			scaleImpl(row, 1/sum)
			if targets[r] >= 0 {
				// log Σ exp(l) − l_t, from the logit itself so that a tiny
				// probability does not underflow
				losses[r] = float32(math.Log(float64(sum)) + float64(m-lt))
			} else {
				losses[r] = 0
			}
		}
	})
}

// CrossEntropyBackward writes the gradient of scale·Σ_r loss_r with respect
// to the logits into dlogits, from the probabilities SoftmaxCrossEntropy
// left: scale·(p − onehot(target)), and zero for rows whose target is
// negative. dlogits may alias probs. It writes rather than accumulates:
// the loss is the logits' only consumer.
func CrossEntropyBackward(dlogits, probs []float32, targets []int, vocab int, scale float32) {
	rows := len(targets)
	checkSame("CrossEntropyBackward", rows*vocab, dlogits, probs)
	ParallelFor(rows, max(1, (1<<15)/max(vocab, 1)), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			d, p := dlogits[r*vocab:(r+1)*vocab], probs[r*vocab:(r+1)*vocab]
			t := targets[r]
			if t < 0 {
				clear(d)
				continue
			}
			for j, pj := range p {
				d[j] = scale * pj
			}
			d[t] -= scale
		}
	})
}
