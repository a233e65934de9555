package gptq

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/safetensors"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

func matrixOf(l *nn.Linear) []float32 {
	w := make([]float32, l.Out*l.In)
	for r := range l.Out {
		l.Row(w[r*l.In:(r+1)*l.In], r)
	}
	return w
}

// TestAutoGPTQRoundTrip quantizes a small random model onto several
// uniform grids, writes the AutoGPTQ layout, reads it back (identical
// dequantized weights, q/k rows in Hugging Face's order in the file) and
// converts it into a GGUF herd runs.
func TestAutoGPTQRoundTrip(t *testing.T) {
	c := llama.Config{Dim: 128, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 256, VocabSize: 40, ContextLen: 32,
		RopeTheta: 10000, NormEps: 1e-5}
	rng := rand.New(rand.NewPCG(9, 9))
	win := make([][]int, 6)
	for i := range win {
		win[i] = make([]int, 32)
		for j := range win[i] {
			win[i][j] = rng.IntN(c.VocabSize)
		}
	}
	for _, u := range []Uniform{{4, 32, true}, {3, 64, false}, {2, 128, false}, {8, -1, true}} {
		m, err := llama.Random(c, tensor.F32, 3)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "gptq")
		if _, err := QuantizeModel(nil, m, win, dir, ModelOptions{AutoGPTQ: &u, Damp: 0.01, ActOrder: true}); err != nil {
			t.Fatalf("%+v: %v", u, err)
		}
		a, err := ReadAutoGPTQ(dir)
		if err != nil {
			t.Fatalf("%+v: %v", u, err)
		}
		if a.Config != c || a.QConfig.Bits != u.Bits || a.QConfig.Sym != u.Sym {
			t.Errorf("%+v: read config %+v %+v", u, a.Config, a.QConfig)
		}
		for i, l := range m.Layers {
			for _, w := range []*nn.Linear{l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down} {
				want, got := matrixOf(w), a.Linear[w.Name].Weights()
				for k := range want {
					if want[k] != got[k] {
						t.Fatalf("%+v: %s[%d]: read %g, GPTQ wrote %g", u, w.Name, k, got[k], want[k])
					}
				}
			}
			// the file's q_proj is in rotate-half order: HF row h·hd + p·hd/2 + j is GGUF row h·hd + 2j + p
			hf, err := ReadQLinear(a.File, "model.layers."+itoa(i)+".self_attn.q_proj", c.Dim, c.Dim, u.Bits, a.QConfig.CheckpointFormat == "gptq_v2")
			if err != nil {
				t.Fatal(err)
			}
			hw, gw, hd := hf.Weights(), matrixOf(l.Wq), c.HeadDim()
			for h := range c.NHeads {
				for j := range hd / 2 {
					for p := range 2 {
						fr, gr := h*hd+p*hd/2+j, h*hd+2*j+p
						if hw[fr*c.Dim] != gw[gr*c.Dim] || hw[fr*c.Dim+5] != gw[gr*c.Dim+5] {
							t.Fatalf("%+v: HF q_proj row %d is not GGUF row %d", u, fr, gr)
						}
					}
				}
			}
		}
		gm, err := a.Model()
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "out.gguf")
		if err := checkpoint.SaveGGUF(out, gm, nil, checkpoint.SaveOptions{}); err != nil {
			t.Fatal(err)
		}
		a.Close()
		lm, err := llama.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		wantType := tensor.F16
		if u == (Uniform{4, 32, true}) {
			wantType = tensor.Q4_0
		}
		if lm.Layers[1].Wq.DType != wantType {
			t.Errorf("%+v: GGUF type %s, want %s", u, lm.Layers[1].Wq.DType, wantType)
		}
		if wantType == tensor.Q4_0 { // exact: the same weights
			want, got := matrixOf(m.Layers[1].Down), matrixOf(lm.Layers[1].Down)
			for k := range want {
				if want[k] != got[k] {
					t.Fatalf("Q4_0 conversion: ffn_down[%d] %g, want %g", k, got[k], want[k])
				}
			}
		}
		if _, err := lm.Forward(&llama.State{}, lm.NewKVCache(4), []int{1, 2, 3}, 0, false); err != nil {
			t.Fatal(err)
		}
		lm.Close()
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestPackStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, bits := range []int{2, 3, 4, 8} {
		vals := make([]uint32, 96)
		for i := range vals {
			vals[i] = uint32(rng.IntN(1 << bits))
		}
		words := packStream(len(vals), bits, func(k int) uint32 { return vals[k] })
		for k, v := range vals {
			if got := unpackStream(func(w int) uint32 { return words[w] }, k, bits); got != int32(v) {
				t.Fatalf("%d bits: value %d: %d, want %d", bits, k, got, v)
			}
		}
		if bits == 4 && words[0] != vals[0]|vals[1]<<4|vals[2]<<8|vals[3]<<12|vals[4]<<16|vals[5]<<20|vals[6]<<24|vals[7]<<28 {
			t.Errorf("4-bit packing is not AutoGPTQ's (value k at shift 4k)")
		}
	}
}

// FuzzReadQLinear feeds arbitrary safetensors bytes to the AutoGPTQ
// layer reader: it must fail cleanly or return a consistent layer.
func FuzzReadQLinear(f *testing.F) {
	q := &QLinear{Out: 8, In: 32, Bits: 4, GIdx: make([]int32, 32), Q: make([]int32, 8*32),
		Scales: make([]float32, 8), Zeros: make([]int32, 8)}
	for i := range q.Zeros {
		q.Zeros[i], q.Scales[i] = 8, 0.5
	}
	ts, err := q.Tensors("l", false)
	if err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, nil, ts); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := safetensors.Parse("fuzz", b)
		if err != nil {
			return
		}
		r, err := ReadQLinear(sf, "l", 8, 32, 4, false)
		if err != nil {
			return
		}
		if len(r.Weights()) != 8*32 {
			t.Fatalf("%d weights", len(r.Weights()))
		}
	})
}
