package kernels

import "fmt"

// RoPECache holds the rotations RoPEInterleaved and RoPEHalf apply at
// positions 0..Len()-1 for one head size and base, computed once (by the
// same arithmetic), so that rotating many rows does not recompute powers,
// sines and cosines. It grows on demand and is not safe for concurrent use
// while growing.
type RoPECache struct {
	headDim  int
	theta    float32
	cos, sin []float32 // [position][headDim/2]
}

// NewRoPECache returns an empty cache for heads of headDim (even) and base
// theta.
func NewRoPECache(headDim int, theta float32) *RoPECache {
	if headDim <= 0 || headDim%2 != 0 {
		panic(fmt.Sprintf("kernels.NewRoPECache: head dim %d must be even and positive", headDim))
	}
	return &RoPECache{headDim: headDim, theta: theta}
}

// Matches reports whether the cache is for heads of headDim and base theta.
func (r *RoPECache) Matches(headDim int, theta float32) bool {
	return r.headDim == headDim && r.theta == theta
}

// HeadDim is the head size the cache rotates.
func (r *RoPECache) HeadDim() int { return r.headDim }

// Len is the number of positions computed so far.
func (r *RoPECache) Len() int { return len(r.cos) / (r.headDim / 2) }

// Grow makes sure positions 0..n-1 are computed.
func (r *RoPECache) Grow(n int) {
	half := r.headDim / 2
	for p := r.Len(); p < n; p++ {
		r.cos = append(r.cos, make([]float32, half)...)
		r.sin = append(r.sin, make([]float32, half)...)
		ropeTable(r.cos[p*half:(p+1)*half], r.sin[p*half:(p+1)*half], r.headDim, p, r.theta)
	}
}

// Rotate applies RoPE in place to x, one position's nHeads heads, exactly
// as RoPEInterleaved (or RoPEHalf when half) does at position pos; with
// inverse it rotates by the opposite angle (the backward). pos must be
// below Len().
func (r *RoPECache) Rotate(x []float32, nHeads, pos int, half, inverse bool) {
	ropeCheck("RoPECache.Rotate", x, nHeads, r.headDim)
	h2 := r.headDim / 2
	if pos < 0 || pos >= r.Len() {
		panic(fmt.Sprintf("kernels.RoPECache.Rotate: position %d outside the %d computed", pos, r.Len()))
	}
	cos, sin := r.cos[pos*h2:(pos+1)*h2], r.sin[pos*h2:(pos+1)*h2]
	for h := range nHeads {
		v := x[h*r.headDim : (h+1)*r.headDim]
		for i := range h2 {
			a, b := 2*i, 2*i+1
			if half {
				a, b = i, i+h2
			}
			c, s := cos[i], sin[i]
			if inverse {
				s = -s
			}
			v0, v1 := v[a], v[b]
			// each product rounded, as RoPEInterleaved computes it
			v[a] = float32(v0*c) - float32(v1*s)
			v[b] = float32(v0*s) + float32(v1*c)
		}
	}
}
