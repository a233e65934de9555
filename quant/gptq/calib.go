package gptq

import (
	"fmt"

	"github.com/herd-llm/herd/data"
	"github.com/herd-llm/herd/quant"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// CalibrationTokens reads every document of path (any file `herd data
// prepare` reads: text, JSONL, .gz/.zst, a directory or a glob), encodes
// each with a leading BOS when the vocabulary has one, and returns them
// one after another.
func CalibrationTokens(path string, tok tokenizer.Tokenizer) ([]int, error) {
	var toks []int
	err := data.ReadTexts(path, func(doc string) error {
		toks = append(toks, tok.Encode(doc, tok.BOS() >= 0, false)...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("calibration text: %w", err)
	}
	return toks, nil
}

// legacyTypes maps a GPTQ grid of groups of 32 to the llama.cpp file
// type that stores it exactly.
var legacyTypes = []struct {
	bits int
	sym  bool
	ft   quant.FileType
}{
	{4, true, quant.MostlyQ4_0}, {4, false, quant.MostlyQ4_1}, {5, true, quant.MostlyQ5_0}, {5, false, quant.MostlyQ5_1},
	{8, true, quant.MostlyQ8_0},
}

// FileTypeFor returns the llama.cpp file type whose blocks hold GPTQ's
// grid of bits-bit integers in groups of group columns (symmetric or not)
// exactly: groups of 32 as Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0. Other
// combinations have no exact GGUF type; the error says what to use.
func FileTypeFor(bits, group int, sym bool) (quant.FileType, error) {
	for _, l := range legacyTypes {
		if l.bits == bits && l.sym == sym && group == 32 {
			return l.ft, nil
		}
	}
	kind := "asymmetric"
	if sym {
		kind = "symmetric"
	}
	return 0, fmt.Errorf("gptq: no llama.cpp type holds %d-bit %s groups of %d exactly (GGUF: 4-bit symmetric/asymmetric → Q4_0/Q4_1, 5-bit → Q5_0/Q5_1, 8-bit symmetric → Q8_0, all in groups of 32; or a k-quant mix with --type, whose grid is its own; or --format autogptq for any bits and group)",
		bits, kind, group)
}

// CheckFileType reports an error when the bits, group and symmetry the
// user gave explicitly (given) do not describe the grid of file type ft.
func CheckFileType(ft quant.FileType, bits, group int, sym bool, given bool) error {
	if !given {
		return nil
	}
	for _, l := range legacyTypes {
		if l.ft != ft {
			continue
		}
		if l.bits == bits && l.sym == sym && group == 32 {
			return nil
		}
		msg := fmt.Sprintf("--type %s is %d-bit groups of 32 (sym=%v), not --bits %d --group %d --sym=%v", ft, l.bits, l.sym, bits, group, sym)
		if want, err := FileTypeFor(bits, group, sym); err != nil {
			return fmt.Errorf("%s: %w", msg, err)
		} else {
			return fmt.Errorf("%s (that is --type %s)", msg, want)
		}
	}
	base, _ := ft.Base()
	return fmt.Errorf("--type %s: its grid is %s's own (super-blocks of %d); drop --bits/--group/--sym", ft, base, tensor.QKK)
}
