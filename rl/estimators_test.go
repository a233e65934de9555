package rl

import (
	"math"
	"testing"
)

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol*(1+math.Abs(want)) {
		t.Errorf("%s: got %.15g, want %.15g", what, got, want)
	}
}

// GAE against its definition as a sum: A_t = Σ_l (γλ)^l δ_{t+l}, on
// hand-made rewards and values.
func TestGAE(t *testing.T) {
	r := []float64{0.1, -0.3, 0, 0.7, 1.5}
	v := []float64{0.2, 0.5, -0.1, 0.4, 0.9}
	const g, l = 0.97, 0.9
	adv, ret := GAE(r, v, g, l)
	for tt := range r {
		want := 0.0
		for k := tt; k < len(r); k++ {
			next := 0.0
			if k+1 < len(r) {
				next = v[k+1]
			}
			want += math.Pow(g*l, float64(k-tt)) * (r[k] + g*next - v[k])
		}
		near(t, "advantage", adv[tt], want, 1e-14)
		near(t, "return", ret[tt], want+v[tt], 1e-14)
	}
	// γ = λ = 1: the return is the sum of the rewards to go
	_, ret = GAE(r, v, 1, 1)
	near(t, "return to go", ret[1], -0.3+0+0.7+1.5, 1e-14)
}

func TestWhitenMeanVar(t *testing.T) {
	x := []float64{1, 2, 3, 4}
	m, v := MeanVar(x)
	near(t, "mean", m, 2.5, 0)
	near(t, "unbiased variance", v, 5.0/3, 1e-15)
	w := Whiten(x, false)
	s := math.Sqrt(5.0/3 + 1e-8)
	for i, xi := range x {
		near(t, "whitened", w[i], (xi-2.5)/s, 1e-15)
	}
	k := Whiten(x, true)
	near(t, "mean kept", k[0], (1-2.5)/s+2.5, 1e-15)
	if w := Whiten([]float64{3}, false); w[0] != 0 {
		t.Errorf("one value whitens to %g", w[0])
	}
}

// The estimators at hand-made log-probabilities, and their derivatives
// by central differences.
func TestKLEstimators(t *testing.T) {
	lp, ref := -1.2, -0.7
	for _, c := range []struct {
		kind string
		want float64
	}{{K1, -0.5}, {K2, 0.125}, {K3, math.Exp(0.5) - 1 - 0.5}} {
		v, d := KL(c.kind, lp, ref)
		near(t, c.kind, v, c.want, 1e-15)
		const h = 1e-6
		hi, _ := KL(c.kind, lp+h, ref)
		lo, _ := KL(c.kind, lp-h, ref)
		near(t, c.kind+" derivative", d, (hi-lo)/(2*h), 1e-8)
		if v0, _ := KL(c.kind, ref, ref); v0 != 0 {
			t.Errorf("%s at π = π_ref is %g", c.kind, v0)
		}
	}
	if CheckKL("k4") == nil {
		t.Error("k4 accepted")
	}
}

// The clipped surrogate: max(−A·ρ, −A·clip(ρ)) transcribed, inside and
// outside the clip range for both signs of A, and its derivative.
func TestClipPolicy(t *testing.T) {
	const eps = 0.2
	for _, c := range []struct{ d, adv float64 }{{0, 1}, {0.1, 1}, {0.3, 1}, {-0.3, 1}, {0.3, -1}, {-0.3, -2}, {0.05, -0.5}} {
		old := -1.0
		rho := math.Exp(c.d)
		want := math.Max(-c.adv*rho, -c.adv*math.Min(math.Max(rho, 1-eps), 1+eps))
		got := ClipPolicy(old+c.d, old, c.adv, eps)
		near(t, "loss", got.Loss, want, 1e-15)
		near(t, "ratio", got.Ratio, rho, 1e-15)
		const h = 1e-7
		fd := (ClipPolicy(old+c.d+h, old, c.adv, eps).Loss - ClipPolicy(old+c.d-h, old, c.adv, eps).Loss) / (2 * h)
		near(t, "derivative", got.DLogp, fd, 1e-6)
		// clipped exactly when the ratio is outside the range on the side the advantage pushes
		wantClip := (c.adv > 0 && rho > 1+eps) || (c.adv < 0 && rho < 1-eps)
		if got.Clipped != wantClip {
			t.Errorf("d %g adv %g: clipped %v", c.d, c.adv, got.Clipped)
		}
	}
	if r := ClipPolicy(-2.5, -2.5, 3, eps); r.Ratio != 1 || r.Loss != -3 {
		t.Errorf("at the sampling policy: %+v", r)
	}
}

func TestClipValue(t *testing.T) {
	const eps = 0.2
	for _, c := range []struct{ v, old, ret float64 }{{0.5, 0.4, 1}, {1, 0.4, 2}, {1, 0.4, 0}, {-0.5, 0.4, 1}, {0.3, 0.4, 0.35}} {
		vc := c.old + math.Min(math.Max(c.v-c.old, -eps), eps)
		want := 0.5 * math.Max((c.v-c.ret)*(c.v-c.ret), (vc-c.ret)*(vc-c.ret))
		l, d, _ := ClipValue(c.v, c.old, c.ret, eps)
		near(t, "value loss", l, want, 1e-15)
		const h = 1e-7
		lh, _, _ := ClipValue(c.v+h, c.old, c.ret, eps)
		ll, _, _ := ClipValue(c.v-h, c.old, c.ret, eps)
		near(t, "value derivative", d, (lh-ll)/(2*h), 1e-6)
	}
}

// Ziegler et al.'s controller, transcribed: e = clip(KL/target − 1, ±0.2),
// β ← β(1 + e·n/horizon).
func TestAdaptiveKL(t *testing.T) {
	a := AdaptiveKL{Coef: 0.2, Target: 6, Horizon: 10000}
	want := 0.2
	for _, kl := range []float64{12, 6, 3, 0, 7} {
		a.Update(kl, 256)
		e := math.Min(math.Max(kl/6-1, -0.2), 0.2)
		want *= 1 + e*256/10000
		near(t, "coefficient", a.Coef, want, 1e-15)
	}
	f := AdaptiveKL{Coef: 0.1}
	f.Update(100, 64)
	if f.Coef != 0.1 {
		t.Errorf("fixed coefficient moved to %g", f.Coef)
	}
}

func TestGroupBaselines(t *testing.T) {
	r := []float64{1, 0, 0, 1, 0.5, 0.5, 2, math.NaN()}
	a := GroupAdvantages(r, 4, true)
	m1, s1 := 0.5, math.Sqrt(1.0/3)
	near(t, "group 1", a[0], (1-m1)/(s1+1e-4), 1e-15)
	near(t, "group 1", a[1], (0-m1)/(s1+1e-4), 1e-15)
	m2 := 1.0
	s2 := math.Sqrt((0.25 + 0.25 + 1) / 2)
	near(t, "group 2 (NaN left out)", a[6], (2-m2)/(s2+1e-4), 1e-15)
	if a[7] != 0 {
		t.Errorf("NaN reward's advantage %g", a[7])
	}
	if d := GroupAdvantages(r, 4, false); d[0] != 0.5 {
		t.Errorf("unscaled %g", d[0])
	}
	l := LeaveOneOut(r, 4)
	near(t, "loo", l[0], 1-(0+0+1)/3.0, 1e-15)
	near(t, "loo NaN group", l[6], 2-(0.5+0.5)/2, 1e-15)
	if z := GroupAdvantages([]float64{3, 3}, 2, true); z[0] != 0 || z[1] != 0 {
		t.Errorf("equal rewards: %v", z)
	}
}
