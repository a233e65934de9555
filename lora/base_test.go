package lora

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/assets"
	"github.com/herd-llm/herd/format/llama2c"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

// stories260K is the embedded model, each call a fresh copy on the heap.
func stories260K(t *testing.T) *llama.Model {
	t.Helper()
	ck, err := llama2c.Parse("stories260K.bin", assets.Stories260K())
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.FromLlama2c(ck.Path, ck)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.CloneF32()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBaseIdentity checks that an adapter records the model it was
// trained on in both file formats (PEFT's base_model_name_or_path filled,
// the fingerprint in the safetensors metadata; general.base_model.0.name
// and herd.base_fingerprint in GGUF), that it still applies to that model
// and to a quantized copy of it, and that applying it to another model of
// matching shapes is an error (a stories260K adapter attached silently to
// a model of another vocabulary before).
func TestBaseIdentity(t *testing.T) {
	base := stories260K(t)
	s, err := New(base, Config{Rank: 2, Alpha: 4, Targets: []string{"q", "v"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.Base = Identify(base, "stories260K")
	dir := t.TempDir()
	peft := filepath.Join(dir, "peft")
	if err := SavePEFT(peft, s, base.Config, ""); err != nil {
		t.Fatal(err)
	}
	gg := filepath.Join(dir, "a.gguf")
	if err := SaveGGUF(gg, s); err != nil {
		t.Fatal(err)
	}
	js, _ := os.ReadFile(filepath.Join(peft, "adapter_config.json"))
	var pc peftConfig
	if err := json.Unmarshal(js, &pc); err != nil || pc.BaseModel != "stories260K" {
		t.Errorf("adapter_config.json base_model_name_or_path %q (%v)", pc.BaseModel, err)
	}

	resized := stories260K(t) // the Chinese-LLaMA route: a larger vocabulary
	if err := resized.ResizeVocab(600); err != nil {
		t.Fatal(err)
	}
	retrained := stories260K(t) // same shapes, other weights
	for i := range retrained.OutNorm {
		retrained.OutNorm[i] *= 1.01
	}
	quantized := stories260K(t)
	if _, _, err := QuantizeBase(quantized, tensor.Q8_0); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{peft, gg} {
		l, err := Load(p, base.Config)
		if err != nil {
			t.Fatal(err)
		}
		if l.Base == nil || *l.Base != *s.Base {
			t.Fatalf("%s: base read back as %+v, want %+v", p, l.Base, s.Base)
		}
		if err := l.CheckBase(base); err != nil {
			t.Errorf("%s on its own base: %v", p, err)
		}
		if err := l.CheckBase(quantized); err != nil {
			t.Errorf("%s on its base quantized to Q8_0: %v", p, err)
		}
		for name, other := range map[string]*llama.Model{"resized": resized, "retrained": retrained} {
			err := l.CheckBase(other)
			if err == nil || !strings.Contains(err.Error(), "trained on stories260K") {
				t.Errorf("%s on the %s model: %v, want an error naming stories260K", p, name, err)
			}
			if err := l.Attach(other, 1); err != nil { // the shapes fit: only the identity tells
				t.Errorf("%s: shapes do not fit the %s model: %v", p, name, err)
			}
			l.Detach(other)
		}
	}
	// a set that does not say (another tool's file) is not refused
	s.Base = nil
	if err := s.CheckBase(resized); err != nil {
		t.Errorf("no recorded base: %v", err)
	}
}
