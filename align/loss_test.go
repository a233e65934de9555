package align

import (
	"math"
	"testing"
)

// The papers' formulas, transcribed literally in float64 (no stable
// rewriting), on hand-made log-probabilities.
func lsig(x float64) float64 { return math.Log(1 / (1 + math.Exp(-x))) }

func paperLoss(p Params, x PairLogP) float64 {
	b, e := p.Beta, p.LabelSmoothing
	// DPO eq. 7: −log σ(β log π(yw)/πref(yw) − β log π(yl)/πref(yl))
	h := b*(x.Chosen-x.RefChosen) - b*(x.Rejected-x.RefRejected)
	switch p.Loss {
	case Sigmoid: // cDPO: (1−ε)·L(yw ≻ yl) + ε·L(yl ≻ yw)
		return (1-e)*-lsig(h) + e*-lsig(-h)
	case Robust: // rDPO eq. 8: ((1−ε)L(θ;yw,yl) − ε L(θ;yl,yw)) / (1−2ε)
		return ((1-e)*-lsig(h) - e*-lsig(-h)) / (1 - 2*e)
	case IPO: // IPO eq. 17: (h_π − 1/(2τ))²
		hp := (x.Chosen - x.Rejected) - (x.RefChosen - x.RefRejected)
		return math.Pow(hp-1/(2*b), 2)
	case Hinge: // SLiC-HF: max(0, δ − log π(yw) + log π(yl)), here on the log-ratios, δ = 1/β, scaled by β
		hp := (x.Chosen - x.RefChosen) - (x.Rejected - x.RefRejected)
		return math.Max(0, 1-b*hp)
	case SimPO: // SimPO eq. 6: −log σ(β/|yw| log π(yw) − β/|yl| log π(yl) − γ)
		s := b/float64(x.NChosen)*x.Chosen - b/float64(x.NRejected)*x.Rejected - p.Gamma
		return (1-e)*-lsig(s) + e*-lsig(-s)
	case ORPO: // ORPO eq. 6–7: L_SFT − λ log σ(log odds(yw) − log odds(yl)), odds = P/(1−P), P = exp(mean log-prob)
		pw, pl := math.Exp(x.Chosen/float64(x.NChosen)), math.Exp(x.Rejected/float64(x.NRejected))
		or := math.Log((pw / (1 - pw)) / (pl / (1 - pl)))
		return -x.Chosen/float64(x.NChosen) - b*lsig(or)
	}
	panic(p.Loss)
}

var handPairs = []PairLogP{
	{Chosen: -12.5, Rejected: -14.25, RefChosen: -13, RefRejected: -13.5, NChosen: 5, NRejected: 7},
	{Chosen: -3.1, Rejected: -2.2, RefChosen: -3.0, RefRejected: -2.9, NChosen: 3, NRejected: 2},
	{Chosen: -40, Rejected: -41, RefChosen: -40, RefRejected: -41, NChosen: 20, NRejected: 21},
	{Chosen: -0.75, Rejected: -9.5, RefChosen: -1.5, RefRejected: -6, NChosen: 1, NRejected: 4},
}

func handParams() []Params {
	return []Params{
		{Loss: Sigmoid, Beta: 0.1}, {Loss: Sigmoid, Beta: 0.5, LabelSmoothing: 0.1},
		{Loss: Robust, Beta: 0.1, LabelSmoothing: 0.2}, {Loss: IPO, Beta: 0.1}, {Loss: IPO, Beta: 2},
		{Loss: Hinge, Beta: 0.1}, {Loss: Hinge, Beta: 3}, {Loss: SimPO, Beta: 2, Gamma: 0.5},
		{Loss: SimPO, Beta: 2.5, Gamma: 1.4, LabelSmoothing: 0.05}, {Loss: ORPO, Beta: 0.1}, {Loss: ORPO, Beta: 1},
	}
}

func TestPairLossesAgainstPapers(t *testing.T) {
	for _, p := range handParams() {
		for i, x := range handPairs {
			got, want := p.Pair(x).Loss, paperLoss(p, x)
			if math.Abs(got-want) > 1e-12*math.Max(1, math.Abs(want)) {
				t.Errorf("%s β=%g pair %d: loss %.17g, paper %.17g", p.Loss, p.Beta, i, got, want)
			}
		}
	}
}

