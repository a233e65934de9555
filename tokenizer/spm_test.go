package tokenizer

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// loadTok512 returns the 512-piece llama2.c vocabulary of stories260K.
func loadTok512(tb testing.TB) *SPM {
	tb.Helper()
	data, err := os.ReadFile("testdata/tok512.bin")
	if err != nil {
		tb.Fatal(err)
	}
	tk, err := FromLlama2c(data, 512)
	if err != nil {
		tb.Fatal(err)
	}
	return tk
}

func TestTok512Vocabulary(t *testing.T) {
	tk := loadTok512(t)
	if tk.VocabSize() != 512 || tk.BOS() != 1 || tk.EOS() != 2 || tk.UNK() != 0 {
		t.Fatalf("vocab %d bos %d eos %d unk %d", tk.VocabSize(), tk.BOS(), tk.EOS(), tk.UNK())
	}
	for id, want := range map[int]string{0: "<unk>", 1: "<s>", 2: "</s>", 3: "<0x00>", 13: "<0x0A>", 258: "<0xFF>", 259: "▁t", 403: "▁Once", 410: "▁"} {
		if got := tk.Piece(id); got != want {
			t.Errorf("Piece(%d) = %q, want %q", id, got, want)
		}
	}
	for id, want := range map[int]Type{0: TypeUnknown, 1: TypeControl, 2: TypeControl, 3: TypeByte, 258: TypeByte, 259: TypeNormal, 511: TypeNormal} {
		if got := tk.Type(id); got != want {
			t.Errorf("Type(%d) = %v, want %v", id, got, want)
		}
	}
	if !tk.Options().ByteFallback || !tk.Options().AddDummyPrefix {
		t.Errorf("options %+v, want byte fallback and dummy prefix", tk.Options())
	}
	if tk.PieceID("▁Once") != 403 || tk.PieceID("<0x0A>") != 13 || tk.PieceID("no such piece") != -1 {
		t.Errorf("PieceID lookups wrong")
	}
	if tk.Piece(-1) != "" || tk.Piece(512) != "" {
		t.Errorf("Piece outside the vocabulary should be empty")
	}
}

// TestTok512Stream replays llama2.c's output path: the golden text that
// run.c printed for stories260K, encoded after BOS and rendered token by
// token with DecodePiece, comes back byte for byte.
func TestTok512Stream(t *testing.T) {
	tk := loadTok512(t)
	golden, err := os.ReadFile("testdata/stories260K-greedy-200.txt")
	if err != nil {
		t.Fatal(err)
	}
	ids := tk.Encode(string(golden), true, false)
	if ids[0] != 1 || tk.Piece(ids[1]) != "▁Once" {
		t.Fatalf("encoding starts %v (%q), want BOS then ▁Once", ids[:2], tk.Piece(ids[1]))
	}
	var out bytes.Buffer
	for i := 1; i < len(ids); i++ {
		out.Write(tk.DecodePiece(ids[i-1], ids[i]))
	}
	if out.String() != string(golden) {
		t.Fatalf("streamed text differs:\n got %q\nwant %q", out.String(), golden)
	}
	if got := tk.Decode(ids); got != string(golden) {
		t.Fatalf("Decode differs:\n got %q\nwant %q", got, golden)
	}
}

func TestTok512DecodePiece(t *testing.T) {
	tk := loadTok512(t)
	cases := []struct {
		prev, id int
		want     string
	}{
		{1, 403, "Once"},    // after BOS the leading space goes
		{403, 403, " Once"}, // elsewhere it stays
		{-1, 403, " Once"},  // no previous token is not BOS
		{1, 13, "\n"},       // <0x0A>
		{5, 258, "\xff"},    // a raw byte, even one that is not UTF-8
		{5, 1, ""},          // control pieces print nothing
		{5, 2, ""},          //
		{5, 0, " \u2047 "},  // <unk> as spm_decode prints it
		{5, 512, ""},        // outside the vocabulary
		{5, -3, ""},         //
		{1, 410, ""},        // "▁" after BOS
	}
	for _, c := range cases {
		if got := string(tk.DecodePiece(c.prev, c.id)); got != c.want {
			t.Errorf("DecodePiece(%d, %d) = %q, want %q", c.prev, c.id, got, c.want)
		}
	}
}

