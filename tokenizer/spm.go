package tokenizer

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
)

// spaceSymbol is U+2581 LOWER ONE EIGHTH BLOCK, which SentencePiece writes
// in place of a space inside pieces.
const spaceSymbol = "\u2581"

// unkSurface is what spm_decode prints for the <unk> piece (U+2047 DOUBLE
// QUESTION MARK between spaces).
const unkSurface = " \u2047 "

// SPMOptions are the encoder settings a SentencePiece model carries besides
// its pieces. Ids are -1 when the vocabulary has no such piece.
type SPMOptions struct {
	// BOS and EOS are the ids Encode adds when asked to.
	BOS, EOS int
	// UNK is the id emitted for text the vocabulary cannot spell (when
	// ByteFallback is off). -1 takes the first piece of type TypeUnknown.
	UNK int
	// AddDummyPrefix puts a space before the text, so that a word at the
	// start is spelled like one after a space ("Hello" → "▁Hello"). LLaMA: true.
	AddDummyPrefix bool
	// ByteFallback spells characters that are not pieces as their UTF-8
	// bytes <0xNN> instead of <unk>. It needs all 256 byte pieces. LLaMA: true.
	ByteFallback bool
	// RemoveExtraWhitespaces drops leading and trailing spaces and
	// collapses runs of spaces into one. LLaMA: false.
	RemoveExtraWhitespaces bool
}

// LlamaOptions returns the options of the LLaMA / Llama 2 / llama2.c
// SentencePiece models: <unk>=0, <s>=1, </s>=2, a dummy prefix, byte
// fallback, whitespace kept as it is.
func LlamaOptions() SPMOptions {
	return SPMOptions{BOS: 1, EOS: 2, UNK: 0, AddDummyPrefix: true, ByteFallback: true}
}

// SPM is a SentencePiece BPE tokenizer. It reproduces sentencepiece's
// encoder and decoder for BPE models whose normalizer is "identity" (LLaMA's
// is; an nmt_nfkc model's text would first need NFKC normalisation):
//
//   - Normalisation: an empty text gives no tokens. Each invalid UTF-8 byte
//     becomes U+FFFD, as spm's normaliser does before BPE, so it is encoded
//     (through byte fallback, as the bytes EF BF BD, or as <unk>) and never
//     dropped, but it does not survive Decode as the original byte: matching
//     the reference id for id takes precedence over keeping raw bytes (a
//     byte-level BPE keeps them). Then optional extra-whitespace removal, a
//     dummy '▁' before the
//     text, every ' ' becomes '▁'. Other characters (tabs, newlines, ...) are
//     kept.
//   - The normalised text is split into user-defined pieces (longest match,
//     never merged further) and single characters; then BPE repeatedly merges
//     the adjacent pair whose concatenation is the piece with the highest
//     score, the leftmost pair on ties, until no pair is a piece. Merges may
//     cross spaces. Unused pieces merge like normal ones and are split back
//     into the pieces they were made of.
//   - A symbol that is not a piece becomes its UTF-8 bytes <0xNN> with byte
//     fallback, otherwise <unk> (a run of them one <unk>).
//
// Decode follows spm_decode: control pieces vanish, '▁' becomes ' ', the
// first piece loses one leading space (the dummy prefix), runs of byte
// pieces are read as UTF-8 with U+FFFD for each byte that does not form a
// character, <unk> reads " ⁇ ".
//
// An SPM is immutable and safe for concurrent use.
type SPM struct {
	pieces []string
	scores []float32
	types  []Type
	text   []string // piece with '▁' written as ' ', for decoding
	opt    SPMOptions
	unk    int
	// unkSurface is how Decode prints <unk> (TrainerSpec.unk_surface).
	unkSurface string

	// merge holds the pieces BPE may form (normal, user-defined and unused:
	// spm's pieces_), reserved the others (control, unknown, byte). Lookups
	// of a finished symbol try reserved first, as spm's PieceToId does.
	merge    map[string]int32
	reserved map[string]int32
	// final[id] is the id a symbol spelled like piece id gets in the output:
	// id itself unless a reserved piece has the same text.
	final    []int32
	maxMerge int // longest piece in merge, in bytes

	byteID  [256]int32 // id of <0xNN>, -1 if absent
	byteVal []int16    // byte of a TypeByte piece, -1 for others

	// asciiID[c] is the merge id of the one-byte piece c, -1 if none.
	asciiID [128]int32
	// With fastPairs (every character of every mergeable piece is itself
	// one), merges are looked up by the ids of the two symbols in pairs
	// instead of by text. With cutAtSpace ('▁' only at the start of
	// pieces), no merge crosses into a '▁' that follows another character,
	// so BPE runs word by word. Both hold for LLaMA's vocabulary.
	pairs      pairTable
	fastPairs  bool
	cutAtSpace bool

	// user lists the user-defined pieces by first byte, longest first;
	// special the control and unknown ones, for EncodeSpecial.
	user       [256][]string
	special    [256][]int32
	hasUser    bool
	hasUnused  bool
	scratchers sync.Pool
}

