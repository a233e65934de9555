package llamaref

import (
	"math"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/llama"
)

// TestMatchesForward checks the reference against llama's forward on the
// embedded stories260K, so that tests relying on it rely on something
// that agrees with the model (and would catch either drifting).
func TestMatchesForward(t *testing.T) {
	m, _, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	toks := []int{1, 400, 37, 298, 6, 55, 123, 9, 300, 41}
	var s llama.State
	got, err := m.Forward(&s, m.NewKVCache(16), toks, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	want := New(m).Logits(toks)
	v := m.Config.VocabSize
	for p := range toks {
		for i := range v {
			if d := math.Abs(float64(got[p*v+i]) - want[p][i]); d > 2e-4*(1+math.Abs(want[p][i])) {
				t.Fatalf("position %d logit %d: forward %g, reference %g", p, i, got[p*v+i], want[p][i])
			}
		}
	}
}