// roundTripCases are texts that Decode(Encode(x)) must return unchanged:
// valid UTF-8 without U+2581.
var roundTripCases = []string{
	"",
	"Once upon a time, there was a little girl named Lily.",
	" leading space",
	"   three leading spaces",
	"trailing space ",
	"trailing spaces   ",
	" ",
	"   ",
	"tab\there\tand\ttabs\t",
	"new\nline\n\nand\r\nCRLF\n",
	"\n",
	"\nleading newline",
	"digits 0123456789 3.14159 1e-9",
	"中文字符测试，你好世界。",
	"日本語のテキスト、カタカナとひらがな。",
	"한국어 텍스트입니다.",
	"emoji 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷",
	"rare \U0010FFFD \uE000 \U0001F9FF end",
	"combining e\u0301 a\u0300\u0323 \u0308",
	"NUL \x00 and DEL \x7f and controls \x01\x1b",
	"\uFFFD literal replacement char",
	"mixed: Hello, 世界! 😀\tok\n  bye  ",
}

func TestTok512RoundTrip(t *testing.T) {
	tk := loadTok512(t)
	for _, s := range roundTripCases {
		ids := tk.Encode(s, false, false)
		if got := tk.Decode(ids); got != s {
			t.Errorf("Decode(Encode(%q)) = %q (ids %v)", s, got, ids)
		}
		withBOS := tk.Encode(s, true, true)
		if len(withBOS) != len(ids)+2 || withBOS[0] != 1 || withBOS[len(withBOS)-1] != 2 {
			t.Errorf("Encode(%q, true, true) = %v, want BOS %v EOS", s, withBOS, ids)
		}
		if got := tk.Decode(withBOS); got != s {
			t.Errorf("Decode with BOS/EOS of %q = %q", s, got)
		}
	}
}

func TestEncodeEmpty(t *testing.T) {
	tk := loadTok512(t)
	if ids := tk.Encode("", false, false); len(ids) != 0 {
		t.Errorf("Encode(\"\") = %v, want nothing", ids)
	}
	if ids := tk.Encode("", true, true); len(ids) != 2 || ids[0] != 1 || ids[1] != 2 {
		t.Errorf("Encode(\"\", bos, eos) = %v, want [1 2]", ids)
	}
}

// TestEncodeInvalidUTF8 checks spm's rule: each byte that is not part of a
// valid UTF-8 character is read as U+FFFD.
func TestEncodeInvalidUTF8(t *testing.T) {
	tk := loadTok512(t)
	for _, s := range []string{"\xff", "a\xffb", "\xe4\xb8", "\xe4\xb8a", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\x80\x80"} {
		want := replaceEach(s)
		ids := tk.Encode(s, false, false)
		if got := tk.Decode(ids); got != want {
			t.Errorf("Decode(Encode(%q)) = %q, want %q", s, got, want)
		}
		if same := tk.Encode(want, false, false); !equalInts(same, ids) {
			t.Errorf("Encode(%q) = %v, want the encoding of %q = %v", s, ids, want, same)
		}
	}
}

