package convert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

func openModel(t *testing.T, dir string) (*llama.Model, tokenizer.Tokenizer, *Source) {
	t.Helper()
	src, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	m, err := src.Model()
	if err != nil {
		t.Fatal(err)
	}
	return m, src.Tokenizer, src
}

// greedy decodes n tokens after prompt by argmax.
func greedy(t *testing.T, m *llama.Model, prompt []int, n int) []int {
	t.Helper()
	var s llama.State
	cache := m.NewKVCache(len(prompt) + n)
	out := append([]int(nil), prompt...)
	next := prompt
	for range n {
		logits, err := m.Forward(&s, cache, next, cache.Len, false)
		if err != nil {
			t.Fatal(err)
		}
		best := 0
		for i, x := range logits {
			if x > logits[best] {
				best = i
			}
		}
		out = append(out, best)
		next = []int{best}
	}
	return out
}

// sameWeights compares every weight of two models byte for byte.
func sameWeights(t *testing.T, a, b *llama.Model) {
	t.Helper()
	lin := func(name string, x, y *nn.Linear) {
		if x == nil || y == nil {
			if x != y {
				t.Errorf("%s: present in one model only", name)
			}
			return
		}
		if x.DType != y.DType || x.Out != y.Out || x.In != y.In || !bytes.Equal(x.Data, y.Data) {
			t.Errorf("%s differs (%s %d×%d vs %s %d×%d)", name, x.DType, x.Out, x.In, y.DType, y.Out, y.In)
		}
	}
	lin("embed", a.Embed, b.Embed)
	lin("output", a.Output, b.Output)
	if !reflect.DeepEqual(a.OutNorm, b.OutNorm) || a.Config != b.Config {
		t.Errorf("output norm or config differ: %+v vs %+v", a.Config, b.Config)
	}
	for i := range a.Layers {
		x, y := &a.Layers[i], &b.Layers[i]
		for j, p := range [][2]*nn.Linear{{x.Wq, y.Wq}, {x.Wk, y.Wk}, {x.Wv, y.Wv}, {x.Wo, y.Wo}, {x.Gate, y.Gate}, {x.Up, y.Up}, {x.Down, y.Down}} {
			lin(fmt.Sprintf("layer %d matrix %d", i, j), p[0], p[1])
		}
		if !reflect.DeepEqual(x.AttnNorm, y.AttnNorm) || !reflect.DeepEqual(x.FFNNorm, y.FFNNorm) {
			t.Errorf("layer %d norms differ", i)
		}
	}
}

