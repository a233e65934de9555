package llama

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/format/llama2c"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

const realGGUF = "../format/gguf/testdata/stories260K-llamacpp.gguf"

// withKey rewrites the real stories260K GGUF with metadata key set to x
// (added when absent) and parses the result.
func withKey(t *testing.T, key string, x any) *gguf.File {
	t.Helper()
	data, err := os.ReadFile(realGGUF)
	if err != nil {
		t.Skipf("%s: %v", realGGUF, err)
	}
	f, err := gguf.Parse(realGGUF, data)
	if err != nil {
		t.Fatal(err)
	}
	w := gguf.NewWriter()
	set := false
	for _, kv := range f.KV {
		v := any(kv.Value)
		if kv.Key == key {
			v, set = x, true
		}
		if err := w.Set(kv.Key, v); err != nil {
			t.Fatal(err)
		}
	}
	if !set {
		if err := w.Set(key, x); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		if err := w.AddTensor(ti.Name, ti.DType, ti.Dims, ti.Data); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	out, err := gguf.Parse("edited.gguf", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGGUFHyperparameters checks that each llama.* hyperparameter is
// refused, with a message naming the key, when it is stored as the wrong
// type (before, a string context_length silently became 2048), is not
// finite (rms epsilon and rope base of inf were accepted) or is
// implausible (a 2^31 context sized the KV cache at start).
func TestGGUFHyperparameters(t *testing.T) {
	if _, err := FromGGUF(withKey(t, "general.name", "unchanged")); err != nil {
		t.Fatalf("the unedited file does not load: %v", err)
	}
	for _, c := range []struct {
		key  string
		val  any
		want string
	}{
		{"llama.context_length", "4096", "llama.context_length is string"},
		{"llama.context_length", uint32(1 << 31), "implausible"},
		{"llama.context_length", uint64(MaxContextLen + 1), "implausible"},
		{"llama.context_length", uint32(0), "must be positive"},
		{"llama.block_count", uint32(1 << 30), "1073741824 blocks, but the file holds"},
		{"llama.block_count", uint32(0), "0 blocks"},
		{"llama.embedding_length", float32(64), "llama.embedding_length is float32"},
		{"llama.attention.head_count_kv", "4", "llama.attention.head_count_kv is string"},
		{"llama.rope.dimension_count", "8", "llama.rope.dimension_count is string"},
		{"llama.attention.layer_norm_rms_epsilon", float32(math.Inf(1)), "not a finite"},
		{"llama.attention.layer_norm_rms_epsilon", float32(math.NaN()), "not a finite"},
		{"llama.attention.layer_norm_rms_epsilon", float32(-1e-5), "must be positive"},
		{"llama.attention.layer_norm_rms_epsilon", float32(2), "outside (0, 1)"},
		{"llama.attention.layer_norm_rms_epsilon", "1e-5", "is string"},
		{"llama.rope.freq_base", float32(math.Inf(1)), "not a finite"},
		{"llama.rope.freq_base", float64(1e300), "not a finite float32"},
		{"llama.rope.freq_base", float32(0.5), "above 1"},
		{"llama.rope.freq_base", uint32(10000), "llama.rope.freq_base is uint32"},
	} {
		_, err := FromGGUF(withKey(t, c.key, c.val))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s = %v (%T): got error %v, want one containing %q", c.key, c.val, c.val, err, c.want)
		}
	}
	// the longest plausible context still loads
	if _, err := FromGGUF(withKey(t, "llama.context_length", uint32(MaxContextLen))); err != nil {
		t.Errorf("context %d: %v", MaxContextLen, err)
	}
}

// TestLlama2cContextLength checks the same bound on a llama2.c header (a
// version 2 file, whose size does not depend on seq_len).
func TestLlama2cContextLength(t *testing.T) {
	data, err := os.ReadFile("../format/llama2c/testdata/stories260K_q80_v2.bin")
	if err != nil {
		t.Skip(err)
	}
	data = bytes.Clone(data)
	// ak42 header: magic, version, then dim, hidden, layers, heads, kv heads, vocab, seq_len (int32 each)
	data[32], data[33], data[34], data[35] = 0, 0, 0, 0x40 // seq_len 2^30
	ck, err := llama2c.Parse("big-context.bin", data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromLlama2c(ck.Path, ck); err == nil || !strings.Contains(err.Error(), "implausible") {
		t.Errorf("seq_len 2^30: got %v, want an implausible-context error", err)
	}
}

// tinyGGUF is a 1-block random model of width 16 as GGUF bytes.
func tinyGGUF(t testing.TB) []byte {
	c := Config{Dim: 16, NLayers: 1, NHeads: 2, NKVHeads: 1, FFNDim: 16, VocabSize: 8, ContextLen: 32, RopeTheta: 10000, NormEps: 1e-5}
	m, err := Random(c, tensor.F16, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := gguf.NewWriter()
	for _, kv := range []struct {
		k string
		v any
	}{{"general.architecture", "llama"}, {"llama.context_length", uint32(c.ContextLen)}, {"llama.embedding_length", uint32(c.Dim)},
		{"llama.block_count", uint32(c.NLayers)}, {"llama.feed_forward_length", uint32(c.FFNDim)},
		{"llama.attention.head_count", uint32(c.NHeads)}, {"llama.attention.head_count_kv", uint32(c.NKVHeads)},
		{"llama.rope.freq_base", c.RopeTheta}, {"llama.attention.layer_norm_rms_epsilon", c.NormEps}} {
		if err := w.Set(kv.k, kv.v); err != nil {
			t.Fatal(err)
		}
	}
	mat := func(name string, l *nn.Linear) {
		if err := w.AddTensor(name, l.DType, []uint64{uint64(l.In), uint64(l.Out)}, l.Data); err != nil {
			t.Fatal(err)
		}
	}
	vec := func(name string, v []float32) {
		if err := w.AddTensor(name, tensor.F32, []uint64{uint64(len(v))}, tensor.BytesOfF32(v)); err != nil {
			t.Fatal(err)
		}
	}
	mat("token_embd.weight", m.Embed)
	vec("output_norm.weight", m.OutNorm)
	l := m.Layers[0]
	vec("blk.0.attn_norm.weight", l.AttnNorm)
	vec("blk.0.ffn_norm.weight", l.FFNNorm)
	for name, lin := range map[string]*nn.Linear{"attn_q": l.Wq, "attn_k": l.Wk, "attn_v": l.Wv, "attn_output": l.Wo,
		"ffn_gate": l.Gate, "ffn_up": l.Up, "ffn_down": l.Down} {
		mat("blk.0."+name+".weight", lin)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzFromGGUF builds models from arbitrary GGUF files: FromGGUF returns
// an error or a model whose config is valid (hyperparameters finite and
// in range, the context at most MaxContextLen) and that runs one token;
// it never panics nor allocates by a metadata value alone.
func FuzzFromGGUF(f *testing.F) {
	tiny := tinyGGUF(f)
	if p, err := gguf.Parse("tiny.gguf", tiny); err != nil {
		f.Fatal(err)
	} else if _, err := FromGGUF(p); err != nil {
		f.Fatalf("the seed does not load: %v", err)
	}
	f.Add(tiny)
	for _, at := range []int{40, 80, 120, 200, 260} {
		b := bytes.Clone(tiny)
		b[at] ^= 0xff
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := gguf.Parse("fuzz.gguf", b)
		if err != nil {
			return
		}
		m, err := FromGGUF(file)
		if err != nil {
			return
		}
		if err := m.Config.Validate(); err != nil || m.Config.ContextLen > MaxContextLen {
			t.Fatalf("loaded a model of invalid config %+v: %v", m.Config, err)
		}
		var st State
		if _, err := m.Forward(&st, m.NewKVCache(2), []int{0}, 0, false); err != nil {
			t.Fatalf("a loaded model does not run: %v", err)
		}
	})
}