// replaceEach replaces every byte that does not belong to a valid UTF-8
// character with U+FFFD, one per byte.
func replaceEach(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDecodeBytes(t *testing.T) {
	tk := loadTok512(t)
	b := func(c byte) int { return 3 + int(c) }
	cases := []struct {
		ids  []int
		want string
	}{
		{[]int{b(0xE4), b(0xB8), b(0xAD)}, "中"},
		{[]int{b(0xE4), b(0xB8)}, "\uFFFD\uFFFD"},           // truncated character
		{[]int{b(0xE4), b(0xB8), 403}, "\uFFFD\uFFFD Once"}, // bytes count as printed text
		{[]int{b(0xFF), b('A')}, "\uFFFDA"},                 //
		{[]int{1, 403, 2}, "Once"},                          // control pieces vanish
		{[]int{410, 403}, " Once"},                          // only the first ▁ is the dummy prefix
		{[]int{1, 2, 410, 403}, " Once"},                    //
		{[]int{0, 403}, " \u2047  Once"},                    // <unk>
		{[]int{-1, 9999, 403}, "Once"},                      // unknown ids skipped
	}
	for _, c := range cases {
		if got := tk.Decode(c.ids); got != c.want {
			t.Errorf("Decode(%v) = %q, want %q", c.ids, got, c.want)
		}
	}
}

// llama2cFile writes pieces and scores in tokenizer.bin layout.
func llama2cFile(maxLen int32, pieces []string, scores []float32) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, maxLen)
	for i, p := range pieces {
		binary.Write(&b, binary.LittleEndian, scores[i])
		binary.Write(&b, binary.LittleEndian, int32(len(p)))
		b.WriteString(p)
	}
	return b.Bytes()
}

