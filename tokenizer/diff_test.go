package tokenizer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// randomText returns a string mixing the scripts and odd characters a
// tokenizer meets: words, runs of spaces, tabs, digits, CJK, kana, Hangul,
// emoji sequences, private-use and supplementary-plane characters,
// combining marks, piece look-alikes ("<s>", "▁"), control characters and
// bytes that are not UTF-8. It never contains '\n' (spm_encode reads lines).
func randomText(r *rand.Rand) string {
	words := []string{"the", "The", "a", "Once", "upon", "time", "Lily", "happy", "don't", "tokenizer", "xylophone", "Zürich", "naïve", "café"}
	specials := []string{"<s>", "</s>", "<unk>", "<0x0A>", "<0x41>", "▁", "▁▁", "\uFFFD", "\x00", "\r", "\x1b", "\u200d", "\u00a0", "\u3000"}
	invalid := []string{"\xff", "\xc3", "\xe4\xb8", "\xed\xa0\x80", "\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "\xf0\x9f\x98"}
	ranges := [][2]rune{
		{0x4E00, 0x9FFF},    // CJK ideographs
		{0x3041, 0x3096},    // hiragana
		{0x30A1, 0x30FA},    // katakana
		{0xAC00, 0xD7A3},    // Hangul syllables
		{0x0410, 0x044F},    // Cyrillic
		{0x0391, 0x03C9},    // Greek
		{0x0600, 0x06FF},    // Arabic
		{0x1F300, 0x1FAFF},  // emoji
		{0x0300, 0x036F},    // combining marks
		{0xE000, 0xF8FF},    // private use
		{0x10000, 0x2FFFF},  // supplementary planes, mostly rare
		{0xF0000, 0x10FFFF}, // supplementary private use
		{0x2000, 0x206F},    // punctuation, spaces, joiners
		{0x0021, 0x007E},    // printable ASCII
	}
	var b strings.Builder
	for range r.IntN(14) {
		switch k := r.IntN(20); {
		case k < 6:
			if r.IntN(2) == 0 {
				b.WriteByte(' ')
			}
			b.WriteString(words[r.IntN(len(words))])
		case k < 8:
			b.WriteString(strings.Repeat(" ", 1+r.IntN(6)))
		case k < 9:
			b.WriteString(strings.Repeat("\t", 1+r.IntN(2)))
		case k < 10:
			for range 1 + r.IntN(6) {
				b.WriteByte(byte('0' + r.IntN(10)))
			}
		case k < 16:
			rg := ranges[r.IntN(len(ranges))]
			for range 1 + r.IntN(4) {
				b.WriteRune(rg[0] + r.Int32N(rg[1]-rg[0]+1))
			}
			if rg[0] == 0x1F300 && r.IntN(3) == 0 {
				b.WriteString([]string{"\u200d\U0001F466", "\U0001F3FD", "\uFE0F"}[r.IntN(3)])
			}
		case k < 18:
			b.WriteString(specials[r.IntN(len(specials))])
		default:
			b.WriteString(invalid[r.IntN(len(invalid))])
		}
	}
	return b.String()
}

// diffEncode encodes texts with tk and with spm_encode on model and
// reports every difference; then it decodes the ids with both.
func diffEncode(t *testing.T, tk *SPM, model string, texts []string) {
	t.Helper()
	want := spmEncode(t, model, texts)
	ids := make([][]int, len(texts))
	bad := 0
	for i, text := range texts {
		ids[i] = tk.Encode(text, false, false)
		if !equalInts(ids[i], want[i]) {
			if bad++; bad <= 10 {
				t.Errorf("Encode(%q)\n got %v\nwant %v", text, ids[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d encodings differ from spm_encode", bad, len(texts))
	}
	diffDecode(t, tk, model, ids)
}

// diffDecode decodes id sequences with tk and spm_decode; the decoded texts
// must not contain '\n'.
func diffDecode(t *testing.T, tk *SPM, model string, ids [][]int) {
	t.Helper()
	want := spmDecode(t, model, ids)
	bad := 0
	for i, s := range ids {
		if got := tk.Decode(s); got != want[i] {
			if bad++; bad <= 10 {
				t.Errorf("Decode(%v) = %q, spm_decode %q", s, got, want[i])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d decodings differ from spm_decode", bad, len(ids))
	}
}

// diffStrings is how many random strings the differential tests of the
// LLaMA and OpenLLaMA vocabularies encode and decode with both herd and the
// reference (the issue asks for at least 10,000).
const diffStrings = 10000

func randomTexts(seed uint64, n int) []string {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	texts := make([]string, n)
	for i := range texts {
		texts[i] = randomText(r)
	}
	return texts
}

// randomIDs returns id sequences rich in what Decode treats specially:
// byte pieces (which may not form UTF-8), control pieces, <unk>, pieces
// starting with '▁'. It leaves out ids whose text has a newline.
func randomIDs(tk *SPM, seed uint64, n int) [][]int {
	r := rand.New(rand.NewPCG(seed, 0x1d5))
	var special []int
	for id := range tk.VocabSize() {
		if tk.Type(id) != TypeNormal || strings.HasPrefix(tk.Piece(id), "▁") {
			special = append(special, id)
		}
	}
	out := make([][]int, n)
	for i := range out {
		for range r.IntN(12) {
			id := r.IntN(tk.VocabSize())
			if r.IntN(2) == 0 {
				id = special[r.IntN(len(special))]
			}
			if strings.Contains(tk.Decode([]int{5, id}), "\n") { // 5: any byte piece, so nothing is stripped
				continue
			}
			out[i] = append(out[i], id)
		}
	}
	return out
}

func TestDifferentialLlama(t *testing.T) {
	tk := loadLlama(t)
	needOracle(t)
	n := diffStrings
	if testing.Short() {
		n = 300
	}
	texts := randomTexts(1, n)
	diffEncode(t, tk, llamaModelPath, texts)
	diffDecode(t, tk, llamaModelPath, randomIDs(tk, 2, n))
}

// TestDifferentialTok512 compares tok512 and variants of it that exercise
// every option and piece type (user-defined, unused, no byte fallback,
// extra-whitespace removal, no dummy prefix) with the reference, which
// reads each variant through MarshalModelProto.
func TestDifferentialTok512(t *testing.T) {
	needOracle(t)
	base := loadTok512(t)
	n := 600
	if testing.Short() {
		n = 150
	}
	setType := func(pieces []string, types []Type, ty Type, texts ...string) {
		for _, want := range texts {
			for i, p := range pieces {
				if p == want {
					types[i] = ty
				}
			}
		}
	}
	variants := []struct {
		name string
		edit func(pieces []string, types []Type, opt *SPMOptions)
	}{
		{"as shipped", func([]string, []Type, *SPMOptions) {}},
		{"user-defined", func(p []string, ty []Type, _ *SPMOptions) {
			setType(p, ty, TypeUserDefined, "he", "▁the", "nd", "!", "▁", "ing")
		}},
		{"unused", func(p []string, ty []Type, _ *SPMOptions) {
			setType(p, ty, TypeUnused, "he", "▁a", "▁the", "▁t", "nd", "in", "e")
		}},
		{"no byte fallback", func(p []string, ty []Type, opt *SPMOptions) {
			opt.ByteFallback = false
			for i := range ty {
				if ty[i] == TypeByte {
					ty[i] = TypeNormal
				}
			}
		}},
		{"remove extra whitespaces", func(_ []string, _ []Type, opt *SPMOptions) {
			opt.RemoveExtraWhitespaces = true
		}},
		{"no dummy prefix", func(_ []string, _ []Type, opt *SPMOptions) {
			opt.AddDummyPrefix = false
		}},
		{"all at once", func(p []string, ty []Type, opt *SPMOptions) {
			setType(p, ty, TypeUserDefined, "he", "!", "▁")
			setType(p, ty, TypeUnused, "▁a", "▁the", "nd")
			opt.RemoveExtraWhitespaces = true
			opt.AddDummyPrefix = false
		}},
	}
	for i, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			tk := variant(t, base, v.edit)
			model := writeModel(t, tk)
			texts := randomTexts(uint64(10+i), n)
			texts = append(texts, goldenLines()...)
			diffEncode(t, tk, model, texts)
			diffDecode(t, tk, model, randomIDs(tk, uint64(20+i), n/2))
		})
	}
}

// goldenLines are the golden cases without newlines, padded with spaces
// for the whitespace options.
func goldenLines() []string {
	var out []string
	for _, c := range goldenCases {
		if !strings.Contains(c, "\n") {
			out = append(out, c, "  "+c+"  ")
		}
	}
	return out
}

func TestRandomTextHasNoNewline(t *testing.T) {
	for _, s := range randomTexts(3, 500) {
		if strings.Contains(s, "\n") {
			t.Fatalf("random text %q has a newline", s)
		}
	}
	valid := 0
	for _, s := range randomTexts(4, 500) {
		if utf8.ValidString(s) {
			valid++
		}
	}
	if valid == 500 || valid == 0 {
		t.Errorf("%d of 500 random texts are valid UTF-8: want a mix", valid)
	}
}
