// Package convert brings models in from the checkpoint layouts of other
// tools and takes them out again:
//
//   - Hugging Face model directories (config.json; model.safetensors,
//     sharded safetensors with model.safetensors.index.json, or
//     pytorch_model*.bin; tokenizer.model or tokenizer.json with
//     tokenizer_config.json; generation_config.json) of the architectures
//     in Architectures;
//   - Meta's original layout (params.json, consolidated.00.pth …
//     consolidated.NN.pth, tokenizer.model), model-parallel shards joined
//     along each tensor's split axis;
//   - out: WriteHF writes a model as a Hugging Face LLaMA directory.
//
// A Source lists the model's tensors in herd's (GGUF) naming, each read
// and transformed only when asked for (q/k rows permuted from Hugging
// Face's rotate-half order to the interleaved order GGUF uses, Baichuan's
// fused W_pack split, shards concatenated), so a converter holds one
// tensor at a time. .bin and .pth files are read by format/pytorch's
// restricted unpickler: loading never executes code from the file.
package convert

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// Tensor is one tensor of a Source, in GGUF naming and ggml dimension
// order (Dims[0] is the row length), of dtype F32, F16 or BF16.
type Tensor struct {
	Name  string
	DType tensor.DType
	Dims  []uint64
	// Read returns the tensor's bytes (a new slice each call).
	Read func() ([]byte, error)
}

// Bytes is the size of the tensor's data.
func (t *Tensor) Bytes() int64 {
	n := int64(t.DType.BlockBytes())
	for _, d := range t.Dims {
		n *= int64(d)
	}
	return n
}

// Source is a checkpoint of another tool, opened for conversion.
type Source struct {
	Path   string
	Layout string // "hf" or "meta"
	Arch   string // the architecture as the checkpoint names it
	Config llama.Config
	// Tensors in the order of a GGUF file: embedding, blocks, output norm,
	// output.
	Tensors []Tensor
	// Tokenizer is the directory's tokenizer, EOS set from
	// generation_config.json when it names one.
	Tokenizer tokenizer.Tokenizer
	// ChatTemplate is tokenizer_config.json's chat_template, if any.
	ChatTemplate string
	w            *weights
}

// Close releases the checkpoint's files.
func (s *Source) Close() error {
	if s.w != nil {
		s.w.close()
		s.w = nil
	}
	return nil
}

// Detect reports whether path is a directory this package reads, and as
// what ("hf" or "meta").
func Detect(path string) (string, bool) {
	st, err := os.Stat(path)
	if err != nil || !st.IsDir() {
		return "", false
	}
	if fileExists(filepath.Join(path, "config.json")) {
		return "hf", true
	}
	if fileExists(filepath.Join(path, "params.json")) {
		return "meta", true
	}
	return "", false
}

// Open opens a Hugging Face model directory or a Meta checkpoint directory.
func Open(dir string) (*Source, error) {
	kind, ok := Detect(dir)
	if !ok {
		return nil, fmt.Errorf("%s: not a Hugging Face model directory (config.json) or a Meta checkpoint (params.json)", dir)
	}
	if kind == "meta" {
		return openMeta(dir)
	}
	return openHF(dir)
}

// Model reads every tensor into memory and builds the model.
func (s *Source) Model() (*llama.Model, error) {
	ts := make([]llama.Tensor, len(s.Tensors))
	for i, t := range s.Tensors {
		b, err := t.Read()
		if err != nil {
			return nil, err
		}
		ts[i] = llama.Tensor{Name: t.Name, DType: t.DType, Dims: t.Dims, Data: b}
	}
	return llama.FromTensors(s.Path, s.Config, ts)
}

// TotalBytes is the size of all the source's tensors as converted.
func (s *Source) TotalBytes() int64 {
	var n int64
	for i := range s.Tensors {
		n += s.Tensors[i].Bytes()
	}
	return n
}

// herdDType is the dtype a source tensor keeps in herd: F32, F16 and BF16
// as they are, F64 narrowed to F32.
func herdDType(t *srcTensor) (tensor.DType, error) {
	switch t.dtype {
	case "F32", "F64":
		return tensor.F32, nil
	case "F16":
		return tensor.F16, nil
	case "BF16":
		return tensor.BF16, nil
	}
	return 0, fmt.Errorf("%s: tensor %s has dtype %s; herd converts F32, F64, F16 and BF16 weights", t.file, t.name, t.dtype)
}

// readAs reads a source tensor in the dtype herdDType gives it.
func readAs(t *srcTensor) ([]byte, error) {
	b, err := t.read()
	if err != nil {
		return nil, err
	}
	if t.dtype != "F64" {
		return b, nil
	}
	out := make([]byte, len(b)/2)
	for i := 0; i < len(b)/8; i++ {
		v := math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(float32(v)))
	}
	return out, nil
}

// permuteRotateHalf reorders the rows of a q or k projection (heads of hd
// rows each, rowBytes per row) from Hugging Face's rotate-half order, where
// row i of a head pairs with row i+hd/2, to the interleaved order, where
// row 2i pairs with 2i+1: interleaved row 2i is row i and 2i+1 is row
// i+hd/2 (the inverse of the permutation Hugging Face's conversion script
// applied to Meta's weights). inverse undoes it.
func permuteRotateHalf(b []byte, heads, hd, rowBytes int, inverse bool) []byte {
	out := make([]byte, len(b))
	half := hd / 2
	for h := range heads {
		for i := range half {
			for j, src := range [2]int{i, i + half} {
				inter := h*hd + 2*i + j
				rot := h*hd + src
				from, to := rot, inter
				if inverse {
					from, to = inter, rot
				}
				copy(out[to*rowBytes:(to+1)*rowBytes], b[from*rowBytes:(from+1)*rowBytes])
			}
		}
	}
	return out
}

// closeOnError closes c when *err is set (for constructors).
func closeOnError(c io.Closer, err *error) {
	if *err != nil {
		c.Close()
	}
}