func TestFromLlama2cErrors(t *testing.T) {
	good := llama2cFile(5, []string{"<unk>", "\n<s>\n", "\n</s>\n", "a", " a"}, []float32{0, 0, 0, -1, -2})
	if _, err := FromLlama2c(good, 5); err != nil {
		t.Fatalf("valid file: %v", err)
	}
	negLen := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(negLen[4+4:], math.MaxUint32) // piece 0 length -1
	hugeLen := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(hugeLen[4+4:], 1<<30)
	negMax := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(negMax, math.MaxUint32)
	nan := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(nan[4:], math.Float32bits(float32(math.NaN())))
	cases := []struct {
		name  string
		data  []byte
		vocab int
		want  string
	}{
		{"empty", nil, 5, "too short"},
		{"truncated", good[:len(good)-1], 5, "piece 4"},
		{"truncated header", good[:4+3], 5, "does not fit"},
		{"too many pieces", good, 6, "piece 5"},
		{"absurd vocabulary", good, 1 << 40, "does not fit"},
		{"tiny vocabulary", good, 2, "at least 3"},
		{"negative length", negLen, 5, "length -1"},
		{"huge length", hugeLen, 5, "length 1073741824"},
		{"negative max_token_length", negMax, 5, "max_token_length"},
		{"NaN score", nan, 5, "NaN"},
	}
	for _, c := range cases {
		_, err := FromLlama2c(c.data, c.vocab)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// TestSmallVocabulary checks BPE order on a hand-made vocabulary: highest
// score first, leftmost on ties, merges across '▁', unknown characters
// without byte fallback collapse into one <unk>.
func TestSmallVocabulary(t *testing.T) {
	pieces := []string{"<unk>", "<s>", "</s>", "▁", "a", "b", "c", "ab", "bc", "▁a", "▁▁"}
	scores := []float32{0, 0, 0, -1, -1, -1, -1, -5, -5, -2, -9}
	tk, err := NewSPM(pieces, scores, nil, SPMOptions{BOS: 1, EOS: 2, UNK: 0, AddDummyPrefix: true})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		text string
		want []string
	}{
		{"abc", []string{"▁a", "bc"}},                 // ▁a (-2) before ab/bc (-5), then bc
		{"cabc", []string{"▁", "c", "ab", "c"}},       // ab and bc tie: the leftmost wins
		{"bbc", []string{"▁", "b", "bc"}},             //
		{" a", []string{"▁", "▁a"}},                   // ▁a (-2) beats ▁▁ (-9)
		{"xyz a", []string{"▁", "<unk>", "▁a"}},       // x y z unknown: one <unk>
		{"xay", []string{"▁", "<unk>", "a", "<unk>"}}, //
		{"", nil}, //
	}
	for _, c := range cases {
		var got []string
		for _, id := range tk.Encode(c.text, false, false) {
			got = append(got, tk.Piece(id))
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("Encode(%q) = %q, want %q", c.text, got, c.want)
		}
	}
}

func TestNewSPMErrors(t *testing.T) {
	p := []string{"<unk>", "<s>", "</s>", "a"}
	opt := SPMOptions{BOS: 1, EOS: 2, UNK: 0}
	cases := []struct {
		name   string
		pieces []string
		scores []float32
		types  []Type
		opt    SPMOptions
		want   string
	}{
		{"empty", nil, nil, nil, opt, "empty vocabulary"},
		{"scores", p, []float32{1}, nil, opt, "1 scores for 4 pieces"},
		{"types", p, nil, []Type{1}, opt, "1 types for 4 pieces"},
		{"bad type", p, nil, []Type{2, 3, 3, 9}, opt, "unknown type 9"},
		{"bos", p, nil, nil, SPMOptions{BOS: 4, EOS: 2, UNK: 0}, "BOS id 4"},
		{"byte", p, nil, []Type{2, 3, 3, 6}, opt, "not of the form <0xNN>"},
		{"fallback", p, nil, nil, SPMOptions{BOS: 1, EOS: 2, UNK: 0, ByteFallback: true}, "<0x00> is missing"},
		{"no unk", []string{"a", "b"}, nil, nil, SPMOptions{BOS: -1, EOS: -1, UNK: -1}, "no unknown piece"},
		{"NaN", p, []float32{0, 0, 0, float32(math.NaN())}, nil, opt, "NaN"},
	}
	for _, c := range cases {
		_, err := NewSPM(c.pieces, c.scores, c.types, c.opt)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// TestFastPathsAgree checks that BPE word by word with the pair table (the
// fast path LLaMA's vocabulary allows) gives what the plain sentencepiece
// algorithm gives: one heap over the whole text, merges looked up by text.
func TestFastPathsAgree(t *testing.T) {
	tk := loadTok512(t)
	if !tk.fastPairs || !tk.cutAtSpace {
		t.Fatalf("tok512 should allow the fast paths (pairs %v, cut %v)", tk.fastPairs, tk.cutAtSpace)
	}
	slow := variant(t, tk, func([]string, []Type, *SPMOptions) {})
	slow.fastPairs, slow.cutAtSpace = false, false
	heapOnly := variant(t, tk, func([]string, []Type, *SPMOptions) {})
	heapOnly.cutAtSpace = false
	texts := append(randomTexts(7, 2000), goldenCases...)
	texts = append(texts, strings.Repeat("Once upon a time ", 50), strings.Repeat("ab", 100), strings.Repeat(" ", 100)+"x")
	for _, s := range texts {
		want := slow.Encode(s, false, false)
		if got := tk.Encode(s, false, false); !equalInts(got, want) {
			t.Errorf("Encode(%q): fast path %v, plain %v", s, got, want)
		}
		if got := heapOnly.Encode(s, false, false); !equalInts(got, want) {
			t.Errorf("Encode(%q): pair table with one heap %v, plain %v", s, got, want)
		}
	}
}

// TestConcurrentEncode shares one SPM between goroutines (run with -race).
func TestConcurrentEncode(t *testing.T) {
	tk := loadTok512(t)
	texts := randomTexts(9, 200)
	want := make([][]int, len(texts))
	for i, s := range texts {
		want[i] = tk.Encode(s, true, false)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range texts {
				k := (i + g*50) % len(texts)
				if got := tk.Encode(texts[k], true, false); !equalInts(got, want[k]) {
					t.Errorf("goroutine %d: Encode(%q) = %v, want %v", g, texts[k], got, want[k])
					return
				}
				tk.Decode(want[k])
			}
		}()
	}
	wg.Wait()
}
