package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// FromLlama2c builds the tokenizer of a llama2.c tokenizer.bin file:
//
//	int32 max_token_length
//	vocabSize × { float32 score; int32 len; len bytes of piece }
//
// all little-endian. vocabSize comes from the model checkpoint, as in
// llama2.c; bytes after the last piece are ignored. In these files a space
// stands where the SentencePiece model has '▁', and ids 0, 1, 2 are <unk>,
// <s>, </s> (stored as "<unk>", "\n<s>\n", "\n</s>\n"): they get those
// names and types back here. Pieces "<0xNN>" are byte pieces; byte fallback
// is on when all 256 are present. Options are LlamaOptions.
func FromLlama2c(data []byte, vocabSize int) (*SPM, error) {
	if vocabSize < 3 {
		return nil, fmt.Errorf("llama2c tokenizer: vocabulary size %d, need at least 3 (<unk>, <s>, </s>)", vocabSize)
	}
	if len(data) < 4 {
		return nil, fmt.Errorf("llama2c tokenizer: %d bytes, too short for the max_token_length header", len(data))
	}
	maxLen := int32(binary.LittleEndian.Uint32(data))
	if maxLen < 0 {
		return nil, fmt.Errorf("llama2c tokenizer: negative max_token_length %d", maxLen)
	}
	// Every piece takes at least 8 bytes: refuse a vocabulary the file
	// cannot hold before allocating for it.
	if rest := len(data) - 4; vocabSize > rest/8 {
		return nil, fmt.Errorf("llama2c tokenizer: vocabulary size %d does not fit in %d bytes", vocabSize, len(data))
	}
	pieces := make([]string, vocabSize)
	scores := make([]float32, vocabSize)
	types := make([]Type, vocabSize)
	off := 4
	for i := range vocabSize {
		if len(data)-off < 8 {
			return nil, fmt.Errorf("llama2c tokenizer: truncated at piece %d of %d (offset %d)", i, vocabSize, off)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int32(binary.LittleEndian.Uint32(data[off+4:]))
		off += 8
		if n < 0 || int(n) > len(data)-off {
			return nil, fmt.Errorf("llama2c tokenizer: piece %d at offset %d: length %d, %d bytes left", i, off-4, n, len(data)-off)
		}
		if math.IsNaN(float64(score)) {
			return nil, fmt.Errorf("llama2c tokenizer: piece %d: score is NaN", i)
		}
		p := string(data[off : off+int(n)])
		off += int(n)
		switch i {
		case 0:
			p, types[i] = "<unk>", TypeUnknown
		case 1:
			p, types[i] = "<s>", TypeControl
		case 2:
			p, types[i] = "</s>", TypeControl
		default:
			p = strings.ReplaceAll(p, " ", spaceSymbol)
			types[i] = TypeNormal
			if pieceByte(p) >= 0 {
				types[i] = TypeByte
			}
		}
		pieces[i], scores[i] = p, score
	}
	opt := LlamaOptions()
	opt.ByteFallback = hasAllBytes(pieces, types)
	t, err := NewSPM(pieces, scores, types, opt)
	if err != nil {
		return nil, fmt.Errorf("llama2c tokenizer: %w", err)
	}
	return t, nil
}

// hasAllBytes reports whether the vocabulary has all 256 byte pieces.
func hasAllBytes(pieces []string, types []Type) bool {
	var seen [256]bool
	n := 0
	for i, p := range pieces {
		if types[i] != TypeByte {
			continue
		}
		if b := pieceByte(p); b >= 0 && !seen[b] {
			seen[b] = true
			n++
		}
	}
	return n == 256
}

// Llama2cVocabSize counts the pieces of a llama2.c tokenizer.bin, for
// reading one without its model: the records that fill the file after the
// header. An error says where a record does not fit.
func Llama2cVocabSize(data []byte) (int, error) {
	if len(data) < 4 {
		return 0, fmt.Errorf("llama2c tokenizer: %d bytes, too short for the max_token_length header", len(data))
	}
	n := 0
	for off := 4; off < len(data); n++ {
		if len(data)-off < 8 {
			return 0, fmt.Errorf("llama2c tokenizer: %d stray bytes after piece %d (offset %d)", len(data)-off, n, off)
		}
		l := int32(binary.LittleEndian.Uint32(data[off+4:]))
		off += 8
		if l < 0 || int(l) > len(data)-off {
			return 0, fmt.Errorf("llama2c tokenizer: piece %d at offset %d: length %d, %d bytes left", n, off-4, l, len(data)-off)
		}
		off += int(l)
	}
	return n, nil
}
