package quant

import (
	"fmt"
	"testing"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/tensor"
)

// llamaTensors lists the tensors of a LLaMA GGUF file (F32) in file order.
func llamaTensors(layers, dim, kvDim, ffn, vocab int, tied bool) []gguf.TensorInfo {
	mat := func(name string, in, out int) gguf.TensorInfo {
		return gguf.TensorInfo{Name: name, Dims: []uint64{uint64(in), uint64(out)}, DType: tensor.F32}
	}
	vec := func(name string) gguf.TensorInfo {
		return gguf.TensorInfo{Name: name, Dims: []uint64{uint64(dim)}, DType: tensor.F32}
	}
	ts := []gguf.TensorInfo{mat("token_embd.weight", dim, vocab)}
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts, vec(p+"attn_norm.weight"), mat(p+"attn_q.weight", dim, dim), mat(p+"attn_k.weight", dim, kvDim),
			mat(p+"attn_v.weight", dim, kvDim), mat(p+"attn_output.weight", dim, dim), vec(p+"ffn_norm.weight"),
			mat(p+"ffn_gate.weight", dim, ffn), mat(p+"ffn_down.weight", ffn, dim), mat(p+"ffn_up.weight", dim, ffn))
	}
	ts = append(ts, vec("output_norm.weight"))
	if !tied {
		ts = append(ts, mat("output.weight", dim, vocab))
	}
	return ts
}

func counts(plan []Choice) map[tensor.DType]int {
	m := map[tensor.DType]int{}
	for _, c := range plan {
		m[c.To]++
	}
	return m
}

func planFor(t *testing.T, ts []gguf.TensorInfo, layers, heads, kvHeads int, ft FileType) []Choice {
	t.Helper()
	h := &hparams{arch: "llama", nLayer: layers, nHead: heads, nHeadKV: kvHeads}
	h.count(ts)
	plan, err := h.plan(ts, ft)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestTinyLlamaMixes checks the per-type tensor counts of each mix for the
// TinyLlama-1.1B shape (22 layers, 32 heads, 4 KV heads). The Q4_K_M and
// Q5_K_M counts are those llama.cpp reports for TinyLlama files
// (f32 45, q4_K/q5_K 135, q6_K 21: attn_v and ffn_down of layers 0, 1, 4,
// 7, 10, 13, 16, 19, 20, 21 plus the output get Q6_K).
func TestTinyLlamaMixes(t *testing.T) {
	ts := llamaTensors(22, 2048, 256, 5632, 32000, false)
	for _, c := range []struct {
		ft   FileType
		want map[tensor.DType]int
	}{
		{MostlyQ4KM, map[tensor.DType]int{tensor.F32: 45, tensor.Q4_K: 135, tensor.Q6_K: 21}},
		{MostlyQ5KM, map[tensor.DType]int{tensor.F32: 45, tensor.Q5_K: 135, tensor.Q6_K: 21}},
		{MostlyQ4_0, map[tensor.DType]int{tensor.F32: 45, tensor.Q4_0: 155, tensor.Q6_K: 1}},
		{MostlyQ8_0, map[tensor.DType]int{tensor.F32: 45, tensor.Q8_0: 156}},
		{MostlyQ6_K, map[tensor.DType]int{tensor.F32: 45, tensor.Q6_K: 156}},
		// attn_v of layers 0 and 1 Q5_K, the rest Q4_K; ffn_down of layer 0
		// Q5_K (n/16 = 1), the rest Q4_K; attn_output Q4_K
		{MostlyQ3KM, map[tensor.DType]int{tensor.F32: 45, tensor.Q3_K: 89, tensor.Q4_K: 63, tensor.Q5_K: 3, tensor.Q6_K: 1}},
		{MostlyQ3KL, map[tensor.DType]int{tensor.F32: 45, tensor.Q3_K: 89, tensor.Q5_K: 66, tensor.Q6_K: 1}},
		{MostlyQ3KS, map[tensor.DType]int{tensor.F32: 45, tensor.Q3_K: 155, tensor.Q6_K: 1}},
		// attn_v Q4_K (4 or more heads per KV head), ffn_down and attn_output Q3_K
		{MostlyQ2_K, map[tensor.DType]int{tensor.F32: 45, tensor.Q2_K: 89, tensor.Q3_K: 44, tensor.Q4_K: 22, tensor.Q6_K: 1}},
		// attn_v of layers 0..3 and ffn_down of layers 0, 1 (n/8 = 2) Q5_K
		{MostlyQ4KS, map[tensor.DType]int{tensor.F32: 45, tensor.Q4_K: 149, tensor.Q5_K: 6, tensor.Q6_K: 1}},
		{MostlyF16, map[tensor.DType]int{tensor.F32: 45, tensor.F16: 156}},
	} {
		got := counts(planFor(t, ts, 22, 32, 4, c.ft))
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: %v, want %v", c.ft, got, c.want)
		}
	}
}

