package kernels

import "math"

// LayerNorm normalises one row (Ba et al. 2016, as torch.nn.LayerNorm):
// y = (x − μ)/√(σ² + eps) ⊙ w + b with μ and σ² the mean and (biased)
// variance of x; b may be nil. Statistics are accumulated in float64.
func LayerNorm(y, x, w, b []float32, eps float32) {
	mu, r := layerStats(x, eps)
	for i, v := range x {
		o := float32((float64(v)-mu)*r) * w[i]
		if b != nil {
			o += b[i]
		}
		y[i] = o
	}
}

// layerStats is the mean of x and 1/√(var + eps).
func layerStats(x []float32, eps float32) (mu, r float64) {
	var s, ss float64
	for _, v := range x {
		s += float64(v)
	}
	mu = s / float64(len(x))
	for _, v := range x {
		d := float64(v) - mu
		ss += d * d
	}
	return mu, 1 / math.Sqrt(ss/float64(len(x))+float64(eps))
}

// LayerNormBackward adds the gradients of LayerNorm over rows rows of dim
// to dx, dw and db (dw, db may be nil): with x̂ = (x − μ)·r and g = dy ⊙ w,
//
//	dx += r · (g − mean(g) − x̂ · mean(g ⊙ x̂))
//	dw += Σ_rows dy ⊙ x̂,   db += Σ_rows dy
func LayerNormBackward(dx, dw, db, dy, x, w []float32, rows, dim int, eps float32) {
	xh := make([]float64, dim)
	for i := range rows {
		xr, dyr, dxr := x[i*dim:(i+1)*dim], dy[i*dim:(i+1)*dim], dx[i*dim:(i+1)*dim]
		mu, r := layerStats(xr, eps)
		var mg, mgx float64
		for j, v := range xr {
			xh[j] = (float64(v) - mu) * r
			g := float64(dyr[j]) * float64(w[j])
			mg += g
			mgx += g * xh[j]
		}
		mg /= float64(dim)
		mgx /= float64(dim)
		for j := range xr {
			g := float64(dyr[j]) * float64(w[j])
			dxr[j] += float32(r * (g - mg - xh[j]*mgx))
			if dw != nil {
				dw[j] += float32(float64(dyr[j]) * xh[j])
			}
			if db != nil {
				db[j] += dyr[j]
			}
		}
	}
}

// GELU is y = x·Φ(x) with Φ the standard normal CDF, the exact (erf) form
// of torch.nn.GELU(); y may alias x.
func GELU(y, x []float32) {
	for i, v := range x {
		y[i] = float32(float64(v) * 0.5 * (1 + math.Erf(float64(v)/math.Sqrt2)))
	}
}

// GELUBackward adds dy · GELU'(x) to dx: GELU'(x) = Φ(x) + x·φ(x).
func GELUBackward(dx, dy, x []float32) {
	for i, v := range x {
		xv := float64(v)
		cdf := 0.5 * (1 + math.Erf(xv/math.Sqrt2))
		pdf := math.Exp(-xv*xv/2) / math.Sqrt(2*math.Pi)
		dx[i] += dy[i] * float32(cdf+xv*pdf)
	}
}