// TestExportRoundTrip: a model read from an HF directory, exported as HF
// (sharded) and read back has bit-identical tensors, the same greedy text,
// the same tokenizer and chat template; and the exported safetensors hold
// exactly the bytes of the torch-written source, so the float64 PyTorch
// reference of the source is the reference of the export.
func TestExportRoundTrip(t *testing.T) {
	m, tok, src := openModel(t, "testdata/llama_st")
	out := filepath.Join(t.TempDir(), "hf")
	if err := WriteHF(out, m, tok, HFOptions{MaxShardBytes: 20000, ChatTemplate: src.ChatTemplate}); err != nil {
		t.Fatal(err)
	}
	m2, tok2, src2 := openModel(t, out)
	sameWeights(t, m, m2)
	prompt := []int{1, 7, 3}
	if g1, g2 := greedy(t, m, prompt, 12), greedy(t, m2, prompt, 12); !reflect.DeepEqual(g1, g2) {
		t.Errorf("greedy text differs: %v vs %v", g1, g2)
	}
	if src2.ChatTemplate != src.ChatTemplate || tok2.VocabSize() != tok.VocabSize() || tok2.EOS() != tok.EOS() {
		t.Errorf("tokenizer or template not carried: %q, %d tokens, EOS %d", src2.ChatTemplate, tok2.VocabSize(), tok2.EOS())
	}
	if a, b := tok.Encode("Once upon a time", true, false), tok2.Encode("Once upon a time", true, false); !reflect.DeepEqual(a, b) {
		t.Errorf("tokenizer encodes %v, exported %v", a, b)
	}
	shards, _ := filepath.Glob(filepath.Join(out, "model-*-of-*.safetensors"))
	if len(shards) < 2 {
		t.Fatalf("%d shards, want several under a 20000-byte limit", len(shards))
	}
	orig, err := safetensors.Open("testdata/llama_st/model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	n := 0
	for _, sh := range shards {
		f, err := safetensors.Open(sh)
		if err != nil {
			t.Fatal(err)
		}
		if f.Metadata["format"] != "pt" {
			t.Errorf("%s: metadata %v lacks format pt (transformers requires it)", sh, f.Metadata)
		}
		for _, e := range f.Tensors {
			o, ok := orig.Tensor(e.Name)
			if !ok || o.DType != e.DType || !reflect.DeepEqual(o.Shape, e.Shape) || !bytes.Equal(o.Data, e.Data) {
				t.Errorf("%s: exported tensor differs from the torch-written one", e.Name)
			}
			n++
		}
		f.Close()
	}
	if n != len(orig.Tensors) {
		t.Errorf("exported %d tensors, the source has %d", n, len(orig.Tensors))
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(out, "config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil || cfg["model_type"] != "llama" || cfg["torch_dtype"] != "float32" {
		t.Errorf("config.json: %v %v", cfg, err)
	}
}

// TestExportF16 writes F16 matrices and reads them back as F16.
func TestExportF16(t *testing.T) {
	m, tok, _ := openModel(t, "testdata/llama_bin")
	out := filepath.Join(t.TempDir(), "hf")
	if err := WriteHF(out, m, tok, HFOptions{DType: safetensors.F16}); err != nil {
		t.Fatal(err)
	}
	m2, _, _ := openModel(t, out)
	if m2.Layers[0].Wq.DType != tensor.F16 {
		t.Fatalf("read back %s", m2.Layers[0].Wq.DType)
	}
	a, b := make([]float32, m.Config.Dim), make([]float32, m.Config.Dim)
	m.Layers[1].Wk.Row(a, 0)
	m2.Layers[1].Wk.Row(b, 0)
	for i := range a {
		if tensor.F16ToF32(tensor.F32ToF16(a[i])) != b[i] {
			t.Fatalf("Wk[0][%d] = %g, want %g rounded to F16", i, b[i], a[i])
		}
	}
}

// TestExportBPETokenizer writes a byte-level BPE as tokenizer.json and
// reads it back with the same tokens, merges and encoding.
func TestExportBPETokenizer(t *testing.T) {
	var toks []string
	var types []tokenizer.Type
	for b := range 256 {
		toks = append(toks, tokenizer.ByteLevel(string([]byte{byte(b)})))
		types = append(types, tokenizer.TypeNormal)
	}
	merges := []string{"h e", "l l", "he ll", "hell o"}
	for _, mg := range merges {
		toks = append(toks, strings.ReplaceAll(mg, " ", ""))
		types = append(types, tokenizer.TypeNormal)
	}
	toks = append(toks, "<|begin|>", "<|end|>")
	types = append(types, tokenizer.TypeControl, tokenizer.TypeControl)
	bpe, err := tokenizer.NewBPE(toks, types, merges, tokenizer.BPEOptions{Pre: tokenizer.PreLlama3, BOS: 260, EOS: 261, AddBOS: true, ChatTemplate: "{{ x }}"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeTokenizer(dir, bpe, "", 64); err != nil {
		t.Fatal(err)
	}
	j, _ := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	c, _ := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	back, err := tokenizer.FromHuggingFace(j, c)
	if err != nil {
		t.Fatal(err)
	}
	if back.VocabSize() != bpe.VocabSize() || !reflect.DeepEqual(back.Merges(), bpe.Merges()) || back.BOS() != 260 || back.EOS() != 261 || back.ChatTemplate() != "{{ x }}" {
		t.Fatalf("read back %d tokens, BOS %d EOS %d, template %q", back.VocabSize(), back.BOS(), back.EOS(), back.ChatTemplate())
	}
	for id := range bpe.VocabSize() {
		if back.Piece(id) != bpe.Piece(id) || back.Type(id) != bpe.Type(id) {
			t.Fatalf("token %d: %q %v, want %q %v", id, back.Piece(id), back.Type(id), bpe.Piece(id), bpe.Type(id))
		}
	}
	if a, b := bpe.Encode("hello, hell", true, false), back.Encode("hello, hell", true, false); !reflect.DeepEqual(a, b) {
		t.Errorf("encodes %v, read back %v", a, b)
	}
}

// TestCheckPEFT: a herd LoRA saved in PEFT's layout fits the exported base;
// a wrong target module or base name is reported.
func TestCheckPEFT(t *testing.T) {
	m, tok, _ := openModel(t, "testdata/llama_bin")
	base := filepath.Join(t.TempDir(), "base")
	if err := WriteHF(base, m, tok, HFOptions{}); err != nil {
		t.Fatal(err)
	}
	set, err := lora.New(m, lora.Config{Rank: 2, Alpha: 4, Targets: []string{"q", "k", "v", "o", "gate", "up", "down"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	ad := filepath.Join(t.TempDir(), "adapter")
	if err := lora.SavePEFT(ad, set, m.Config, base); err != nil {
		t.Fatal(err)
	}
	res, err := CheckPEFT(ad, base)
	if err != nil || res.BaseMismatch != "" || res.Adapters != 7*m.Config.NLayers {
		t.Fatalf("check: %+v, %v", res, err)
	}
	if err := lora.SavePEFT(ad, set, m.Config, "someone/else"); err != nil {
		t.Fatal(err)
	}
	if res, err := CheckPEFT(ad, base); err != nil || !strings.Contains(res.BaseMismatch, "someone/else") {
		t.Errorf("base mismatch not reported: %+v, %v", res, err)
	}
	editJSON(t, filepath.Join(ad, "adapter_config.json"), func(c map[string]any) { c["target_modules"] = []string{"q_proj", "W_pack"} })
	if _, err := CheckPEFT(ad, base); err == nil || !strings.Contains(err.Error(), `"W_pack"`) {
		t.Errorf("unknown target: err = %v", err)
	}
}

// TestFalconLoRA: LoRA adapters on a Falcon model's attention (views of
// the fused QKV) and feed-forward train through the parallel block (their
// gradients are those of central differences), and a gate target is a
// clear error.
func TestFalconLoRA(t *testing.T) {
	m, _, _ := openModel(t, "testdata/falcon7_bin")
	if _, err := lora.New(m, lora.Config{Rank: 2, Alpha: 2, Targets: []string{"gate"}}, 1); err == nil || !strings.Contains(err.Error(), "no \"gate\"") {
		t.Errorf("gate on Falcon: err = %v", err)
	}
	set, err := lora.New(m, lora.Config{Rank: 2, Alpha: 2, Targets: []string{"q", "k", "v", "o", "up", "down"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range set.Adapters {
		for j := range set.Adapters[i].B {
			set.Adapters[i].B[j] = 0.1 * float32(j%5-2)
		}
	}
	if err := set.Attach(m, 1); err != nil {
		t.Fatal(err)
	}
	toks, targets := []int{1, 5, 9, 3}, []int{5, 9, 3, 2}
	m.KVF32 = true
	loss := func() float64 {
		var s llama.State
		var tape autograd.Tape
		lv, err := m.ForwardTape(&s, &tape, nil, []llama.Seq{{Tokens: toks, All: true}}, llama.TapeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		l, _ := autograd.CrossEntropy(&tape, lv, targets, m.Config.VocabSize, 1)
		return l
	}
	var s llama.State
	var tape autograd.Tape
	for i := range set.Adapters {
		clear(set.Adapters[i].GradA)
		clear(set.Adapters[i].GradB)
	}
	lv, err := m.ForwardTape(&s, &tape, nil, []llama.Seq{{Tokens: toks, All: true}}, llama.TapeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	autograd.CrossEntropy(&tape, lv, targets, m.Config.VocabSize, 1)
	tape.Backward()
	nonzero := 0
	for _, a := range set.Adapters {
		for _, pg := range [][2][]float32{{a.A, a.GradA}, {a.B, a.GradB}} {
			i := len(pg[0]) / 2
			if pg[1][i] != 0 {
				nonzero++
			}
			v := pg[0][i]
			const h = 1e-2
			pg[0][i] = v + h
			lp := loss()
			pg[0][i] = v - h
			lm := loss()
			pg[0][i] = v
			if fd := (lp - lm) / (2 * h); math.Abs(fd-float64(pg[1][i])) > 1e-2*math.Max(math.Abs(fd), 1e-2) {
				t.Errorf("layer %d %s: gradient %g, finite differences %g", a.Layer, a.Module, pg[1][i], fd)
			}
		}
	}
	if nonzero < len(set.Adapters) {
		t.Errorf("only %d of %d checked gradients are non-zero", nonzero, 2*len(set.Adapters))
	}
}

// TestExportFalcon: Falcon models exported as HF and read back are
// bit-identical, and the exported safetensors equal the torch-written
// source tensor for tensor.
func TestExportFalcon(t *testing.T) {
	for _, dir := range []string{"falcon7_bin", "falcon40_st"} {
		m, _, _ := openModel(t, filepath.Join("testdata", dir))
		out := filepath.Join(t.TempDir(), "hf")
		if err := WriteHF(out, m, nil, HFOptions{}); err != nil {
			t.Fatal(err)
		}
		m2, _, _ := openModel(t, out)
		sameWeights(t, m, m2)
		if !reflect.DeepEqual(m.OutNormB, m2.OutNormB) || !reflect.DeepEqual(m.Layers[1].FFNNormB, m2.Layers[1].FFNNormB) {
			t.Errorf("%s: biases differ", dir)
		}
		if dir != "falcon40_st" {
			continue
		}
		orig, err := safetensors.Open("testdata/falcon40_st/model.safetensors")
		if err != nil {
			t.Fatal(err)
		}
		f, err := safetensors.Open(filepath.Join(out, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range orig.Tensors {
			g, ok := f.Tensor(e.Name)
			if !ok || !bytes.Equal(g.Data, e.Data) {
				t.Errorf("exported %s differs from the torch-written one", e.Name)
			}
		}
		f.Close()
		orig.Close()
	}
}

// TestFalconPEFT: a Falcon LoRA (q, k and v through the fused projection's
// views) saved in PEFT's layout is one query_key_value adapter per layer
// that fits the exported FalconForCausalLM base, and read back it gives the
// same logits.
func TestFalconPEFT(t *testing.T) {
	logits := func(m *llama.Model) []float32 {
		m.KVF32 = true
		var s llama.State
		out, err := m.Forward(&s, m.NewKVCache(5), []int{1, 5, 9, 3, 17}, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		return append([]float32(nil), out...)
	}
	m, _, _ := openModel(t, "testdata/falcon40_st")
	set, err := lora.New(m, lora.Config{Rank: 2, Alpha: 3, Targets: []string{"q", "k", "v", "o", "up", "down"}}, 7)
	if err != nil {
		t.Fatal(err)
	}
	for i := range set.Adapters {
		for j := range set.Adapters[i].B {
			set.Adapters[i].B[j] = 0.2 * float32((j*7+i)%5-2)
		}
	}
	base := filepath.Join(t.TempDir(), "base")
	if err := WriteHF(base, m, nil, HFOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := set.Attach(m, 1); err != nil {
		t.Fatal(err)
	}
	want := logits(m)
	ad := filepath.Join(t.TempDir(), "adapter")
	if err := lora.SavePEFT(ad, set, m.Config, base); err != nil {
		t.Fatal(err)
	}
	res, err := CheckPEFT(ad, base)
	if err != nil || res.BaseMismatch != "" || res.Adapters != 4*m.Config.NLayers {
		t.Fatalf("check: %+v, %v", res, err)
	}
	m2, _, _ := openModel(t, "testdata/falcon40_st")
	back, err := lora.LoadPEFT(ad, m2.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Attach(m2, 1); err != nil {
		t.Fatal(err)
	}
	got := logits(m2)
	var worst float64
	for i := range want {
		worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
	}
	if worst > 1e-5 || reflect.DeepEqual(want, logits(openModelPlain(t))) {
		t.Errorf("logits through the PEFT file differ by %g (or the adapter changed nothing)", worst)
	}
}

func openModelPlain(t *testing.T) *llama.Model {
	m, _, _ := openModel(t, "testdata/falcon40_st")
	return m
}
