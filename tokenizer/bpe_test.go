package tokenizer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

const (
	llama3EncoderPath = "/work/shared/data/tokenizers/llama3.2/llama3.2-encoder.json"
	llama3MergesPath  = "/work/shared/data/tokenizers/llama3.2/llama3.2-vocab.bpe"
	llama3GoldenPath  = "testdata/llama3_bpe_golden.tsv"
)

var llama3Once = sync.OnceValues(func() (*BPE, error) {
	enc, err := os.ReadFile(llama3EncoderPath)
	if err != nil {
		return nil, err
	}
	bpe, err := os.ReadFile(llama3MergesPath)
	if err != nil {
		return nil, err
	}
	return FromGPT2Files(enc, bpe, nil)
})

// loadLlama3 returns the Llama 3.2 tokenizer from the shared data kit,
// skipping the test when it is absent (Llama 3.2 Community Licence: not
// shipped in testdata).
func loadLlama3(tb testing.TB) *BPE {
	tb.Helper()
	if _, err := os.Stat(llama3EncoderPath); err != nil {
		tb.Skipf("Llama 3.2 vocabulary not available (%v); it cannot be shipped in testdata", err)
	}
	tk, err := llama3Once()
	if err != nil {
		tb.Fatal(err)
	}
	return tk
}

// rawVocab is the reference's view of a byte-level BPE: raw bytes → id of
// every mergeable token.
func rawVocab(tk *BPE) map[string]int {
	v := make(map[string]int, tk.VocabSize())
	for id := range tk.VocabSize() {
		if ty := tk.Type(id); ty == TypeControl || ty == TypeUserDefined {
			continue
		}
		if raw, ok := fromByteLevel(tk.Piece(id)); ok {
			if _, dup := v[raw]; !dup {
				v[raw] = id
			}
		}
	}
	return v
}

// bpeGoldenCases are the byte-level BPE golden texts: English, code,
// numbers (Llama 3 groups digits by three), contractions, Chinese, emoji,
// whitespace runs and line breaks, and odd Unicode.
var bpeGoldenCases = []string{
	"",
	"hello world",
	"Hello, world!",
	"Hello world",
	"Once upon a time, there was a little girl named Lily. She loved to play outside.",
	"The quick brown fox jumps over the lazy dog.",
	"def fib(n):\n    if n < 2:\n        return n\n    return fib(n-1) + fib(n-2)\n",
	"func main() {\n\tfmt.Println(\"hi\")\n}\n",
	"for (int i = 0; i < 10; ++i) { sum += a[i] * b[i]; }",
	"<html><body class=\"x\">&amp;</body></html>",
	"1 12 123 1234 12345 123456 1234567",
	"3.14159 2,718,281 -42 +7 1e-9 0x1F 0b1010",
	"year 2024, 12:30pm, 50% off, $1,000,000.00",
	"٣٤٥ ١٢٣٤ ⅷ ² ½ 𝟙𝟚𝟛",
	"I'm you're we've they'll she'd it's don't won't can't",
	"I'M YOU'RE WE'VE THEY'LL SHE'D IT'S DON'T",
	"'s 't 're 've 'm 'll 'd 'x 'S 'ſ",
	"it’s curly ’s apostrophe",
	"中文字符测试，你好世界。",
	"我们今天去公园散步吧！",
	"日本語のテキスト、カタカナとひらがな。",
	"한국어 텍스트입니다.",
	"Привет, мир! Ελληνικά. العربية. עברית. हिन्दी",
	"emoji 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ 🤖🦙🔥",
	" leading space",
	"  two leading spaces",
	"trailing spaces   ",
	"a  b   c    d     e",
	"     ",
	"\t",
	"tab\tseparated\tvalues",
	"\n",
	"\n\n\n",
	"line one\nline two",
	"para one\n\npara two\n \n  indented",
	"windows\r\nline ends\r\n",
	" \n \n",
	"  \n\t x",
	"\u00a0non-breaking\u00a0space \u3000ideographic space\u2003em",
	"zero width \u200b joiner \u200d",
	"combining e\u0301 a\u0300\u0323",
	"...!!!???---",
	" ?!x ?! \n?!\n\n",
	"https://example.com/path?query=1&b=2#frag",
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	"                                                                          x",
	"specials <|begin_of_text|> <|eot_id|> <s> </s>",
	"\uFFFD replacement char",
	"NUL \x00 DEL \x7f ESC \x1b",
}