// TestStories260KMix checks the fallbacks on stories260K's shape (rows of
// 64 and 172, tied embeddings): the k-quants do not fit 64-wide rows, and
// ffn_down's 172-wide rows fit no block format at all.
func TestStories260KMix(t *testing.T) {
	ts := llamaTensors(5, 64, 32, 172, 512, true)
	plan := planFor(t, ts, 5, 8, 4, MostlyQ4KM)
	want := map[string]tensor.DType{
		"token_embd.weight":        tensor.Q8_0, // the tied output: Q4_K does not fit 64, so Q8_0
		"blk.0.attn_q.weight":      tensor.Q5_0, // Q4_K falls back to Q5_0
		"blk.2.attn_v.weight":      tensor.Q8_0, // use_more_bits(2, 5): Q6_K, falls back to Q8_0
		"blk.3.attn_v.weight":      tensor.Q5_0,
		"blk.4.attn_v.weight":      tensor.Q8_0,
		"blk.1.ffn_down.weight":    tensor.F16, // Q4_K -> Q5_0 does not fit 172 -> F16
		"blk.4.ffn_down.weight":    tensor.F16,
		"blk.0.attn_norm.weight":   tensor.F32,
		"blk.0.ffn_gate.weight":    tensor.Q5_0,
		"blk.0.attn_output.weight": tensor.Q5_0,
	}
	for _, c := range plan {
		if w, ok := want[c.Name]; ok && c.To != w {
			t.Errorf("%s: %s, want %s", c.Name, c.To, w)
		}
	}
	// Q8_0: llama.cpp has no fallback for 172-wide rows and refuses the
	// model; herd writes those F16 and says so.
	for _, c := range planFor(t, ts, 5, 8, 4, MostlyQ8_0) {
		refused := c.Name == "blk.0.ffn_down.weight" || c.Name == "blk.3.ffn_down.weight"
		if refused && (!c.Refused || c.To != tensor.F16) {
			t.Errorf("Q8_0 %s: %s refused=%v", c.Name, c.To, c.Refused)
		}
	}
}

func TestOrder(t *testing.T) {
	ts := llamaTensors(12, 64, 64, 64, 64, false)
	plan := planFor(t, ts, 12, 1, 1, MostlyQ8_0)
	want := []string{"output.weight", "output_norm.weight", "token_embd.weight", "blk.0.attn_k.weight"}
	for i, w := range want {
		if plan[i].Name != w {
			t.Fatalf("tensor %d is %s, want %s", i, plan[i].Name, w)
		}
	}
	if plan[len(plan)-1].Name != "blk.11.ffn_up.weight" || plan[len(plan)-10].Name != "blk.10.ffn_up.weight" {
		t.Errorf("blocks not in numeric order: ... %s, %s", plan[len(plan)-10].Name, plan[len(plan)-1].Name)
	}
}

func TestParseFileType(t *testing.T) {
	for s, want := range map[string]FileType{"q4_k_m": MostlyQ4KM, "Q8_0": MostlyQ8_0, "q4_k": MostlyQ4KM, "Q3_K": MostlyQ3KM, "f16": MostlyF16, "IQ4_NL": MostlyIQ4NL} {
		if got, err := ParseFileType(s); err != nil || got != want {
			t.Errorf("%s: %v %v", s, got, err)
		}
	}
	if _, err := ParseFileType("Q1_X"); err == nil {
		t.Error("Q1_X accepted")
	}
}
