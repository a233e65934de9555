package checkpoint

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	conv "github.com/herd-llm/herd/convert"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

const llamaST = "../convert/testdata/llama_st"

// refLogits reads a reference directory's logits.f64.
func refLogits(t *testing.T, dir string) []float64 {
	raw, err := os.ReadFile(filepath.Join(dir, "logits.f64"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(raw)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return out
}

var refTokens = []int{1, 5, 9, 3, 17, 2, 11} // testdata/make.py's TOKENS

func forwardAll(t *testing.T, m *llama.Model) []float32 {
	m.KVF32 = true
	var s llama.State
	out, err := m.Forward(&s, m.NewKVCache(len(refTokens)), refTokens, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConvertGGUF converts a Hugging Face directory to GGUF and loads it:
// the tensors equal the directory's (read directly), the logits equal the
// PyTorch reference, and the tokenizer, its EOS from generation_config.json
// and the chat template are carried.
func TestConvertGGUF(t *testing.T) {
	src, err := conv.Open(llamaST)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	out := filepath.Join(t.TempDir(), "m.gguf")
	var last, total int64
	if err := ConvertGGUF(out, src, ConvertOptions{Name: "tiny", Progress: func(d, n int64) { last, total = d, n }}); err != nil {
		t.Fatal(err)
	}
	if last != total || total == 0 {
		t.Errorf("progress ended at %d of %d", last, total)
	}
	m, tok, err := Load(out, "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	direct, dtok, err := Load(llamaST, "")
	if err != nil {
		t.Fatal(err)
	}
	if tok.EOS() != 5 || dtok.EOS() != 5 || tok.VocabSize() != 512 {
		t.Errorf("EOS %d (directory %d), want generation_config.json's first, 5; vocab %d", tok.EOS(), dtok.EOS(), tok.VocabSize())
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if tmpl, _ := f.GetString("tokenizer.chat_template"); tmpl != src.ChatTemplate || tmpl == "" {
		t.Errorf("chat template %q, want %q", tmpl, src.ChatTemplate)
	}
	if !bytes.Equal(m.Layers[1].Wq.Data, direct.Layers[1].Wq.Data) || !bytes.Equal(m.Output.Data, direct.Output.Data) {
		t.Error("the GGUF's tensors differ from the directory's")
	}
	ref := refLogits(t, llamaST)
	var scale, worst float64
	for i, g := range forwardAll(t, m) {
		scale = math.Max(scale, math.Abs(ref[i]))
		worst = math.Max(worst, math.Abs(float64(g)-ref[i]))
	}
	if worst > 1e-5*scale {
		t.Errorf("GGUF logits differ from torch's by %.3g (largest %.3g)", worst, scale)
	}
	// re-encoded as F16 the file loads as an F16 model; Q8_0 needs rows of
	// whole 32-element blocks, which this 16-wide model has not
	h := filepath.Join(t.TempDir(), "h.gguf")
	if err := ConvertGGUF(h, src, ConvertOptions{DType: tensor.F16, Convert: true}); err != nil {
		t.Fatal(err)
	}
	mh, _, err := Load(h, "")
	if err != nil {
		t.Fatal(err)
	}
	if mh.Layers[0].Wq.DType != tensor.F16 || len(mh.Layers[0].AttnNorm) != 16 {
		t.Errorf("F16 conversion wrote %s", mh.Layers[0].Wq.DType)
	}
	mh.Close()
	err = ConvertGGUF(filepath.Join(t.TempDir(), "q.gguf"), src, ConvertOptions{DType: tensor.Q8_0, Convert: true})
	if err == nil || !strings.Contains(err.Error(), "token_embd.weight") {
		t.Errorf("Q8_0 of 16-wide rows: err = %v", err)
	}
}

// TestFalconGGUF converts Falcon HF directories to GGUF ("falcon", fused
// attn_qkv): the loaded GGUF's logits equal the torch reference, and
// SaveGGUF of the loaded model writes the same tensors again.
func TestFalconGGUF(t *testing.T) {
	for _, dir := range []string{"../convert/testdata/falcon7_bin", "../convert/testdata/falcon40_st"} {
		src, err := conv.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "f.gguf")
		err = ConvertGGUF(out, src, ConvertOptions{Name: "falcon"})
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
		m, err := llama.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		ref := refLogits(t, dir)
		var scale, worst float64
		for i, g := range forwardAll(t, m) {
			scale = math.Max(scale, math.Abs(ref[i]))
			worst = math.Max(worst, math.Abs(float64(g)-ref[i]))
		}
		if worst > 1e-5*scale || !m.Config.IsFalcon() {
			t.Errorf("%s: GGUF logits differ from torch's by %.3g (largest %.3g); falcon %v", dir, worst, scale, m.Config.IsFalcon())
		}
		again := filepath.Join(t.TempDir(), "g.gguf")
		if err := SaveGGUF(again, m, nil, SaveOptions{Name: "falcon"}); err != nil {
			t.Fatal(err)
		}
		a, _ := gguf.Open(out)
		b, _ := gguf.Open(again)
		if arch, _ := b.GetString("general.architecture"); arch != "falcon" || len(a.Tensors) != len(b.Tensors) {
			t.Fatalf("saved %s with %d tensors, want falcon with %d", arch, len(b.Tensors), len(a.Tensors))
		}
		for i := range a.Tensors {
			if a.Tensors[i].Name != b.Tensors[i].Name || !bytes.Equal(a.Tensors[i].Data, b.Tensors[i].Data) {
				t.Errorf("%s: tensor %s differs after SaveGGUF", dir, a.Tensors[i].Name)
			}
		}
		a.Close()
		b.Close()
		m.Close()
	}
}

// TestALiBiGGUF converts Baichuan-13B (ALiBi) to GGUF as llama.cpp's
// "baichuan" architecture with herd.alibi: the loaded file's logits equal
// the torch reference, and SaveGGUF writes the same tensors again.
func TestALiBiGGUF(t *testing.T) {
	dir := "../convert/testdata/baichuan13_bin"
	src, err := conv.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "b.gguf")
	err = ConvertGGUF(out, src, ConvertOptions{})
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.Config.ALiBi {
		t.Fatal("read back without ALiBi")
	}
	ref := refLogits(t, dir)
	var scale, worst float64
	for i, g := range forwardAll(t, m) {
		scale = math.Max(scale, math.Abs(ref[i]))
		worst = math.Max(worst, math.Abs(float64(g)-ref[i]))
	}
	if worst > 1e-5*scale {
		t.Errorf("GGUF logits differ from torch's by %.3g (largest %.3g)", worst, scale)
	}
	again := filepath.Join(t.TempDir(), "c.gguf")
	if err := SaveGGUF(again, m, nil, SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Error("SaveGGUF of the loaded model is not the converted file")
	}
	f, err := gguf.Open(again)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if arch, _ := f.GetString("general.architecture"); arch != "baichuan" {
		t.Errorf("architecture %q", arch)
	}
}