type bpeGolden struct {
	text string
	ids  []int
}

func readBPEGolden(tb testing.TB, path string) []bpeGolden {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []bpeGolden
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		text, ids, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			tb.Fatalf("%s:%d: no tab", path, n)
		}
		s, err1 := strconv.Unquote(text)
		v, err2 := parseIDs(ids)
		if err1 != nil || err2 != nil {
			tb.Fatalf("%s:%d: %v %v", path, n, err1, err2)
		}
		out = append(out, bpeGolden{s, v})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestLlama3Golden checks the Llama 3.2 encoder against
// testdata/llama3_bpe_golden.tsv, whose ids come from the reference in
// bpe_ref_test.go (regenerate with HERD_REGEN_GOLDEN=1 -run
// TestRegenerateBPEGolden) and agree with the hand-checked cases of
// TestLlama3Known.
func TestLlama3Golden(t *testing.T) {
	tk := loadLlama3(t)
	golden := readBPEGolden(t, llama3GoldenPath)
	if len(golden) != len(bpeGoldenCases) {
		t.Fatalf("%s has %d cases, bpeGoldenCases %d: regenerate it", llama3GoldenPath, len(golden), len(bpeGoldenCases))
	}
	for i, g := range golden {
		if g.text != bpeGoldenCases[i] {
			t.Fatalf("golden line %d is %q, bpeGoldenCases has %q: regenerate it", i+1, g.text, bpeGoldenCases[i])
		}
		if got := tk.Encode(g.text, false, false); !equalInts(got, g.ids) {
			t.Errorf("Encode(%q)\n got %v\nwant %v", g.text, got, g.ids)
		}
		if got := tk.Decode(g.ids); got != g.text {
			t.Errorf("Decode(%v) = %q, want %q", g.ids, got, g.text)
		}
	}
}

