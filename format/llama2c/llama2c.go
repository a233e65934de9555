// Package llama2c reads and writes the checkpoint and tokenizer files of
// karpathy's llama2.c.
//
// Three checkpoint layouts exist, all little-endian:
//
//   - version 0 (legacy, run.c): a 28-byte header of seven int32 (dim,
//     hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a
//     negative vocab_size means the classifier is not shared with the token
//     embedding), then float32 arrays: token embedding, attention norms, wq,
//     wk, wv, wo, ffn norms, w1, w2, w3 (each for all layers), the final
//     norm, the RoPE tables freq_cis_real and freq_cis_imag
//     ([seq_len][head_size/2] each), then the classifier if not shared;
//   - version 1 ("ak42" header, export.py): magic 0x616b3432, int32 version,
//     the seven int32 (vocab_size positive), a uint8 shared-classifier flag,
//     zero padding to 256 bytes; then float32 norms (attention, ffn, final),
//     token embedding, wq, wk, wv, wo, w1, w2, w3, classifier if not shared;
//   - version 2 (runq.c): the version 1 header plus an int32 group size
//     after the flag; norms in float32 as in version 1, then every matrix
//     (token embedding, then wq, wk, wv, wo, w1, w2, w3 layer by layer, then
//     the classifier if not shared) as its int8 values followed by one
//     float32 scale per group of group-size values: x = q·scale.
//
// Tensors come out with GGUF names and ggml dims (Dims[0] is the row
// length) so a model loader treats them like a GGUF file's: token_embd,
// blk.N.attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate
// (w1), ffn_down (w2), ffn_up (w3), output_norm and output (absent when the
// classifier is shared). Float32 data are zero-copy views of the file
// mapping; version 2 matrices become ggml Q8_0 (scale rounded to float16)
// when the group size is 32 and rows are whole blocks, else float32.
package llama2c

import (
	"encoding/binary"
	"fmt"
	"github.com/herd-llm/herd/internal/fileio"
	"math"
	"slices"
	"strings"

	"github.com/herd-llm/herd/tensor"
)

// Magic is the first uint32 of a version 1 or 2 checkpoint ("ak42").
const Magic uint32 = 0x616b3432

// headerSize is the padded header length of version 1 and 2 files.
const headerSize = 256

// legacyHeaderSize is the header length of version 0 files.
const legacyHeaderSize = 28

// Config is a checkpoint's header.
type Config struct {
	Dim              int  // model width
	HiddenDim        int  // feed-forward width
	NLayers          int  // transformer blocks
	NHeads           int  // query heads
	NKVHeads         int  // key/value heads (NHeads without grouped-query attention)
	VocabSize        int  // vocabulary size (positive)
	SeqLen           int  // maximum sequence length
	SharedClassifier bool // the output classifier is the token embedding
	Version          int  // file layout: 0 (legacy), 1 (float32) or 2 (Q8_0)
	GroupSize        int  // version 2 quantization group size; 0 otherwise
}

// HeadSize is Dim / NHeads.
func (c Config) HeadSize() int { return c.Dim / c.NHeads }

// KVDim is the width of the key and value projections.
func (c Config) KVDim() int { return c.Dim * c.NKVHeads / c.NHeads }

// check validates the header values.
func (c Config) check() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"dim", c.Dim}, {"hidden_dim", c.HiddenDim}, {"n_layers", c.NLayers}, {"n_heads", c.NHeads},
		{"n_kv_heads", c.NKVHeads}, {"vocab_size", c.VocabSize}, {"seq_len", c.SeqLen}} {
		if f.v <= 0 || f.v > math.MaxInt32 {
			return fmt.Errorf("%s is %d, want 1 to %d", f.name, f.v, math.MaxInt32)
		}
	}
	if c.Dim%c.NHeads != 0 {
		return fmt.Errorf("n_heads %d does not divide dim %d", c.NHeads, c.Dim)
	}
	if c.NKVHeads > c.NHeads || c.NHeads%c.NKVHeads != 0 {
		return fmt.Errorf("n_kv_heads %d does not divide n_heads %d", c.NKVHeads, c.NHeads)
	}
	if c.HeadSize()%2 != 0 {
		return fmt.Errorf("head size %d (dim/n_heads) is odd; RoPE rotates pairs", c.HeadSize())
	}
	switch c.Version {
	case 0, 1:
		if c.GroupSize != 0 {
			return fmt.Errorf("group size %d given for version %d", c.GroupSize, c.Version)
		}
	case 2:
		if c.GroupSize <= 0 || c.GroupSize > math.MaxInt32 {
			return fmt.Errorf("group size is %d, want 1 to %d", c.GroupSize, math.MaxInt32)
		}
	default:
		return fmt.Errorf("unsupported version %d (want 0, 1 or 2)", c.Version)
	}
	return nil
}