// NewSPM builds a tokenizer from a vocabulary: piece texts (with '▁' for
// spaces, as in SentencePiece models and GGUF tokenizer.ggml.tokens), their
// scores (nil: all zero) and types (nil: inferred — "<unk>" and the piece at
// opt.UNK are unknown, "<s>", "</s>" and the pieces at opt.BOS and opt.EOS are
// control, "<0xNN>" are bytes, the rest normal). Type 0 (undefined) counts as
// normal. When a piece text occurs twice, the first id wins.
func NewSPM(pieces []string, scores []float32, types []Type, opt SPMOptions) (*SPM, error) {
	n := len(pieces)
	if n == 0 {
		return nil, fmt.Errorf("tokenizer: empty vocabulary")
	}
	if n > math.MaxInt32 {
		return nil, fmt.Errorf("tokenizer: vocabulary of %d pieces is too large", n)
	}
	if scores == nil {
		scores = make([]float32, n)
	}
	if len(scores) != n {
		return nil, fmt.Errorf("tokenizer: %d scores for %d pieces", len(scores), n)
	}
	for name, id := range map[string]int{"BOS": opt.BOS, "EOS": opt.EOS, "UNK": opt.UNK} {
		if id < -1 || id >= n {
			return nil, fmt.Errorf("tokenizer: %s id %d outside the vocabulary of %d pieces", name, id, n)
		}
	}
	t := &SPM{
		pieces:     append([]string(nil), pieces...),
		scores:     append([]float32(nil), scores...),
		types:      make([]Type, n),
		text:       make([]string, n),
		opt:        opt,
		unk:        opt.UNK,
		unkSurface: unkSurface,
		merge:      make(map[string]int32, n),
		reserved:   make(map[string]int32),
		final:      make([]int32, n),
		byteVal:    make([]int16, n),
	}
	if types == nil {
		for i, p := range pieces {
			switch {
			case p == "<unk>" || i == opt.UNK:
				t.types[i] = TypeUnknown
			case p == "<s>" || p == "</s>" || i == opt.BOS || i == opt.EOS:
				t.types[i] = TypeControl
			case pieceByte(p) >= 0:
				t.types[i] = TypeByte
			default:
				t.types[i] = TypeNormal
			}
		}
	} else {
		if len(types) != n {
			return nil, fmt.Errorf("tokenizer: %d types for %d pieces", len(types), n)
		}
		for i, ty := range types {
			if ty < TypeUndefined || ty > TypeByte {
				return nil, fmt.Errorf("tokenizer: piece %d %q: unknown type %d", i, pieces[i], ty)
			}
			if ty == TypeUndefined {
				ty = TypeNormal
			}
			t.types[i] = ty
		}
	}
	for i := range t.byteID {
		t.byteID[i] = -1
	}
	for i, p := range t.pieces {
		if math.IsNaN(float64(t.scores[i])) {
			return nil, fmt.Errorf("tokenizer: piece %d %q: score is NaN", i, p)
		}
		t.text[i] = strings.ReplaceAll(p, spaceSymbol, " ")
		t.byteVal[i] = -1
		ty := t.types[i]
		switch ty {
		case TypeNormal, TypeUserDefined, TypeUnused:
			if p == "" {
				continue // can never match: symbols are never empty
			}
			if _, dup := t.merge[p]; !dup {
				t.merge[p] = int32(i)
			}
			t.maxMerge = max(t.maxMerge, len(p))
			if ty == TypeUserDefined {
				t.user[p[0]] = append(t.user[p[0]], p)
				t.hasUser = true
			}
			if ty == TypeUnused {
				t.hasUnused = true
			}
		default:
			if ty == TypeByte {
				b := pieceByte(p)
				if b < 0 {
					return nil, fmt.Errorf("tokenizer: piece %d %q has type BYTE but is not of the form <0xNN>", i, p)
				}
				t.byteVal[i] = int16(b)
				if t.byteID[b] < 0 {
					t.byteID[b] = int32(i)
				}
			}
			if ty == TypeUnknown && t.unk < 0 {
				t.unk = i
			}
			if _, dup := t.reserved[p]; !dup && p != "" {
				t.reserved[p] = int32(i)
				if ty == TypeControl || ty == TypeUnknown {
					t.special[p[0]] = append(t.special[p[0]], int32(i))
				}
			}
		}
	}
	for i, p := range t.pieces {
		t.final[i] = int32(i)
		if id, ok := t.reserved[p]; ok {
			t.final[i] = id
		}
	}
	for b := range t.user {
		us := t.user[b]
		sort.SliceStable(us, func(i, j int) bool { return len(us[i]) > len(us[j]) })
		sp := t.special[b]
		sort.SliceStable(sp, func(i, j int) bool { return len(t.pieces[sp[i]]) > len(t.pieces[sp[j]]) })
	}
	if opt.ByteFallback {
		for b, id := range t.byteID {
			if id < 0 {
				return nil, fmt.Errorf("tokenizer: byte fallback needs all 256 byte pieces, <0x%02X> is missing", b)
			}
		}
	} else if t.unk < 0 {
		return nil, fmt.Errorf("tokenizer: no unknown piece (UNK id or a piece of type UNKNOWN) and no byte fallback")
	}
	t.opt.UNK = t.unk
	t.buildPairs()
	t.scratchers.New = func() any { return new(scratch) }
	return t, nil
}

