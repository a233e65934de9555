package align

import (
	"fmt"
	"math"
	"slices"
)

// The preference losses.
const (
	Sigmoid = "sigmoid" // DPO (Rafailov et al. 2023); with LabelSmoothing, conservative DPO (cDPO)
	Robust  = "robust"  // robust DPO (Chowdhury et al. 2024): unbiased under label noise LabelSmoothing
	IPO     = "ipo"     // identity preference optimisation (Azar et al. 2023), Beta as τ, on sequence sums as the paper writes it (TRL averages over tokens)
	Hinge   = "hinge"   // SLiC's calibration hinge (Zhao et al. 2023), Beta as 1/δ
	SimPO   = "simpo"   // simple preference optimisation (Meng et al. 2024): length-normalised, reference-free, margin Gamma
	ORPO    = "orpo"    // odds-ratio preference optimisation (Hong et al. 2024): SFT loss on chosen + Beta (λ) × odds-ratio loss
	KTO     = "kto"     // Kahneman–Tversky optimisation (Ethayarajh et al. 2024), unpaired
)

// Losses lists the preference losses herd dpo runs.
var Losses = []string{Sigmoid, Robust, IPO, Hinge, SimPO, ORPO, KTO}

// ParseLoss checks a loss name.
func ParseLoss(s string) error {
	if !slices.Contains(Losses, s) {
		return fmt.Errorf("unknown preference loss %q (want one of %v)", s, Losses)
	}
	return nil
}

// RefFree says whether a loss needs no reference model.
func RefFree(loss string) bool { return loss == SimPO || loss == ORPO }

// Params are the losses' hyperparameters.
type Params struct {
	Loss string
	// Beta is DPO's β (the KL coefficient), IPO's τ, the hinge's 1/δ,
	// SimPO's β, ORPO's λ (the odds-ratio term's weight), KTO's β.
	Beta float64
	// LabelSmoothing is the probability that a pair's labels are flipped
	// (cDPO, robust DPO and SimPO; 0: none).
	LabelSmoothing float64
	// Gamma is SimPO's target reward margin γ.
	Gamma float64
	// DesirableWeight and UndesirableWeight are KTO's λ_D and λ_U (0: 1).
	DesirableWeight, UndesirableWeight float64
}

// Check validates p.
func (p Params) Check() error {
	if err := ParseLoss(p.Loss); err != nil {
		return err
	}
	if !(p.Beta > 0) || math.IsInf(p.Beta, 0) {
		return fmt.Errorf("%s: beta %g: want a positive number", p.Loss, p.Beta)
	}
	if p.LabelSmoothing < 0 || p.LabelSmoothing >= 0.5 {
		return fmt.Errorf("%s: label smoothing %g: want 0 ≤ ε < 0.5", p.Loss, p.LabelSmoothing)
	}
	if p.DesirableWeight < 0 || p.UndesirableWeight < 0 {
		return fmt.Errorf("kto: negative desirable/undesirable weight")
	}
	return nil
}

// PairLogP are one pair's sequence log-probabilities (sums over the
// response tokens) under the policy and the reference, and the responses'
// lengths in tokens.
type PairLogP struct {
	Chosen, Rejected       float64 // policy
	RefChosen, RefRejected float64 // reference (unused by SimPO and ORPO)
	NChosen, NRejected     int
}

// PairResult is a pair's loss, its gradient with respect to the policy's
// two sequence log-probabilities, and the implicit rewards TRL reports.
type PairResult struct {
	Loss                         float64
	DChosen, DRejected           float64
	RewardChosen, RewardRejected float64
}

// logSigmoid is log σ(x), without overflow.
func logSigmoid(x float64) float64 {
	if x >= 0 {
		return -math.Log1p(math.Exp(-x))
	}
	return x - math.Log1p(math.Exp(x))
}

// sigmoid is σ(x).
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// logOdds is log(p/(1−p)) for p = exp(l), l < 0, and its derivative in l.
func logOdds(l float64) (float64, float64) {
	em := -math.Expm1(l) // 1 − p
	return l - math.Log(em), 1 / em
}

