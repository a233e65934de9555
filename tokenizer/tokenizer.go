// Package tokenizer turns text into token ids and back for the LLaMA family.
//
// SPM is the SentencePiece BPE tokenizer used by LLaMA, Llama 2 and the
// llama2.c models. It reproduces the reference C++ implementation
// (sentencepiece's spm_encode / spm_decode) id for id; see SPM for the exact
// rules. Vocabularies come from plain slices (NewSPM, for GGUF metadata),
// from llama2.c tokenizer.bin files (FromLlama2c) or from SentencePiece
// .model files (FromModelProto).
//
// BPE is the byte-level BPE of GPT-2 and Llama 3 (tiktoken's rules, the
// Llama 3 split pattern written by hand), read from Hugging Face
// tokenizer.json (FromHuggingFace), GPT-2-style encoder.json + vocab.bpe
// (FromGPT2Files) or GGUF metadata (NewBPE).
//
// Train builds a SentencePiece BPE vocabulary from text, written as a
// .model that sentencepiece loads (MarshalModelProto); Extend appends the
// pieces of one vocabulary to another, as Chinese-LLaMA did.
package tokenizer

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
)

// Tokenizer is what the rest of herd needs from a tokenizer: text to ids,
// ids to text, and one token at a time for streaming output.
type Tokenizer interface {
	// Encode returns the ids of text, optionally framed by BOS and EOS.
	Encode(text string, addBOS, addEOS bool) []int
	// Decode returns the text of a whole id sequence.
	Decode(ids []int) string
	// DecodePiece returns the bytes that token id adds to a stream in which
	// prev was the token before it.
	DecodePiece(prev, id int) []byte
	// VocabSize is the number of ids, 0..VocabSize()-1.
	VocabSize() int
	// BOS is the beginning-of-sequence id, or -1 when there is none.
	BOS() int
	// EOS is the end-of-sequence id, or -1 when there is none.
	EOS() int
}

// Type is the kind of a vocabulary piece, numbered as SentencePiece's
// ModelProto.SentencePiece.Type and GGUF's tokenizer.ggml.token_type.
type Type int32

// Piece types. TypeUndefined (0) only appears in some GGUF files and is
// treated as TypeNormal.
const (
	TypeUndefined   Type = 0
	TypeNormal      Type = 1 // an ordinary subword, takes part in BPE merges
	TypeUnknown     Type = 2 // <unk>: emitted for text the vocabulary cannot spell
	TypeControl     Type = 3 // <s>, </s>: never produced from text, decode to nothing
	TypeUserDefined Type = 4 // matched as a whole before BPE, never split or merged
	TypeUnused      Type = 5 // merged like a normal piece, then split back
	TypeByte        Type = 6 // <0xNN>: one raw byte, for byte fallback
)

// String returns the SentencePiece name of the type.
func (t Type) String() string {
	switch t {
	case TypeUndefined:
		return "UNDEFINED"
	case TypeNormal:
		return "NORMAL"
	case TypeUnknown:
		return "UNKNOWN"
	case TypeControl:
		return "CONTROL"
	case TypeUserDefined:
		return "USER_DEFINED"
	case TypeUnused:
		return "UNUSED"
	case TypeByte:
		return "BYTE"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

var _ Tokenizer = (*SPM)(nil)

// SpecialEncoder is implemented by tokenizers that can read special tokens
// written in the text (llama.cpp's parse_special): SPM and BPE. Encode never
// does, so that user content cannot forge <s> or <|eot_id|>.
type SpecialEncoder interface {
	// EncodeSpecial is Encode with the text of control tokens read as
	// those tokens.
	EncodeSpecial(text string, addBOS, addEOS bool) []int
}

var (
	_ SpecialEncoder = (*SPM)(nil)
	_ SpecialEncoder = (*BPE)(nil)
)

// EncodeBatch encodes texts on up to threads goroutines (0: GOMAXPROCS)
// and returns their ids in order. With special set, special tokens are
// parsed where tok can (SpecialEncoder). Tokenizers are safe for
// concurrent use, so documents scale with cores.
func EncodeBatch(tok Tokenizer, texts []string, addBOS, addEOS, special bool, threads int) [][]int {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	threads = min(threads, len(texts))
	enc := tok.Encode
	if se, ok := tok.(SpecialEncoder); ok && special {
		enc = se.EncodeSpecial
	}
	out := make([][]int, len(texts))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(texts) {
					return
				}
				out[i] = enc(texts[i], addBOS, addEOS)
			}
		}()
	}
	wg.Wait()
	return out
}
