package gptq

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/quant"
	"github.com/herd-llm/herd/tensor"
)

const story = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park.
One day, she saw a big red ball under a tree. She ran to get it, but a dog took it first. Lily was sad.
Then the dog came back and gave her the ball. They played together all day and became good friends. `

// f16Model writes the embedded stories260K model as an F16 GGUF and
// returns its path and calibration windows.
func f16Model(t *testing.T) (string, [][]int) {
	t.Helper()
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "f16.gguf")
	if err := checkpoint.SaveGGUF(path, m, tok, checkpoint.SaveOptions{DType: tensor.F16, Convert: true}); err != nil {
		t.Fatal(err)
	}
	toks := tok.Encode(strings.Repeat(story, 6), true, false)
	win, err := Windows(toks, 6, 64, 1)
	if err != nil {
		t.Fatal(err)
	}
	return path, win
}

func runModel(t *testing.T, path string, win [][]int, opt ModelOptions) (*ModelResult, *gguf.File) {
	t.Helper()
	in, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	m, err := llama.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out := filepath.Join(t.TempDir(), "out.gguf")
	res, err := QuantizeModel(in, m, win, out, opt)
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return res, f
}

// TestQuantizeModel runs GPTQ over the embedded model sequentially and from
// the float model: layer 0 sees the same inputs either way (same bytes),
// later layers do not; the file loads and runs.
func TestQuantizeModel(t *testing.T) {
	path, win := f16Model(t)
	opt := ModelOptions{Type: quant.MostlyQ4_0, Damp: 0.01, ActOrder: true}
	seq, fs := runModel(t, path, win, opt)
	opt.FromFloat = true
	_, ff := runModel(t, path, win, opt)
	gptqd := 0
	for _, mr := range seq.Matrices {
		if mr.GPTQ {
			gptqd++
			if mr.Type != tensor.Q4_0 {
				t.Errorf("%s: %s", mr.Name, mr.Type)
			}
		}
	}
	if gptqd != 6*len(seq.Layers) { // ffn_down's rows of 172 are not whole Q4_0 blocks
		t.Errorf("%d matrices by GPTQ, want %d", gptqd, 6*len(seq.Layers))
	}
	a, _ := fs.Tensor("blk.0.attn_q.weight")
	b, _ := ff.Tensor("blk.0.attn_q.weight")
	if a.DType != tensor.Q4_0 || !bytes.Equal(a.Data, b.Data) {
		t.Errorf("layer 0: %s, sequential and from-float differ", a.DType)
	}
	a, _ = fs.Tensor("blk.3.attn_q.weight")
	b, _ = ff.Tensor("blk.3.attn_q.weight")
	if bytes.Equal(a.Data, b.Data) {
		t.Errorf("layer 3: sequential and from-float are the same: the quantized layers' outputs were not used")
	}
	opt.FromFloat, opt.TrueSequential = false, true
	_, ft := runModel(t, path, win, opt)
	a, _ = fs.Tensor("blk.0.attn_v.weight")
	b, _ = ft.Tensor("blk.0.attn_v.weight")
	if !bytes.Equal(a.Data, b.Data) {
		t.Errorf("true-sequential: layer 0's q/k/v see the same inputs, yet differ")
	}
	a, _ = fs.Tensor("blk.0.attn_output.weight")
	b, _ = ft.Tensor("blk.0.attn_output.weight")
	if bytes.Equal(a.Data, b.Data) {
		t.Errorf("true-sequential: attn_output's inputs did not come through the quantized q/k/v")
	}
	m, err := llama.Open(fs.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Forward(&llama.State{}, m.NewKVCache(8), win[0][:8], 0, false); err != nil {
		t.Fatal(err)
	}
}

func TestCalibrationErrors(t *testing.T) {
	if _, err := Windows(make([]int, 100), 4, 128, 0); err == nil || !strings.Contains(err.Error(), "shorter than one window") {
		t.Errorf("short text: %v", err)
	}
	if _, err := FileTypeFor(3, 64, false); err == nil || !strings.Contains(err.Error(), "autogptq") {
		t.Errorf("3-bit g64: %v", err)
	}
	if err := CheckFileType(quant.MostlyQ4_0, 4, 64, true, true); err == nil || !strings.Contains(err.Error(), "groups of 32") {
		t.Errorf("Q4_0 with group 64: %v", err)
	}
	if err := CheckFileType(quant.MostlyQ4KM, 4, 32, true, true); err == nil || !strings.Contains(err.Error(), "drop --bits") {
		t.Errorf("Q4_K_M with --bits: %v", err)
	}
	if ft, err := FileTypeFor(4, 32, false); err != nil || ft != quant.MostlyQ4_1 {
		t.Errorf("4-bit asym g32: %v %v", ft, err)
	}
}