// Pair computes a paired loss (every loss but KTO).
func (p Params) Pair(x PairLogP) PairResult {
	b, eps := p.Beta, p.LabelSmoothing
	dc, dr := x.Chosen-x.RefChosen, x.Rejected-x.RefRejected
	r := PairResult{RewardChosen: b * dc, RewardRejected: b * dr}
	var dl float64 // dL/du for the losses of u = dc − dr
	u := dc - dr
	switch p.Loss {
	case Sigmoid:
		h := b * u
		r.Loss = -(1-eps)*logSigmoid(h) - eps*logSigmoid(-h)
		dl = b * (-(1-eps)*sigmoid(-h) + eps*sigmoid(h))
	case Robust:
		h := b * u
		r.Loss = (-(1-eps)*logSigmoid(h) + eps*logSigmoid(-h)) / (1 - 2*eps)
		dl = b * (-(1-eps)*sigmoid(-h) - eps*sigmoid(h)) / (1 - 2*eps)
	case IPO:
		d := u - 1/(2*b)
		r.Loss, dl = d*d, 2*d
	case Hinge:
		if m := 1 - b*u; m > 0 {
			r.Loss, dl = m, -b
		}
	case SimPO:
		nc, nr := float64(max(1, x.NChosen)), float64(max(1, x.NRejected))
		h := b*x.Chosen/nc - b*x.Rejected/nr - p.Gamma
		r.Loss = -(1-eps)*logSigmoid(h) - eps*logSigmoid(-h)
		g := -(1-eps)*sigmoid(-h) + eps*sigmoid(h)
		r.DChosen, r.DRejected = g*b/nc, -g*b/nr
		r.RewardChosen, r.RewardRejected = b*x.Chosen/nc, b*x.Rejected/nr
		return r
	case ORPO:
		nc, nr := float64(max(1, x.NChosen)), float64(max(1, x.NRejected))
		lc, lr := x.Chosen/nc, x.Rejected/nr
		oc, gc := logOdds(lc)
		or, gr := logOdds(lr)
		h := oc - or
		r.Loss = -lc - b*logSigmoid(h)
		s := sigmoid(-h)
		r.DChosen, r.DRejected = (-1-b*s*gc)/nc, b*s*gr/nr
		r.RewardChosen, r.RewardRejected = b*lc, b*lr
		return r
	}
	r.DChosen, r.DRejected = dl, -dl
	return r
}

// Unpaired is one KTO sample's log-probabilities: the policy's and the
// reference's sums over its response, and its label.
type Unpaired struct {
	LogP, RefLogP float64
	Desirable     bool
}

// KTOResult is KTO's loss on one sample, its gradient with respect to the
// policy's log-probability, and the implicit reward β(π − π_ref).
type KTOResult struct {
	Loss, D, Reward float64
}

// KTORefPoint is KTO's reference point z₀: the batch's estimate of
// KL(π‖π_ref), the mean of the log-ratios of mismatched (prompt, response)
// pairs, clamped at 0. It is a constant of the loss (no gradient flows
// through it, as in the paper).
func KTORefPoint(policy, ref []float64) float64 {
	if len(policy) == 0 {
		return 0
	}
	s := 0.0
	for i := range policy {
		s += policy[i] - ref[i]
	}
	return max(0, s/float64(len(policy)))
}

// KTO computes the loss of one unpaired sample against reference point z:
// λ_D(1 − σ(β(r − z))) when desirable, λ_U(1 − σ(β(z − r))) when not, with
// r = π − π_ref.
func (p Params) KTO(x Unpaired, z float64) KTOResult {
	b := p.Beta
	wd, wu := p.DesirableWeight, p.UndesirableWeight
	if wd == 0 {
		wd = 1
	}
	if wu == 0 {
		wu = 1
	}
	r := x.LogP - x.RefLogP
	res := KTOResult{Reward: b * r}
	if x.Desirable {
		s := sigmoid(b * (r - z))
		res.Loss, res.D = wd*(1-s), -wd*b*s*(1-s)
	} else {
		s := sigmoid(b * (z - r))
		res.Loss, res.D = wu*(1-s), wu*b*s*(1-s)
	}
	return res
}

// BradleyTerry is a reward model's loss on a pair, −log σ(r_c − r_r − m),
// and its gradient with respect to the two rewards.
func BradleyTerry(rc, rr, margin float64) (loss, dc, dr float64) {
	h := rc - rr - margin
	s := sigmoid(-h)
	return -logSigmoid(h), -s, s
}