// Tensor is one weight in GGUF naming and ggml dim order.
type Tensor struct {
	Name  string
	DType tensor.DType
	Dims  []uint64 // Dims[0] is the row length
	Data  []byte
}

// family is one kind of weight: a global tensor or one per layer.
type family struct {
	name   string // GGUF name; per-layer names hold the layer as %d
	layers int    // 1, or NLayers for per-layer weights
	dims   []uint64
	quant  bool // a matrix: version 2 stores it quantized
}

// elems is the element count of one tensor of the family; it fits an
// int64 because every dim is below 2^31.
func (f family) elems() int64 {
	n := int64(1)
	for _, d := range f.dims {
		n *= int64(d)
	}
	return n
}

func (f family) tensorName(layer int) string {
	if !strings.Contains(f.name, "%d") {
		return f.name
	}
	return fmt.Sprintf(f.name, layer)
}

// families lists the weights of c in the order its file version stores them.
func (c Config) families() []family {
	d, h, v, kv, l := uint64(c.Dim), uint64(c.HiddenDim), uint64(c.VocabSize), uint64(c.KVDim()), c.NLayers
	tok := family{"token_embd.weight", 1, []uint64{d, v}, true}
	attnNorm := family{"blk.%d.attn_norm.weight", l, []uint64{d}, false}
	wq := family{"blk.%d.attn_q.weight", l, []uint64{d, d}, true}
	wk := family{"blk.%d.attn_k.weight", l, []uint64{d, kv}, true}
	wv := family{"blk.%d.attn_v.weight", l, []uint64{d, kv}, true}
	wo := family{"blk.%d.attn_output.weight", l, []uint64{d, d}, true}
	ffnNorm := family{"blk.%d.ffn_norm.weight", l, []uint64{d}, false}
	w1 := family{"blk.%d.ffn_gate.weight", l, []uint64{d, h}, true}
	w2 := family{"blk.%d.ffn_down.weight", l, []uint64{h, d}, true}
	w3 := family{"blk.%d.ffn_up.weight", l, []uint64{d, h}, true}
	outNorm := family{"output_norm.weight", 1, []uint64{d}, false}
	var fs []family
	if c.Version == 0 {
		fs = []family{tok, attnNorm, wq, wk, wv, wo, ffnNorm, w1, w2, w3, outNorm}
	} else {
		fs = []family{attnNorm, ffnNorm, outNorm, tok, wq, wk, wv, wo, w1, w2, w3}
	}
	if !c.SharedClassifier {
		fs = append(fs, family{"output.weight", 1, []uint64{d, v}, true})
	}
	return fs
}

// freqCisBytes is the size of the legacy RoPE tables (real and imaginary).
func (c Config) freqCisBytes() int64 {
	return 2 * int64(c.SeqLen) * int64(c.HeadSize()/2) * 4
}

// tensorBytes is the stored size of one tensor of family f.
func (c Config) tensorBytes(f family) int64 {
	n := f.elems()
	if c.Version == 2 && f.quant {
		return satAdd(n, satMul(n/int64(c.GroupSize), 4))
	}
	return satMul(n, 4)
}

// fileSize is the exact file size c implies, or -1 if it overflows.
func (c Config) fileSize() int64 {
	size := int64(legacyHeaderSize)
	if c.Version != 0 {
		size = headerSize
	}
	for _, f := range c.families() {
		size = satAdd(size, satMul(c.tensorBytes(f), int64(f.layers)))
	}
	if c.Version == 0 {
		size = satAdd(size, c.freqCisBytes())
	}
	return size
}

