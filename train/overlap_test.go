package train

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/dist"
)

// twoLayers is an objective of two tensors whose gradients are marked
// final as a model's forward pass marks them: a's op runs last in the
// backward pass. With bad, an op recorded before b's mark adds to b.
type twoLayers struct {
	a, b, ga, gb []float32
	bad          bool
}

func (o *twoLayers) Params() []autograd.Param {
	return []autograd.Param{{Name: "a", Data: o.a, Grad: o.ga, Decay: true}, {Name: "b", Data: o.b, Grad: o.gb}}
}

func (o *twoLayers) Loss(tape *autograd.Tape, step, k int) (Micro, error) {
	c := float32(k+1) * 0.37 // each micro-batch its own data
	tape.MarkReady(o.ga)
	tape.Record(func() {
		for i := range o.ga {
			o.ga[i] += 2*(o.a[i]-c) + o.b[i%len(o.b)]*0.1
		}
		if o.bad {
			o.gb[0] += 1
		}
	})
	tape.MarkReady(o.gb)
	tape.Record(func() {
		for i := range o.gb {
			o.gb[i] += 2*(o.b[i]+c)*float32(i+1)/3 + o.a[0]*0.01
		}
	})
	var m Micro
	for i := range o.a {
		m.Sum += float64((o.a[i] - c) * (o.a[i] - c))
	}
	m.Count, m.Tokens = 1, 1
	return m, nil
}

// fitRanks runs Fit of a fresh twoLayers on n goroutine ranks and returns
// rank 0's trained values and every rank's error.
func fitRanks(n, accum int, overlap, bad bool) ([]float32, []error) {
	comms := dist.Local(n)
	errs := make([]error, n)
	var out []float32
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &twoLayers{a: make([]float32, 9), b: make([]float32, 5), ga: make([]float32, 9), gb: make([]float32, 5), bad: bad}
			for i := range o.a {
				o.a[i] = float32(math.Sin(float64(i)))
			}
			cfg := Config{Steps: 4, Accum: accum, Optim: Optim{Beta1: 0.9, Beta2: 0.99, Eps: 1e-8}, GradClip: 1,
				Schedule: Schedule{Kind: "constant", LR: 0.05}, Comm: comms[r], Overlap: overlap}
			_, errs[r] = Fit(o, o, cfg)
			if r == 0 {
				out = append(o.a, o.b...)
			}
		}()
	}
	wg.Wait()
	return out, errs
}

// The overlapped all-reduce (buckets of 4 values: a tensor each)
// gives the blocking path's values bit for bit, with and without
// accumulation; an op adding to a gradient after its mark is an error on
// every rank.
func TestOverlapSameBits(t *testing.T) {
	defer func(b int) { bucketValues = b }(bucketValues)
	bucketValues = 4
	for _, accum := range []int{1, 3} {
		plain, errs := fitRanks(2, accum, false, false)
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		ov, errs := fitRanks(2, accum, true, false)
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if fmt.Sprint(plain) != fmt.Sprint(ov) {
			t.Errorf("accum %d: overlap %v, blocking %v", accum, ov, plain)
		}
	}
	_, errs := fitRanks(2, 2, true, true)
	for r, err := range errs {
		if err == nil || (r == 0 && !strings.Contains(err.Error(), "gradient of b changed after its all-reduce started")) {
			t.Errorf("rank %d with an op after the mark: %v", r, err)
		}
	}
}
