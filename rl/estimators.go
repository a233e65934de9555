// Package rl is reinforcement learning from a reward on herd's one forward
// pass and its one training loop: PPO with a value head on the policy's
// trunk (Schulman et al. 2017, as Ziegler et al. 2019 applied it to
// language models), GRPO (Shao et al. 2024, DeepSeekMath) and RLOO
// (Ahmadian et al. 2024). Rollouts are sampled with the batched forward
// pass, scored by a reward (a reward model from package align, built-in
// rules, or an external scorer over HTTP), and optimised on train.Fit.
//
// This file holds the estimators, in float64, one token or one sequence
// at a time, as the papers write them.
package rl

import (
	"fmt"
	"math"
)

// The KL estimators of log π(x)/π_ref(x) at a sample x ~ π (Schulman,
// "Approximating KL divergence", 2020): k1 = log r' (r' = π/π_ref, unbiased,
// may be negative), k2 = ½(log r')² (biased, low variance), k3 =
// (r − 1) − log r with r = π_ref/π (unbiased, never negative).
const (
	K1 = "k1"
	K2 = "k2"
	K3 = "k3"
)

// KL is estimator kind at one token whose log-probability is logp under
// the policy and ref under the reference, and its derivative by logp.
func KL(kind string, logp, ref float64) (kl, dlogp float64) {
	d := logp - ref
	switch kind {
	case K2:
		return 0.5 * d * d, d
	case K3:
		r := math.Exp(-d) // π_ref/π
		return r - 1 + d, 1 - r
	default: // K1
		return d, 1
	}
}

// CheckKL says whether kind names an estimator.
func CheckKL(kind string) error {
	switch kind {
	case K1, K2, K3:
		return nil
	}
	return fmt.Errorf("KL estimator %q: want k1, k2 or k3", kind)
}

// GAE is generalised advantage estimation (Schulman et al. 2016) over one
// response: δ_t = r_t + γ·V_{t+1} − V_t (V after the last token is 0, the
// episode ends there) and A_t = δ_t + γλ·A_{t+1}; the returns are A + V.
func GAE(rewards, values []float64, gamma, lambda float64) (adv, ret []float64) {
	n := len(rewards)
	adv, ret = make([]float64, n), make([]float64, n)
	last := 0.0
	for t := n - 1; t >= 0; t-- {
		next := 0.0
		if t+1 < n {
			next = values[t+1]
		}
		delta := rewards[t] + gamma*next - values[t]
		last = delta + gamma*lambda*last
		adv[t] = last
		ret[t] = last + values[t]
	}
	return adv, ret
}

// Whiten returns (x − mean)/√(var + 1e-8) with the unbiased variance
// (TRL's masked_whiten); with keepMean the mean is added back (how rewards
// are scaled without shifting them). Fewer than two values have variance 0.
func Whiten(x []float64, keepMean bool) []float64 {
	mean, v := MeanVar(x)
	out := make([]float64, len(x))
	s := 1 / math.Sqrt(v+1e-8)
	for i, xi := range x {
		out[i] = (xi - mean) * s
		if keepMean {
			out[i] += mean
		}
	}
	return out
}

// MeanVar is the mean and the unbiased variance of x (0 for fewer than
// two values).
func MeanVar(x []float64) (mean, variance float64) {
	if len(x) == 0 {
		return 0, 0
	}
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	if len(x) < 2 {
		return mean, 0
	}
	for _, v := range x {
		variance += (v - mean) * (v - mean)
	}
	return mean, variance / float64(len(x)-1)
}

// Clipped is one token's clipped surrogate: the loss max(−A·ρ,
// −A·clip(ρ, 1−ε, 1+ε)) with ρ = exp(logp − old), its derivative by logp,
// the ratio, and whether the clipped term was the larger (clipfrac).
type Clipped struct {
	Loss, DLogp, Ratio float64
	Clipped            bool
}

// ClipPolicy is PPO's clipped surrogate objective at one token.
func ClipPolicy(logp, old, adv, eps float64) Clipped {
	rho := math.Exp(logp - old)
	l1 := -adv * rho
	l2 := -adv * min(max(rho, 1-eps), 1+eps)
	if l2 > l1 { // the clipped term is the larger: its ratio is a constant
		return Clipped{Loss: l2, Ratio: rho, Clipped: true}
	}
	return Clipped{Loss: l1, DLogp: -adv * rho, Ratio: rho}
}