func TestRegenerateBPEGolden(t *testing.T) {
	if os.Getenv("HERD_REGEN_GOLDEN") == "" {
		t.Skip("set HERD_REGEN_GOLDEN=1 to rewrite the byte-level BPE golden file from the reference")
	}
	tk := loadLlama3(t)
	vocab := rawVocab(tk)
	var b strings.Builder
	for _, text := range bpeGoldenCases {
		fmt.Fprintf(&b, "%s\t%s\n", strconv.Quote(text), formatIDs(refBPE(vocab, refLlama3, true, text)))
	}
	if err := os.WriteFile(llama3GoldenPath, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLlama3Known checks ids published for tiktoken's cl100k_base (whose
// 100,000 tokens begin Llama 3's vocabulary) and Llama 3's special tokens.
func TestLlama3Known(t *testing.T) {
	tk := loadLlama3(t)
	cases := []struct {
		text    string
		bos     bool
		special bool
		want    []int
	}{
		{"hello world", false, false, []int{15339, 1917}},
		{"hello", false, false, []int{15339}},
		{"Hello, world!", true, false, []int{128000, 9906, 11, 1917, 0}},
		{"<|eot_id|>", false, true, []int{128009}},
		{"<|start_header_id|>user<|end_header_id|>", true, true, []int{128000, 128006, 882, 128007}},
	}
	for _, c := range cases {
		enc := tk.Encode
		if c.special {
			enc = tk.EncodeSpecial
		}
		if got := enc(c.text, c.bos, false); !equalInts(got, c.want) {
			t.Errorf("encode(%q, special=%v) = %v, want %v", c.text, c.special, got, c.want)
		}
	}
	if tk.VocabSize() != 128256 || tk.BOS() != 128000 || tk.EOS() != 128001 || !tk.Options().AddBOS {
		t.Errorf("vocab %d BOS %d EOS %d options %+v", tk.VocabSize(), tk.BOS(), tk.EOS(), tk.Options())
	}
	// Without parse_special, a special token's text is only text.
	if ids := tk.Encode("<|eot_id|>", false, false); len(ids) < 2 || containsInt(ids, 128009) {
		t.Errorf("Encode(<|eot_id|>) = %v: a special token was parsed from user text", ids)
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// bpeRandomText is randomText with line breaks, contractions and long
// numbers mixed in.
func bpeRandomText(r *rand.Rand) string {
	extra := []string{"\n", "\r\n", " \n ", "\n\n", "'s", "'LL", "'ve", "ſ", "’s", "1234567", " 42", "  \t\n", "?!\n", " .\r\n"}
	var b strings.Builder
	for range 1 + r.IntN(4) {
		b.WriteString(randomText(r))
		b.WriteString(extra[r.IntN(len(extra))])
	}
	return b.String()
}

// TestLlama3AgainstReference compares the Llama 3.2 encoder with the
// reference on random text, valid UTF-8 or not.
func TestLlama3AgainstReference(t *testing.T) {
	tk := loadLlama3(t)
	vocab := rawVocab(tk)
	n := 3000
	if testing.Short() {
		n = 300
	}
	r := rand.New(rand.NewPCG(7, 8))
	for i := range n {
		text := bpeRandomText(r)
		got := tk.Encode(text, false, false)
		if want := refBPE(vocab, refLlama3, true, text); !equalInts(got, want) {
			t.Fatalf("case %d: Encode(%q)\n got %v\nwant %v", i, text, got, want)
		}
		if back := tk.Decode(got); back != text {
			t.Fatalf("Decode(Encode(%q)) = %q", text, back)
		}
	}
}

// synthVocab trains a small byte-level vocabulary on text: 256 byte tokens
// in byte order, then merges of the most frequent adjacent pair within the
// chunks of pre, ids in merge order. Its merge rules are written as
// converters from tiktoken write them: for each token in rank order, every
// split into two tokens.
func synthVocab(text string, pre []*regexp.Regexp, merges int) (tokens []string, rules []string) {
	for b := range 256 {
		tokens = append(tokens, string([]byte{byte(b)}))
	}
	id := map[string]int{}
	for i, t := range tokens {
		id[t] = i
	}
	var words [][]string
	for _, c := range refSplit(pre, text) {
		w := make([]string, len(c))
		for i := range len(c) {
			w[i] = c[i : i+1]
		}
		words = append(words, w)
	}
	for range merges {
		count := map[[2]string]int{}
		for _, w := range words {
			for i := 0; i+1 < len(w); i++ {
				count[[2]string{w[i], w[i+1]}]++
			}
		}
		var best [2]string
		bestN := 0
		for p, n := range count {
			if _, have := id[p[0]+p[1]]; have {
				continue
			}
			if n > bestN || n == bestN && p[0]+"\x00"+p[1] < best[0]+"\x00"+best[1] {
				best, bestN = p, n
			}
		}
		if bestN < 2 {
			break
		}
		tok := best[0] + best[1]
		id[tok] = len(tokens)
		tokens = append(tokens, tok)
		for k, w := range words {
			var out []string
			for i := 0; i < len(w); i++ {
				if i+1 < len(w) && w[i] == best[0] && w[i+1] == best[1] {
					out = append(out, tok)
					i++
					continue
				}
				out = append(out, w[i])
			}
			words[k] = out
		}
	}
	for _, tok := range tokens[256:] {
		var local [][2]string
		for k := 1; k < len(tok); k++ {
			if _, ok := id[tok[:k]]; !ok {
				continue
			}
			if _, ok := id[tok[k:]]; ok {
				local = append(local, [2]string{tok[:k], tok[k:]})
			}
		}
		sort.Slice(local, func(i, j int) bool {
			return id[local[i][0]] < id[local[j][0]] || id[local[i][0]] == id[local[j][0]] && id[local[i][1]] < id[local[j][1]]
		})
		for _, p := range local {
			rules = append(rules, ByteLevel(p[0])+" "+ByteLevel(p[1]))
		}
	}
	for i, t := range tokens {
		tokens[i] = ByteLevel(t)
	}
	return tokens, rules
}

// synthText is the text synthetic vocabularies are trained on: the
// shipped golden story, the golden cases of both tokenizers.
func synthText(tb testing.TB) string {
	story, err := os.ReadFile("testdata/stories260K-greedy-200.txt")
	if err != nil {
		tb.Fatal(err)
	}
	return string(story) + strings.Join(goldenCases, "\n") + strings.Join(bpeGoldenCases, "\n")
}

var synthOnce sync.Map // Pretokenizer → *BPE

// synthBPE returns a synthetic byte-level vocabulary of about 600 tokens
// for pattern pre, with specials <|bos|> (BOS), <|eos|> (EOS) as control
// tokens and <tool> as a user-defined one.
func synthBPE(tb testing.TB, pre Pretokenizer) *BPE {
	tb.Helper()
	if v, ok := synthOnce.Load(pre); ok {
		return v.(*BPE)
	}
	alts := refLlama3
	if pre == PreGPT2 {
		alts = refGPT2
	}
	tokens, rules := synthVocab(synthText(tb), alts, 350)
	n := len(tokens)
	tokens = append(tokens, "<|bos|>", "<|eos|>", "<tool>")
	types := make([]Type, len(tokens))
	for i := range types {
		types[i] = TypeNormal
	}
	types[n], types[n+1], types[n+2] = TypeControl, TypeControl, TypeUserDefined
	tk, err := NewBPE(tokens, types, rules, BPEOptions{Pre: pre, IgnoreMerges: pre == PreLlama3, BOS: n, EOS: n + 1, AddBOS: true})
	if err != nil {
		tb.Fatal(err)
	}
	synthOnce.Store(pre, tk)
	return tk
}

func TestSynthAgainstReference(t *testing.T) {
	for _, pre := range []Pretokenizer{PreLlama3, PreGPT2} {
		t.Run(pre.String(), func(t *testing.T) {
			tk := synthBPE(t, pre)
			alts := refLlama3
			if pre == PreGPT2 {
				alts = refGPT2
			}
			vocab := rawVocab(tk)
			r := rand.New(rand.NewPCG(11, uint64(pre)))
			texts := append([]string{}, bpeGoldenCases...)
			for range 2000 {
				texts = append(texts, bpeRandomText(r))
			}
			for _, text := range texts {
				if strings.Contains(text, "<tool>") {
					continue
				}
				got := tk.Encode(text, false, false)
				if want := refBPE(vocab, alts, pre == PreLlama3, text); !equalInts(got, want) {
					t.Fatalf("Encode(%q)\n got %v\nwant %v", text, got, want)
				}
				if back := tk.Decode(got); back != text {
					t.Fatalf("Decode(Encode(%q)) = %q", text, back)
				}
			}
		})
	}
}

// TestSplitAgainstReference compares the hand-written splitters with the
// regexp reference on random text.
func TestSplitAgainstReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	texts := append([]string{}, bpeGoldenCases...)
	for range 5000 {
		texts = append(texts, bpeRandomText(r))
	}
	for _, text := range texts {
		for _, c := range []struct {
			pre  Pretokenizer
			alts []*regexp.Regexp
		}{{PreLlama3, refLlama3}, {PreGPT2, refGPT2}} {
			var got []string
			c.pre.split(text, func(s string) { got = append(got, s) })
			if want := refSplit(c.alts, text); strings.Join(got, "\x00|") != strings.Join(want, "\x00|") {
				t.Fatalf("%v split(%q)\n got %q\nwant %q", c.pre, text, got, want)
			}
		}
	}
}

func TestBPESpecialTokens(t *testing.T) {
	tk := synthBPE(t, PreLlama3)
	bos, eos, tool := tk.BOS(), tk.EOS(), tk.PieceID("<tool>")
	if tool < 0 || tk.Type(tool) != TypeUserDefined || tk.Type(bos) != TypeControl {
		t.Fatalf("ids %d %d %d types %v %v", bos, eos, tool, tk.Type(bos), tk.Type(tool))
	}
	text := "a<|bos|>b<tool>c<|eos|>"
	plain := tk.Encode(text, true, true)
	if plain[0] != bos || plain[len(plain)-1] != eos || containsInt(plain[1:len(plain)-1], bos) || containsInt(plain[1:len(plain)-1], eos) {
		t.Errorf("Encode(%q) = %v: control tokens must come only from addBOS/addEOS", text, plain)
	}
	if !containsInt(plain, tool) {
		t.Errorf("Encode(%q) = %v: user-defined <tool> must always be cut out", text, plain)
	}
	sp := tk.EncodeSpecial(text, false, false)
	a, b, c := tk.Encode("a", false, false), tk.Encode("b", false, false), tk.Encode("c", false, false)
	want := append(append(append(append(append(a, bos), b...), tool), c...), eos)
	if !equalInts(sp, want) {
		t.Errorf("EncodeSpecial(%q) = %v, want %v", text, sp, want)
	}
	if got := tk.Decode(sp); got != text {
		t.Errorf("Decode = %q, want %q", got, text)
	}
}

func TestBPEInvalidUTF8(t *testing.T) {
	tk := synthBPE(t, PreLlama3)
	for _, s := range []string{"\xff", "a\xffb", "\xe4\xb8", "中\x80文", "\xed\xa0\x80 x", "\xf0\x9f\x98 \xf0\x9f\x98\x80"} {
		ids := tk.Encode(s, false, false)
		if got := tk.Decode(ids); got != s {
			t.Errorf("Decode(Encode(%q)) = %q: raw bytes must survive", s, got)
		}
		var stream []byte
		for _, id := range ids {
			stream = append(stream, tk.DecodePiece(-1, id)...)
		}
		if string(stream) != s {
			t.Errorf("streamed %q, want %q", stream, s)
		}
	}
}

func TestBPELongChunks(t *testing.T) {
	// Chunks longer than bpeLinearMax take the heap path; compare it with
	// the reference on long words, digit runs and whitespace runs.
	tk := synthBPE(t, PreGPT2)
	vocab := rawVocab(tk)
	r := rand.New(rand.NewPCG(5, 6))
	letters := "aaaaabbbceehhilnnoorsttw"
	for range 300 {
		var b strings.Builder
		for range 40 + r.IntN(300) {
			b.WriteByte(letters[r.IntN(len(letters))])
		}
		text := b.String() + strings.Repeat(" ", r.IntN(100)) + strings.Repeat("9", r.IntN(100))
		if got, want := tk.Encode(text, false, false), refBPE(vocab, refGPT2, false, text); !equalInts(got, want) {
			t.Fatalf("Encode(%q)\n got %v\nwant %v", text, got, want)
		}
	}
}

// hfJSONOf writes a BPE as a minimal Hugging Face tokenizer.json.
func hfJSONOf(tb testing.TB, tk *BPE) []byte {
	tb.Helper()
	vocab := map[string]int{}
	var added []map[string]any
	for id := range tk.VocabSize() {
		switch tk.Type(id) {
		case TypeControl, TypeUserDefined:
			added = append(added, map[string]any{"id": id, "content": tk.Piece(id), "special": tk.Type(id) == TypeControl})
		default:
			vocab[tk.Piece(id)] = id
		}
	}
	pre := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}
	if tk.Options().Pre == PreLlama3 {
		pre = map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": Llama3Pattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
		}}
	}
	var post any
	if tk.BOS() >= 0 && tk.Options().AddBOS {
		post = map[string]any{"type": "TemplateProcessing", "single": []any{
			map[string]any{"SpecialToken": map[string]any{"id": tk.Piece(tk.BOS()), "type_id": 0}},
			map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
		}}
	}
	data, err := json.Marshal(map[string]any{
		"version": "1.0", "added_tokens": added, "normalizer": nil, "pre_tokenizer": pre, "post_processor": post,
		"decoder": map[string]any{"type": "ByteLevel"},
		"model":   map[string]any{"type": "BPE", "vocab": vocab, "merges": tk.Merges(), "ignore_merges": tk.Options().IgnoreMerges},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

func TestFromHuggingFace(t *testing.T) {
	for _, pre := range []Pretokenizer{PreLlama3, PreGPT2} {
		tk := synthBPE(t, pre)
		config := fmt.Sprintf(`{"add_bos_token": true, "bos_token": {"content": "<|bos|>"}, "eos_token": "<|eos|>", "chat_template": %q}`, "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}")
		back, err := FromHuggingFace(hfJSONOf(t, tk), []byte(config))
		if err != nil {
			t.Fatal(err)
		}
		if back.VocabSize() != tk.VocabSize() || back.BOS() != tk.BOS() || back.EOS() != tk.EOS() || back.Options().Pre != pre || !back.Options().AddBOS {
			t.Fatalf("%v: read back vocab %d BOS %d EOS %d options %+v", pre, back.VocabSize(), back.BOS(), back.EOS(), back.Options())
		}
		if !strings.HasPrefix(back.ChatTemplate(), "{{ bos_token }}") {
			t.Errorf("chat template %q not kept", back.ChatTemplate())
		}
		for _, s := range bpeGoldenCases {
			if a, b := tk.EncodeSpecial(s, true, true), back.EncodeSpecial(s, true, true); !equalInts(a, b) {
				t.Errorf("%v: %q: %v before, %v after tokenizer.json", pre, s, a, b)
			}
		}
		// Without a config, the post-processor gives BOS.
		noConfig, err := FromHuggingFace(hfJSONOf(t, tk), nil)
		if err != nil {
			t.Fatal(err)
		}
		if noConfig.BOS() != tk.BOS() || noConfig.EOS() != -1 {
			t.Errorf("without tokenizer_config.json: BOS %d EOS %d, want %d -1", noConfig.BOS(), noConfig.EOS(), tk.BOS())
		}
	}
}

func TestFromHuggingFaceErrors(t *testing.T) {
	good := hfJSONOf(t, synthBPE(t, PreLlama3))
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	model := func(m map[string]any) map[string]any { return m["model"].(map[string]any) }
	cases := []struct {
		name   string
		data   []byte
		config string
		want   string
	}{
		{"not json", []byte("{"), "", "tokenizer.json"},
		{"unigram", edit(func(m map[string]any) { model(m)["type"] = "Unigram" }), "", "model type \"Unigram\""},
		{"byte fallback", edit(func(m map[string]any) { model(m)["byte_fallback"] = true }), "", "SentencePiece-style"},
		{"regex", edit(func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `\w+`}, "behavior": "Isolated"}
		}), "", "not supported"},
		{"no pre-tokenizer", edit(func(m map[string]any) { m["pre_tokenizer"] = nil }), "", "pre_tokenizer"},
		{"prefix space", edit(func(m map[string]any) {
			m["pre_tokenizer"] = map[string]any{"type": "ByteLevel", "add_prefix_space": true}
		}), "", "add_prefix_space"},
		{"bad merge", edit(func(m map[string]any) { model(m)["merges"] = []string{"a b", "zzz qqq"} }), "", "not in the vocabulary"},
		{"merge no space", edit(func(m map[string]any) { model(m)["merges"] = []string{"ab"} }), "", "separated by a space"},
		{"id gap", edit(func(m map[string]any) { model(m)["vocab"].(map[string]any)["Ġextra"] = 1 << 30 }), "", "out of range"},
		{"id clash", edit(func(m map[string]any) { model(m)["vocab"].(map[string]any)["Ġextra"] = 5 }), "", "both have id 5"},
		{"missing byte", edit(func(m map[string]any) {
			v := model(m)["vocab"].(map[string]any)
			delete(v, "!")
			v["Ġextra"] = '!'
			model(m)["merges"] = []string{}
		}), "", "no token for byte 0x21"},
		{"bad config", good, "[", "tokenizer_config.json"},
		{"unknown bos", good, `{"bos_token": "<nope>"}`, "BOS token \"<nope>\""},
		{"bad template", good, `{"chat_template": 5}`, "chat_template"},
	}
	for _, c := range cases {
		var config []byte
		if c.config != "" {
			config = []byte(c.config)
		}
		_, err := FromHuggingFace(c.data, config)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestFromGPT2FilesErrors(t *testing.T) {
	cases := []struct{ enc, bpe, want string }{
		{"[", "", "encoder.json"},
		{`{"a": 0}`, "a b c\n", "vocab.bpe line 1"},
		{`{"a": 3}`, "", "out of range"},
	}
	for _, c := range cases {
		_, err := FromGPT2Files([]byte(c.enc), []byte(c.bpe), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q %q: err = %v, want one containing %q", c.enc, c.bpe, err, c.want)
		}
	}
}

// FuzzBPERoundTrip checks with a synthetic Llama 3 style vocabulary (and
// the real Llama 3.2 one when the data kit has it) that
// any text encodes without panicking into ids of the vocabulary that decode
// back to the same bytes, and that the encoder agrees with the reference.
func FuzzBPERoundTrip(f *testing.F) {
	tk := synthBPE(f, PreLlama3)
	vocab := rawVocab(tk)
	// With the data kit, the Llama 3.2 vocabulary too.
	var l3vocab map[string]int
	l3, err := llama3Once()
	if err == nil {
		l3vocab = rawVocab(l3)
	} else {
		l3 = nil
	}
	for _, s := range bpeGoldenCases {
		f.Add(s)
	}
	f.Add("a<|bos|>b<tool>\xff")
	f.Fuzz(func(t *testing.T, s string) {
		ids := tk.EncodeSpecial(s, true, true)
		for _, id := range ids {
			if id < 0 || id >= tk.VocabSize() {
				t.Fatalf("id %d outside the vocabulary", id)
			}
		}
		if got := tk.Decode(ids[1 : len(ids)-1]); got != s {
			t.Fatalf("Decode(EncodeSpecial(%q)) = %q", s, got)
		}
		if strings.Contains(s, "<tool>") {
			return
		}
		ids = tk.Encode(s, false, false)
		if got := tk.Decode(ids); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
		if utf8.ValidString(s) {
			if want := refBPE(vocab, refLlama3, true, s); !equalInts(ids, want) {
				t.Fatalf("Encode(%q) = %v, reference %v", s, ids, want)
			}
		}
		if l3 != nil {
			ids := l3.Encode(s, false, false)
			if got := l3.Decode(ids); got != s {
				t.Fatalf("Llama 3: Decode(Encode(%q)) = %q", s, got)
			}
			if want := refBPE(l3vocab, refLlama3, true, s); !equalInts(ids, want) {
				t.Fatalf("Llama 3: Encode(%q) = %v, reference %v", s, ids, want)
			}
		}
	})
}

// FuzzFromHuggingFace checks that any tokenizer.json and config bytes give
// a tokenizer or an error, never a panic, and that a tokenizer it returns
// encodes and decodes.
func FuzzFromHuggingFace(f *testing.F) {
	good := hfJSONOf(f, synthBPE(f, PreLlama3))
	f.Add(good, []byte(`{"bos_token": "<|bos|>", "chat_template": "x"}`))
	f.Add(hfJSONOf(f, synthBPE(f, PreGPT2)), []byte(nil))
	f.Add(good[:len(good)/2], []byte(nil))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"pre_tokenizer":{"type":"ByteLevel"}}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, data, config []byte) {
		tk, err := FromHuggingFace(data, config)
		if err != nil {
			return
		}
		s := "Hello wörld \xff 中文  \t😀\n<|bos|>"
		if got := tk.Decode(tk.Encode(s, true, true)); !strings.Contains(got, "Hello wörld \xff 中文  \t😀\n") {
			t.Fatalf("round trip gives %q", got)
		}
		tk.EncodeSpecial(s, true, true)
	})
}

// FuzzFromGPT2Files does the same for encoder.json + vocab.bpe.
func FuzzFromGPT2Files(f *testing.F) {
	tk := synthBPE(f, PreGPT2)
	enc := map[string]int{}
	for id := range tk.VocabSize() - 3 {
		enc[tk.Piece(id)] = id
	}
	encJSON, err := json.Marshal(enc)
	if err != nil {
		f.Fatal(err)
	}
	bpe := "#version: 0.2\n" + strings.Join(tk.Merges(), "\n") + "\n"
	f.Add(encJSON, []byte(bpe))
	f.Add(encJSON, []byte(bpe[:len(bpe)/2]))
	f.Add([]byte(`{"a":0}`), []byte("a a\n"))
	f.Fuzz(func(t *testing.T, encoder, merges []byte) {
		tk, err := FromGPT2Files(encoder, merges, nil)
		if err != nil {
			return
		}
		s := "Hello wörld \xff 中文  \t😀\n"
		if got := tk.Decode(tk.Encode(s, false, false)); got != s {
			t.Fatalf("round trip gives %q", got)
		}
	})
}