// buildPairs fills asciiID and, when every character of every mergeable
// piece is itself a mergeable piece, the pair table of all merges; it also
// decides whether BPE may run word by word.
func (t *SPM) buildPairs() {
	for c := range t.asciiID {
		t.asciiID[c] = -1
		if id, ok := t.merge[string(rune(c))]; ok {
			t.asciiID[c] = id
		}
	}
	t.fastPairs, t.cutAtSpace = true, true
	n := 0
	for p := range t.merge {
		for k := 0; k < len(p); {
			c := min(charLen(p[k]), len(p)-k)
			if _, ok := t.merge[p[k:k+c]]; !ok {
				t.fastPairs = false
			}
			k += c
			n++
		}
		if strings.Contains(strings.TrimLeft(p, spaceSymbol), spaceSymbol) {
			t.cutAtSpace = false
		}
	}
	if !t.fastPairs {
		return
	}
	t.pairs = newPairTable(n)
	for p, id := range t.merge {
		for k := min(charLen(p[0]), len(p)); k < len(p); k += min(charLen(p[k]), len(p)-k) {
			a, okA := t.merge[p[:k]]
			b, okB := t.merge[p[k:]]
			if okA && okB {
				t.pairs.put(a, b, id)
			}
		}
	}
}

// pieceByte returns the byte that a piece "<0xNN>" (two upper-case hex
// digits, as SentencePiece writes them) stands for, or -1.
func pieceByte(p string) int {
	if len(p) != 6 || p[:3] != "<0x" || p[5] != '>' {
		return -1
	}
	hi, lo := hexDigit(p[3]), hexDigit(p[4])
	if hi < 0 || lo < 0 {
		return -1
	}
	return hi<<4 | lo
}

func hexDigit(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// VocabSize is the number of pieces.
func (t *SPM) VocabSize() int { return len(t.pieces) }

// BOS is the beginning-of-sequence id, -1 if none.
func (t *SPM) BOS() int { return t.opt.BOS }

// EOS is the end-of-sequence id, -1 if none.
func (t *SPM) EOS() int { return t.opt.EOS }

// UNK is the id emitted for unspellable text without byte fallback, -1 if none.
func (t *SPM) UNK() int { return t.unk }

// Options returns the options the tokenizer was built with, UNK resolved.
func (t *SPM) Options() SPMOptions { return t.opt }

// Piece returns the raw text of piece id ('▁' for spaces, "<0x0A>" for a
// byte piece), or "" for an id outside the vocabulary.
func (t *SPM) Piece(id int) string {
	if id < 0 || id >= len(t.pieces) {
		return ""
	}
	return t.pieces[id]
}

// Score returns the BPE score of piece id (higher merges first), 0 outside
// the vocabulary.
func (t *SPM) Score(id int) float32 {
	if id < 0 || id >= len(t.pieces) {
		return 0
	}
	return t.scores[id]
}

// Type returns the type of piece id, TypeUndefined outside the vocabulary.
func (t *SPM) Type(id int) Type {
	if id < 0 || id >= len(t.pieces) {
		return TypeUndefined
	}
	return t.types[id]
}

// PieceID returns the id of a piece text as spm's PieceToId does (control,
// unknown and byte pieces first), or -1 when no piece has that text.
func (t *SPM) PieceID(piece string) int {
	if id, ok := t.reserved[piece]; ok {
		return int(id)
	}
	if id, ok := t.merge[piece]; ok {
		return int(id)
	}
	return -1
}