// satMul and satAdd compute on non-negative sizes, returning -1 once a
// result passes 2^62 (or an operand is already -1).
func satMul(a, b int64) int64 {
	if a < 0 || b < 0 || (b != 0 && a > (1<<62)/b) {
		return -1
	}
	return a * b
}

func satAdd(a, b int64) int64 {
	if a < 0 || b < 0 || a+b > 1<<62 {
		return -1
	}
	return a + b
}

// order returns the canonical tensor order: token embedding, each layer's
// tensors, the final norm and the classifier.
func (c Config) order() []string {
	names := []string{"token_embd.weight"}
	for l := 0; l < c.NLayers; l++ {
		for _, s := range []string{"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"} {
			names = append(names, fmt.Sprintf("blk.%d.%s.weight", l, s))
		}
	}
	names = append(names, "output_norm.weight")
	if !c.SharedClassifier {
		names = append(names, "output.weight")
	}
	return names
}

// Checkpoint is a llama2.c model: its header and its tensors. Tensor data
// may alias the file mapping, valid until Close.
type Checkpoint struct {
	Path    string
	Config  Config
	Tensors []Tensor // in Config.order(): token_embd, blk.0.*, …, output_norm, output
	// FreqCis holds a version 0 file's RoPE tables as stored (freq_cis_real
	// then freq_cis_imag, float32 [seq_len][head_size/2] each). Writing a
	// version 0 file uses it when its size fits, else computes the tables
	// as llama2.c's export does.
	FreqCis []byte

	unmap func() error
}

// Tensor returns the tensor named name.
func (c *Checkpoint) Tensor(name string) (*Tensor, bool) {
	for i := range c.Tensors {
		if c.Tensors[i].Name == name {
			return &c.Tensors[i], true
		}
	}
	return nil, false
}

// Close releases the file mapping; tensor data must not be used afterwards.
func (c *Checkpoint) Close() error {
	for i := range c.Tensors {
		c.Tensors[i].Data = nil
	}
	c.FreqCis = nil
	if c.unmap == nil {
		return nil
	}
	err := c.unmap()
	c.unmap = nil
	if err != nil {
		return fmt.Errorf("llama2c %s: close: %w", c.Path, err)
	}
	return nil
}

// Open maps the checkpoint at path read-only and parses it.
func Open(path string) (*Checkpoint, error) {
	data, unmap, err := fileio.Map(path)
	if err != nil {
		return nil, fmt.Errorf("llama2c %s: %w", path, err)
	}
	c, err := Parse(path, data)
	if err != nil {
		_ = unmap()
		return nil, err
	}
	c.unmap = unmap
	return c, nil
}

// Parse parses a checkpoint held in data; name labels errors and Path.
func Parse(name string, data []byte) (*Checkpoint, error) {
	errorf := func(format string, args ...any) error {
		return fmt.Errorf("llama2c %s: "+format, append([]any{name}, args...)...)
	}
	cfg, err := parseHeader(data)
	if err != nil {
		return nil, errorf("%v", err)
	}
	if err := cfg.check(); err != nil {
		return nil, errorf("header: %v", err)
	}
	if cfg.Version == 2 {
		for _, f := range cfg.families() {
			if f.quant && f.elems()%int64(cfg.GroupSize) != 0 {
				return nil, errorf("group size %d does not divide %s (%d values)", cfg.GroupSize, f.tensorName(0), f.elems())
			}
		}
	}
	want := cfg.fileSize()
	if want < 0 {
		return nil, errorf("header %+v: tensor sizes overflow", cfg)
	}
	if int64(len(data)) != want {
		return nil, errorf("file is %d bytes, header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, n_kv_heads %d, vocab_size %d, seq_len %d, shared classifier %v) implies %d",
			len(data), cfg.Dim, cfg.HiddenDim, cfg.NLayers, cfg.NHeads, cfg.NKVHeads, cfg.VocabSize, cfg.SeqLen, cfg.SharedClassifier, want)
	}
	c := &Checkpoint{Path: name, Config: cfg}
	byName := make(map[string]Tensor, len(cfg.order()))
	off := int64(legacyHeaderSize)
	if cfg.Version != 0 {
		off = headerSize
	}
	for _, f := range cfg.families() {
		if f.name == "output.weight" && cfg.Version == 0 {
			n := cfg.freqCisBytes()
			c.FreqCis = data[off : off+n : off+n]
			off += n
		}
		size := cfg.tensorBytes(f)
		for l := 0; l < f.layers; l++ {
			b := data[off : off+size : off+size]
			t := Tensor{Name: f.tensorName(l), DType: tensor.F32, Dims: slices.Clone(f.dims), Data: b}
			if cfg.Version == 2 && f.quant {
				t = fromGroups(t.Name, t.Dims, b[:f.elems()], b[f.elems():], cfg.GroupSize)
			}
			byName[t.Name] = t
			off += size
		}
	}
	if cfg.Version == 0 && c.FreqCis == nil {
		n := cfg.freqCisBytes()
		c.FreqCis = data[off : off+n : off+n]
	}
	for _, n := range cfg.order() {
		c.Tensors = append(c.Tensors, byName[n])
	}
	return c, nil
}

