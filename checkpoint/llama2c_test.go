package checkpoint

import (
	"bytes"
	"path/filepath"
	"slices"
	"testing"
)

// SaveLlama2c writes the embedded stories260K as llama2.c files (legacy
// and ak42 float32) that load back with the same weights and vocabulary.
func TestSaveLlama2cRoundTrip(t *testing.T) {
	m, tok, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, version := range []int{0, 1} {
		dir := t.TempDir()
		bin, tb := filepath.Join(dir, "m.bin"), filepath.Join(dir, "tok.bin")
		if err := SaveLlama2c(bin, m, version, tb, tok); err != nil {
			t.Fatal(err)
		}
		m2, tok2, err := Load(bin, tb)
		if err != nil {
			t.Fatal(err)
		}
		if m2.Config.Dim != m.Config.Dim || m2.Config.NLayers != m.Config.NLayers || tok2.VocabSize() != tok.VocabSize() {
			t.Fatalf("v%d: config %+v, vocab %d", version, m2.Config, tok2.VocabSize())
		}
		for i := range m.Layers {
			a, b := m.Layers[i].Matrices(), m2.Layers[i].Matrices()
			for k := range a {
				if !bytes.Equal((*a[k]).Data, (*b[k]).Data) {
					t.Errorf("v%d: %s differs after the round trip", version, (*a[k]).Name)
				}
			}
		}
		text := "Once upon a time, a little girl"
		if a, b := tok.Encode(text, true, false), tok2.Encode(text, true, false); !slices.Equal(a, b) {
			t.Errorf("v%d: %v encodes as %v after the round trip", version, a, b)
		}
		m2.Close()
	}
}