// central differences of the paper's formula in the two policy
// log-probabilities
func TestPairLossGradients(t *testing.T) {
	const h = 1e-5
	for _, p := range handParams() {
		for i, x := range handPairs {
			r := p.Pair(x)
			for k, d := range []float64{r.DChosen, r.DRejected} {
				lo, hi := x, x
				if k == 0 {
					lo.Chosen -= h
					hi.Chosen += h
				} else {
					lo.Rejected -= h
					hi.Rejected += h
				}
				fd := (paperLoss(p, hi) - paperLoss(p, lo)) / (2 * h)
				if math.Abs(fd-d) > 1e-7*math.Max(1, math.Abs(fd)) {
					t.Errorf("%s β=%g pair %d d%d: %.12g, central difference %.12g", p.Loss, p.Beta, i, k, d, fd)
				}
			}
		}
	}
}

func TestDPOEqualPolicyIsLog2(t *testing.T) {
	x := PairLogP{Chosen: -7.25, Rejected: -3.5, RefChosen: -7.25, RefRejected: -3.5, NChosen: 3, NRejected: 2}
	r := Params{Loss: Sigmoid, Beta: 0.1}.Pair(x)
	if r.Loss != math.Ln2 || r.RewardChosen != 0 || r.RewardRejected != 0 {
		t.Fatalf("policy = reference: loss %.17g (want ln 2 = %.17g), rewards %g %g", r.Loss, math.Ln2, r.RewardChosen, r.RewardRejected)
	}
}

func TestKTOAgainstPaper(t *testing.T) {
	// KTO eq. 8: z0 = max(0, mean KL estimate); v = λD σ(β(rθ − z0)) or
	// λU σ(β(z0 − rθ)); L = λy − v
	pol := []float64{-10, -12.5, -8, -20}
	ref := []float64{-10.5, -12, -9, -19.25}
	z := KTORefPoint(pol, ref)
	if want := math.Max(0, ((-10+10.5)+(-12.5+12)+(-8+9)+(-20+19.25))/4); z != want {
		t.Fatalf("z0 %g, want %g", z, want)
	}
	p := Params{Loss: KTO, Beta: 0.1, DesirableWeight: 1.33, UndesirableWeight: 0.7}
	xs := []Unpaired{{-9, -10, true}, {-14, -12, false}, {-3.5, -3, true}, {-6, -7, false}}
	for _, zz := range []float64{z, 0.3, 0} {
		for i, x := range xs {
			paper := func(lp float64) float64 {
				r := lp - x.RefLogP
				if x.Desirable {
					return 1.33 - 1.33/(1+math.Exp(-p.Beta*(r-zz)))
				}
				return 0.7 - 0.7/(1+math.Exp(-p.Beta*(zz-r)))
			}
			got := p.KTO(x, zz)
			if want := paper(x.LogP); math.Abs(got.Loss-want) > 1e-12 {
				t.Errorf("z %g sample %d: loss %.17g, paper %.17g", zz, i, got.Loss, want)
			}
			const h = 1e-5
			if fd := (paper(x.LogP+h) - paper(x.LogP-h)) / (2 * h); math.Abs(fd-got.D) > 1e-9 {
				t.Errorf("z %g sample %d: gradient %g, central difference %g", zz, i, got.D, fd)
			}
		}
	}
	if z := KTORefPoint([]float64{-5}, []float64{-4}); z != 0 {
		t.Errorf("a negative KL estimate gives z0 %g, want 0 (clamped)", z)
	}
}

func TestBradleyTerry(t *testing.T) {
	for _, c := range [][3]float64{{1.5, -0.25, 0}, {0.2, 0.9, 0.5}, {-3, -3, 1}} {
		l, dc, dr := BradleyTerry(c[0], c[1], c[2])
		want := -math.Log(1 / (1 + math.Exp(-(c[0] - c[1] - c[2]))))
		if math.Abs(l-want) > 1e-12 {
			t.Errorf("%v: loss %.17g, want %.17g", c, l, want)
		}
		const h = 1e-6
		f := func(a, b float64) float64 { l, _, _ := BradleyTerry(a, b, c[2]); return l }
		if fd := (f(c[0]+h, c[1]) - f(c[0]-h, c[1])) / (2 * h); math.Abs(fd-dc) > 1e-8 {
			t.Errorf("%v: dc %g, central difference %g", c, dc, fd)
		}
		if fd := (f(c[0], c[1]+h) - f(c[0], c[1]-h)) / (2 * h); math.Abs(fd-dr) > 1e-8 {
			t.Errorf("%v: dr %g, central difference %g", c, dr, fd)
		}
	}
}

func TestParamsCheck(t *testing.T) {
	for _, p := range []Params{{Loss: "nope", Beta: 1}, {Loss: Sigmoid}, {Loss: Sigmoid, Beta: 1, LabelSmoothing: 0.5}} {
		if p.Check() == nil {
			t.Errorf("%+v: accepted", p)
		}
	}
}