// parseHeader reads the header fields; check validates them.
func parseHeader(data []byte) (Config, error) {
	var cfg Config
	i32 := func(off int) int { return int(int32(binary.LittleEndian.Uint32(data[off:]))) }
	params := func(at int) {
		cfg.Dim, cfg.HiddenDim, cfg.NLayers = i32(at), i32(at+4), i32(at+8)
		cfg.NHeads, cfg.NKVHeads, cfg.VocabSize, cfg.SeqLen = i32(at+12), i32(at+16), i32(at+20), i32(at+24)
	}
	if len(data) >= 4 && binary.LittleEndian.Uint32(data) == Magic {
		if len(data) < headerSize {
			return cfg, fmt.Errorf("truncated header: %d bytes, want %d", len(data), headerSize)
		}
		cfg.Version = i32(4)
		if cfg.Version != 1 && cfg.Version != 2 {
			return cfg, fmt.Errorf("unsupported ak42 checkpoint version %d (want 1 or 2)", cfg.Version)
		}
		params(8)
		switch data[36] {
		case 0, 1:
			cfg.SharedClassifier = data[36] == 1
		default:
			return cfg, fmt.Errorf("shared-classifier flag is %d, want 0 or 1", data[36])
		}
		pad := 37
		if cfg.Version == 2 {
			cfg.GroupSize = i32(37)
			pad = 41
		}
		for j := pad; j < headerSize; j++ {
			if data[j] != 0 {
				return cfg, fmt.Errorf("header padding byte %d is %d, want 0", j, data[j])
			}
		}
		return cfg, nil
	}
	if len(data) < legacyHeaderSize {
		return cfg, fmt.Errorf("truncated header: %d bytes, want %d", len(data), legacyHeaderSize)
	}
	params(0)
	cfg.SharedClassifier = cfg.VocabSize > 0
	if cfg.VocabSize < 0 {
		cfg.VocabSize = -cfg.VocabSize
	}
	return cfg, nil
}

// fromGroups converts a version 2 matrix (int8 values q, one float32 scale
// per gs values in s) to ggml Q8_0 when the groups are ggml blocks (gs 32,
// whole blocks per row, scales within float16 range), else to float32.
func fromGroups(name string, dims []uint64, q, s []byte, gs int) Tensor {
	nb := len(q) / gs
	scale := func(g int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(s[4*g:])) }
	if gs == tensor.QK && dims[0]%tensor.QK == 0 {
		fits := true
		for g := 0; g < nb && fits; g++ {
			a := math.Abs(float64(scale(g)))
			fits = a <= 65504 // also false for NaN
		}
		if fits {
			out := make([]byte, nb*34)
			for g := 0; g < nb; g++ {
				binary.LittleEndian.PutUint16(out[g*34:], tensor.F32ToF16(scale(g)))
				copy(out[g*34+2:g*34+34], q[g*gs:(g+1)*gs])
			}
			return Tensor{Name: name, DType: tensor.Q8_0, Dims: dims, Data: out}
		}
	}
	out := make([]byte, 4*len(q))
	for g := 0; g < nb; g++ {
		d := scale(g)
		for i := g * gs; i < (g+1)*gs; i++ {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(d*float32(int8(q[i]))))
		}
	}
	return Tensor{Name: name, DType: tensor.F32, Dims: dims, Data: out}
}
