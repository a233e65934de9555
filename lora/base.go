package lora

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"

	"github.com/herd-llm/herd/llama"
)

// BaseID is the identity of the model an adapter set was trained on.
type BaseID struct {
	Name        string // the base's name or path as given (PEFT's base_model_name_or_path)
	Fingerprint string // Fingerprint of the base
}

// Identify returns the identity of base under name.
func Identify(base *llama.Model, name string) *BaseID {
	return &BaseID{Name: name, Fingerprint: Fingerprint(base)}
}

// Fingerprint identifies a base model by what quantization, format
// conversion and LoRA training leave alone: its shape (width, blocks,
// heads, KV heads, feed-forward width, vocabulary) and the values of its
// RMSNorm weights, which herd's and llama.cpp's quantizers keep in float32
// and adapters do not train. So a base, its F16 copy and its Q4_K_M
// quantization share a fingerprint, and two trained models practically
// never do (models fresh from a random initialisation of one shape, whose
// norms are all ones, do). It is "sha256:" and 64 hex digits.
func Fingerprint(m *llama.Model) string {
	h := sha256.New()
	c := m.Config
	var b []byte
	for _, v := range []int{c.Dim, c.NLayers, c.NHeads, c.NKVHeads, c.FFNDim, c.VocabSize} {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	norm := func(w []float32) {
		for _, x := range w {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
		h.Write(b)
		b = b[:0]
	}
	norm(m.OutNorm)
	for i := range m.Layers {
		norm(m.Layers[i].AttnNorm)
		norm(m.Layers[i].FFNNorm)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// CheckBase reports whether the set was trained on m: nil when it was, or
// when the set does not say (files from other tools); otherwise an error
// naming both models. Shapes are checked by Attach; an adapter of the
// right shapes trained on another model attaches without complaint, which
// is what this catches.
func (s *Set) CheckBase(m *llama.Model) error {
	if s.Base == nil || s.Base.Fingerprint == "" {
		return nil
	}
	if fp := Fingerprint(m); fp != s.Base.Fingerprint {
		name := s.Base.Name
		if name == "" {
			name = "an unnamed model"
		}
		return fmt.Errorf("the adapter was trained on %s (%s), not on this model (%s, vocabulary %d)",
			name, short(s.Base.Fingerprint), short(fp), m.Config.VocabSize)
	}
	return nil
}

func short(fp string) string {
	if len(fp) > len("sha256:")+12 {
		return fp[:len("sha256:")+12]
	}
	return fp
}
