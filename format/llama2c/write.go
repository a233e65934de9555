package llama2c

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"github.com/herd-llm/herd/internal/fileio"
	"io"
	"math"
	"slices"

	"github.com/herd-llm/herd/tensor"
)

// WriteTo writes the checkpoint in the layout of c.Config.Version (0, 1 or
// 2). c.Tensors must hold exactly the tensors the config implies, with
// their GGUF names and dims, in any order and any dtype tensor.Dequantize
// reads; they are written as float32, or for version 2 quantized as
// llama2.c's export does (per group: scale = max|x|/127, q = round(x/scale)
// half to even). A version 0 file takes its RoPE tables from c.FreqCis when
// its size fits and computes them otherwise.
func (c *Checkpoint) WriteTo(w io.Writer) (int64, error) {
	cfg := c.Config
	if err := cfg.check(); err != nil {
		return 0, fmt.Errorf("llama2c: write: %w", err)
	}
	want := map[string][]uint64{}
	for _, f := range cfg.families() {
		if cfg.Version == 2 && f.quant && f.elems()%int64(cfg.GroupSize) != 0 {
			return 0, fmt.Errorf("llama2c: write: group size %d does not divide %s (%d values)", cfg.GroupSize, f.tensorName(0), f.elems())
		}
		for l := 0; l < f.layers; l++ {
			want[f.tensorName(l)] = f.dims
		}
	}
	byName := make(map[string]*Tensor, len(c.Tensors))
	for i := range c.Tensors {
		t := &c.Tensors[i]
		dims, ok := want[t.Name]
		switch {
		case !ok:
			return 0, fmt.Errorf("llama2c: write: tensor %q has no place in a llama2.c checkpoint of this config (shared classifier %v)", t.Name, cfg.SharedClassifier)
		case byName[t.Name] != nil:
			return 0, fmt.Errorf("llama2c: write: duplicate tensor %q", t.Name)
		case !slices.Equal(t.Dims, dims):
			return 0, fmt.Errorf("llama2c: write: tensor %q has dims %v, want %v", t.Name, t.Dims, dims)
		}
		size, err := t.DType.Bytes(int64(numElems(dims)), int(dims[0]))
		if err != nil {
			return 0, fmt.Errorf("llama2c: write: tensor %q: %w", t.Name, err)
		}
		if int64(len(t.Data)) != size {
			return 0, fmt.Errorf("llama2c: write: tensor %q: %d bytes of %s data, want %d", t.Name, len(t.Data), t.DType, size)
		}
		byName[t.Name] = t
	}
	for name := range want {
		if byName[name] == nil {
			return 0, fmt.Errorf("llama2c: write: missing tensor %q", name)
		}
	}

	bw := bufio.NewWriterSize(w, 1<<20)
	cw := &countWriter{w: bw}
	cw.write(header(cfg))
	for _, f := range cfg.families() {
		if f.name == "output.weight" && cfg.Version == 0 {
			cw.write(c.freqCis())
		}
		for l := 0; l < f.layers; l++ {
			t := byName[f.tensorName(l)]
			if t.DType == tensor.F32 && !(cfg.Version == 2 && f.quant) {
				cw.write(t.Data)
				continue
			}
			x := make([]float32, f.elems())
			if err := tensor.Dequantize(t.DType, x, t.Data); err != nil {
				return cw.n, fmt.Errorf("llama2c: write: tensor %q: %w", t.Name, err)
			}
			if cfg.Version == 2 && f.quant {
				cw.write(toGroups(x, cfg.GroupSize))
			} else {
				cw.write(f32Bytes(x))
			}
		}
	}
	if cfg.Version == 0 && cfg.SharedClassifier {
		cw.write(c.freqCis())
	}
	if cw.err == nil {
		cw.err = bw.Flush()
	}
	if cw.err != nil {
		return cw.n, fmt.Errorf("llama2c: write: %w", cw.err)
	}
	return cw.n, nil
}

// WriteFile writes the checkpoint to path atomically: into a temporary file
// in the same directory, synced, then renamed over path.
func (c *Checkpoint) WriteFile(path string) error {
	if err := fileio.WriteAtomic(path, func(w io.Writer) error {
		_, err := c.WriteTo(w)
		return err
	}); err != nil {
		return fmt.Errorf("llama2c %s: %w", path, err)
	}
	return nil
}

func numElems(dims []uint64) uint64 {
	n := uint64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) write(p []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
}

// header encodes the file header of cfg's version.
func header(cfg Config) []byte {
	params := []int{cfg.Dim, cfg.HiddenDim, cfg.NLayers, cfg.NHeads, cfg.NKVHeads, cfg.VocabSize, cfg.SeqLen}
	var b []byte
	if cfg.Version == 0 {
		if !cfg.SharedClassifier {
			params[5] = -params[5]
		}
	} else {
		b = binary.LittleEndian.AppendUint32(b, Magic)
		b = binary.LittleEndian.AppendUint32(b, uint32(cfg.Version))
	}
	for _, p := range params {
		b = binary.LittleEndian.AppendUint32(b, uint32(int32(p)))
	}
	if cfg.Version == 0 {
		return b
	}
	flag := byte(0)
	if cfg.SharedClassifier {
		flag = 1
	}
	b = append(b, flag)
	if cfg.Version == 2 {
		b = binary.LittleEndian.AppendUint32(b, uint32(cfg.GroupSize))
	}
	return append(b, make([]byte, headerSize-len(b))...)
}

// freqCis returns the legacy RoPE tables: the stored ones when they fit the
// config, else freshly computed.
func (c *Checkpoint) freqCis() []byte {
	if int64(len(c.FreqCis)) == c.Config.freqCisBytes() {
		return c.FreqCis
	}
	return computeFreqCis(c.Config)
}

// computeFreqCis computes the RoPE tables as llama2.c's model.py does in
// float32: freq_i = 1/10000^(2i/head_size), angle = t·freq_i, then
// cos (freq_cis_real) and sin (freq_cis_imag), for t < seq_len.
func computeFreqCis(cfg Config) []byte {
	hs := cfg.HeadSize()
	half := hs / 2
	freqs := make([]float32, half)
	for i := range freqs {
		e := float32(2*i) / float32(hs)
		freqs[i] = 1 / float32(math.Pow(10000, float64(e)))
	}
	n := cfg.SeqLen * half
	out := make([]byte, 8*n)
	for t := 0; t < cfg.SeqLen; t++ {
		for i, f := range freqs {
			a := float64(float32(t) * f)
			binary.LittleEndian.PutUint32(out[4*(t*half+i):], math.Float32bits(float32(math.Cos(a))))
			binary.LittleEndian.PutUint32(out[4*(n+t*half+i):], math.Float32bits(float32(math.Sin(a))))
		}
	}
	return out
}

func f32Bytes(x []float32) []byte {
	b := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// toGroups quantizes x in groups of gs as llama2.c's export.py
// (quantize_q80) does, returning the int8 values followed by the float32
// scales.
func toGroups(x []float32, gs int) []byte {
	nb := len(x) / gs
	out := make([]byte, len(x)+4*nb)
	for g := 0; g < nb; g++ {
		grp := x[g*gs : (g+1)*gs]
		var amax float32
		for _, v := range grp {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		scale := amax / 127
		for i, v := range grp {
			var q float64
			if scale != 0 {
				q = max(-127, min(127, math.RoundToEven(float64(v/scale))))
			}
			out[g*gs+i] = byte(int8(q))
		}
		binary.LittleEndian.PutUint32(out[len(x)+4*g:], math.Float32bits(scale))
	}
	return out
}
