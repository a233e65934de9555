// Package quant quantizes whole models: it reads a GGUF file, picks a block
// format for every weight following llama.cpp's published mixes (which
// tensors get more bits in the _M mixes, how token_embd and output are
// treated, the fallbacks for rows that are not whole blocks), quantizes
// each with ggml's reference quantizers from package tensor, and writes a
// GGUF file with all metadata and the tokenizer kept and general.file_type
// set as llama.cpp sets it.
package quant

import (
	"fmt"
	"strings"

	"github.com/herd-llm/herd/tensor"
)

// FileType is llama.cpp's llama_ftype: the mix a model is quantized to, as
// stored in a GGUF file's general.file_type.
type FileType uint32

// The file types herd writes, numbered as llama.cpp numbers them.
const (
	AllF32      FileType = 0
	MostlyF16   FileType = 1
	MostlyQ4_0  FileType = 2
	MostlyQ4_1  FileType = 3
	MostlyQ8_0  FileType = 7
	MostlyQ5_0  FileType = 8
	MostlyQ5_1  FileType = 9
	MostlyQ2_K  FileType = 10
	MostlyQ3KS  FileType = 11
	MostlyQ3KM  FileType = 12
	MostlyQ3KL  FileType = 13
	MostlyQ4KS  FileType = 14
	MostlyQ4KM  FileType = 15
	MostlyQ5KS  FileType = 16
	MostlyQ5KM  FileType = 17
	MostlyQ6_K  FileType = 18
	MostlyIQ4NL FileType = 25
	MostlyBF16  FileType = 32
)

// fileTypes maps each file type to its name (as llama-quantize spells it)
// and the block format most of its weights get.
var fileTypes = []struct {
	ft   FileType
	name string
	base tensor.DType
}{
	{AllF32, "F32", tensor.F32}, {MostlyF16, "F16", tensor.F16}, {MostlyBF16, "BF16", tensor.BF16},
	{MostlyQ4_0, "Q4_0", tensor.Q4_0}, {MostlyQ4_1, "Q4_1", tensor.Q4_1},
	{MostlyQ5_0, "Q5_0", tensor.Q5_0}, {MostlyQ5_1, "Q5_1", tensor.Q5_1}, {MostlyQ8_0, "Q8_0", tensor.Q8_0},
	{MostlyQ2_K, "Q2_K", tensor.Q2_K},
	{MostlyQ3KS, "Q3_K_S", tensor.Q3_K}, {MostlyQ3KM, "Q3_K_M", tensor.Q3_K}, {MostlyQ3KL, "Q3_K_L", tensor.Q3_K},
	{MostlyQ4KS, "Q4_K_S", tensor.Q4_K}, {MostlyQ4KM, "Q4_K_M", tensor.Q4_K},
	{MostlyQ5KS, "Q5_K_S", tensor.Q5_K}, {MostlyQ5KM, "Q5_K_M", tensor.Q5_K},
	{MostlyQ6_K, "Q6_K", tensor.Q6_K}, {MostlyIQ4NL, "IQ4_NL", tensor.IQ4_NL},
}

// ParseFileType maps a name such as "q4_k_m" or "Q8_0" (any case) to its
// file type. "Q4_K" and "Q5_K" mean the _M mixes and "Q3_K" the _M one, as
// in llama-quantize.
func ParseFileType(s string) (FileType, error) {
	u := strings.ToUpper(s)
	switch u {
	case "Q3_K":
		u = "Q3_K_M"
	case "Q4_K":
		u = "Q4_K_M"
	case "Q5_K":
		u = "Q5_K_M"
	}
	for _, f := range fileTypes {
		if f.name == u {
			return f.ft, nil
		}
	}
	return 0, fmt.Errorf("unknown quantization type %q (want one of %s)", s, strings.Join(FileTypeNames(), ", "))
}

// FileTypeNames lists the names ParseFileType accepts.
func FileTypeNames() []string {
	names := make([]string, len(fileTypes))
	for i, f := range fileTypes {
		names[i] = f.name
	}
	return names
}

// String returns the name of the file type, or "ftype(N)".
func (f FileType) String() string {
	for _, t := range fileTypes {
		if t.ft == f {
			return t.name
		}
	}
	return fmt.Sprintf("ftype(%d)", uint32(f))
}

// Base returns the block format most weights of the mix get (llama.cpp's
// default_type), and whether herd writes this file type.
func (f FileType) Base() (tensor.DType, bool) {
	for _, t := range fileTypes {
		if t.ft == f {
			return t.base, true
		}
	}
	return 0, false
}