// ClipValue is PPO's clipped value loss at one token: ½·max((v − R)²,
// (v_c − R)²) with v_c = old + clip(v − old, −ε, ε), its derivative by v,
// and whether the clipped term was the larger (val/clipfrac).
func ClipValue(v, old, ret, eps float64) (loss, dv float64, clipped bool) {
	vc := old + min(max(v-old, -eps), eps)
	a, b := (v-ret)*(v-ret), (vc-ret)*(vc-ret)
	if b > a {
		// v_c depends on v only inside the clip range, where v_c = v and
		// the terms are equal: here v is clipped and the gradient 0
		return 0.5 * b, 0, true
	}
	return 0.5 * a, v - ret, false
}

// ApproxKL is the mean over tokens of ½(logp − old)², the approximate KL
// between the policy that sampled (old) and the current one that PPO
// logs as policy/approxkl and stops an epoch on.
func ApproxKL(logp, old []float64) float64 {
	if len(logp) == 0 {
		return 0
	}
	s := 0.0
	for i := range logp {
		d := logp[i] - old[i]
		s += 0.5 * d * d
	}
	return s / float64(len(logp))
}

// AdaptiveKL is Ziegler et al.'s controller of the KL coefficient β: after
// each rollout batch of n samples with mean KL kl, β ← β·(1 + e·n/Horizon)
// with e = clip(kl/Target − 1, −0.2, 0.2). Horizon 0 keeps β fixed.
type AdaptiveKL struct {
	Coef, Target, Horizon float64
}

// Update adapts the coefficient to the KL of a rollout batch of n samples.
func (a *AdaptiveKL) Update(kl float64, n int) {
	if a.Horizon <= 0 || a.Target <= 0 {
		return
	}
	e := min(max(kl/a.Target-1, -0.2), 0.2)
	a.Coef *= 1 + e*float64(n)/a.Horizon
}

// GroupAdvantages is GRPO's advantage of each of the G rewards of a group
// (the samples of one prompt, consecutive in r): (r − mean)/(std + 1e-4),
// with the unbiased standard deviation; with scale false only the mean is
// removed (Dr. GRPO). Rewards that are NaN (a reward that could not be
// computed) are left out of the group's statistics and get advantage 0.
func GroupAdvantages(r []float64, g int, scale bool) []float64 {
	out := make([]float64, len(r))
	for lo := 0; lo < len(r); lo += g {
		grp := valid(r[lo:min(len(r), lo+g)])
		mean, v := MeanVar(grp)
		for i := lo; i < min(len(r), lo+g); i++ {
			if math.IsNaN(r[i]) {
				continue
			}
			out[i] = r[i] - mean
			if scale {
				out[i] /= math.Sqrt(v) + 1e-4
			}
		}
	}
	return out
}

// LeaveOneOut is RLOO's advantage: each reward less the mean of the
// other rewards of its group of g (NaN rewards left out, advantage 0; a
// group with one valid reward gets 0).
func LeaveOneOut(r []float64, g int) []float64 {
	out := make([]float64, len(r))
	for lo := 0; lo < len(r); lo += g {
		grp := valid(r[lo:min(len(r), lo+g)])
		n := float64(len(grp))
		sum := 0.0
		for _, v := range grp {
			sum += v
		}
		for i := lo; i < min(len(r), lo+g); i++ {
			if math.IsNaN(r[i]) || n < 2 {
				continue
			}
			out[i] = r[i] - (sum-r[i])/(n-1)
		}
	}
	return out
}

// valid is x without its NaNs.
func valid(x []float64) []float64 {
	var out []float64
	for _, v := range x {
		if !math.IsNaN(v) {
			out = append(out, v)
		}
	}
	return out
}

// Entropy is −Σ p log p of a probability row.
func Entropy(p []float32) float64 {
	h := 0.0
	for _, v := range p {
		if v > 0 {
			h -= float64(v) * math.Log(float64(v))
		}
	}
	return h
}
