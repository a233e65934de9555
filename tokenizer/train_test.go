package tokenizer

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"
)

func trainText(tb testing.TB) string {
	tb.Helper()
	return strings.Repeat(synthText(tb)+"\n", 2)
}

// naiveMerges is the obviously-correct trainer the incremental one is
// checked against: every step recounts all pairs of all words.
func naiveMerges(words map[string]int64, opt TrainOptions, required []string, n int) []string {
	tr := &trainer{opt: opt, scripts: map[rune]int{}}
	inAlphabet := map[string]bool{}
	for _, c := range required {
		inAlphabet[c] = true
	}
	type word struct {
		syms []string
		f    int64
	}
	var ws []word
	for w, f := range words {
		var syms []string
		for _, c := range w {
			syms = append(syms, string(c))
		}
		ws = append(ws, word{syms, f})
	}
	made := map[string]bool{}
	dead := map[[2]string]bool{}
	var out []string
	for len(out) < n {
		count := map[[2]string]int64{}
		for _, w := range ws {
			for i := 0; i+1 < len(w.syms); i++ {
				a, b := w.syms[i], w.syms[i+1]
				if (len([]rune(a)) == 1 && !inAlphabet[a]) || (len([]rune(b)) == 1 && !inAlphabet[b]) || dead[[2]string{a, b}] || !tr.valid(a+b) {
					continue
				}
				count[[2]string{a, b}] += w.f
			}
		}
		var best [2]string
		var bestN int64
		for p, c := range count {
			bp, pp := best[0]+best[1], p[0]+p[1]
			lb, lp := utf8.RuneCountInString(bp), utf8.RuneCountInString(pp)
			if c > bestN || c == bestN && (lp < lb || lp == lb && pp < bp) {
				best, bestN = p, c
			}
		}
		if bestN == 0 {
			break
		}
		dead[best] = true
		piece := best[0] + best[1]
		if made[piece] {
			continue
		}
		made[piece] = true
		out = append(out, piece)
		for k, w := range ws {
			var syms []string
			for i := 0; i < len(w.syms); i++ {
				if i+1 < len(w.syms) && w.syms[i] == best[0] && w.syms[i+1] == best[1] {
					syms = append(syms, piece)
					i++
					continue
				}
				syms = append(syms, w.syms[i])
			}
			ws[k].syms = syms
		}
	}
	return out
}

func TestTrainMatchesNaive(t *testing.T) {
	for _, opt := range []TrainOptions{
		{VocabSize: 700, ByteFallback: true},
		{VocabSize: 300, CharacterCoverage: 0.98, NoSplitDigits: true, MaxPieceLength: 5},
	} {
		text := trainText(t)
		tk, st, err := Train(strings.NewReader(text), opt)
		if err != nil {
			t.Fatal(err)
		}
		var stats TrainStats
		words, err := countWords(strings.NewReader(text), opt, &stats)
		if err != nil {
			t.Fatal(err)
		}
		var required []string
		merged := []string{}
		for id := range tk.VocabSize() {
			if tk.Type(id) != TypeNormal {
				continue
			}
			if len(merged) < st.Merges {
				merged = append(merged, tk.Piece(id))
			} else {
				required = append(required, tk.Piece(id))
			}
		}
		if want := naiveMerges(words, withDefaults(opt), required, st.Merges); !slices.Equal(merged, want) {
			for i := range min(len(merged), len(want)) {
				if merged[i] != want[i] {
					t.Fatalf("merge %d: %q, naive %q", i, merged[i], want[i])
				}
			}
			t.Fatalf("%d merges, naive %d", len(merged), len(want))
		}
	}
}

func withDefaults(opt TrainOptions) TrainOptions {
	if opt.MaxPieceLength == 0 {
		opt.MaxPieceLength = 16
	}
	return opt
}

func TestTrainVocabulary(t *testing.T) {
	text := trainText(t)
	opt := TrainOptions{VocabSize: 700, ByteFallback: true, UserSymbols: []string{"<tool>", "Lily"}}
	tk, st, err := Train(strings.NewReader(text), opt)
	if err != nil {
		t.Fatal(err)
	}
	if tk.VocabSize() != 700 {
		t.Fatalf("vocab %d", tk.VocabSize())
	}
	want := []struct {
		id    int
		piece string
		ty    Type
	}{{0, "<unk>", TypeUnknown}, {1, "<s>", TypeControl}, {2, "</s>", TypeControl}, {3, "<tool>", TypeUserDefined}, {4, "Lily", TypeUserDefined}, {5, "<0x00>", TypeByte}, {260, "<0xFF>", TypeByte}}
	for _, w := range want {
		if tk.Piece(w.id) != w.piece || tk.Type(w.id) != w.ty {
			t.Errorf("piece %d = %q %v, want %q %v", w.id, tk.Piece(w.id), tk.Type(w.id), w.piece, w.ty)
		}
	}
	prev := float32(1)
	for id := 261; id < tk.VocabSize(); id++ {
		p := tk.Piece(id)
		if tk.Type(id) != TypeNormal || tk.Score(id) >= prev {
			t.Fatalf("piece %d %q: type %v score %g after %g", id, p, tk.Type(id), tk.Score(id), prev)
		}
		prev = tk.Score(id)
		if strings.Contains(strings.TrimLeft(p, spaceSymbol), spaceSymbol) && strings.Trim(p, spaceSymbol) != "" {
			t.Errorf("piece %q has '▁' inside", p)
		}
		if strings.ContainsAny(p, "0123456789") && utf8.RuneCountInString(p) > 1 {
			t.Errorf("piece %q joins a digit", p)
		}
		if strings.Contains(p, "Lily") || strings.Contains(p, "<tool>") {
			t.Errorf("piece %q contains a user symbol", p)
		}
	}
	if st.Merges+st.RequiredChars+261 != 700 {
		t.Errorf("stats %+v", st)
	}
	again, _, err := Train(strings.NewReader(text), opt)
	if err != nil {
		t.Fatal(err)
	}
	sameVocabulary(t, tk, again)
	back, err := FromModelProto(tk.MarshalModelProto())
	if err != nil {
		t.Fatal(err)
	}
	sameVocabulary(t, tk, back)
	for _, s := range append(goldenCases, "Lily met <tool> Lily") {
		if !utf8.ValidString(s) || strings.Contains(s, spaceSymbol) {
			continue
		}
		if got := tk.Decode(tk.Encode(s, true, false)); got != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, got)
		}
	}
}

func TestTrainErrors(t *testing.T) {
	text := trainText(t)
	for _, c := range []struct {
		text string
		opt  TrainOptions
		want string
	}{
		{text, TrainOptions{VocabSize: 200, ByteFallback: true}, "leaves no room"},
		{text, TrainOptions{VocabSize: 270, ByteFallback: true}, "smaller than"},
		{"", TrainOptions{VocabSize: 100}, "no text"},
		{"ab ab ab", TrainOptions{VocabSize: 100}, "lower --vocab-size to at most"},
		{text, TrainOptions{VocabSize: 100, CharacterCoverage: 2}, "coverage"},
		{text, TrainOptions{VocabSize: 100, UserSymbols: []string{"x", "x"}}, "given twice"},
		{text, TrainOptions{VocabSize: 100, UserSymbols: []string{"<s>"}}, "given twice"},
	} {
		_, _, err := Train(strings.NewReader(c.text), c.opt)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want one containing %q", c.opt, err, c.want)
		}
	}
}

// TestTrainOracle trains on TinyStories and checks that sentencepiece
// loads the .model and encodes as herd does.
func TestTrainOracle(t *testing.T) {
	needOracle(t)
	data, err := os.ReadFile(tinyStoriesPath)
	if err != nil {
		t.Skipf("TinyStories head not available: %v", err)
	}
	sizes := []int{512, 4096}
	n := 2000
	if testing.Short() {
		sizes, n = sizes[:1], 300
	}
	val := strings.Split(strings.TrimSpace(string(data)), "\n")
	for _, size := range sizes {
		for _, bf := range []bool{true, false} {
			tk, _, err := Train(strings.NewReader(string(data)), TrainOptions{VocabSize: size, ByteFallback: bf})
			if err != nil {
				t.Fatal(err)
			}
			model := filepath.Join(t.TempDir(), "ts.model")
			if err := os.WriteFile(model, tk.MarshalModelProto(), 0o644); err != nil {
				t.Fatal(err)
			}
			texts := append(randomTexts(uint64(size), n), val[:min(len(val), n)]...)
			diffEncode(t, tk, model, texts)
		}
	}
}

func TestExtend(t *testing.T) {
	base := loadTok512(t)
	add, _, err := Train(strings.NewReader(strings.Repeat("中文字符测试，你好世界。我们今天去公园散步吧！the cat\n", 3)), TrainOptions{VocabSize: 40, CharacterCoverage: 1})
	if err != nil {
		t.Fatal(err)
	}
	merged, added, err := Extend(base, add)
	if err != nil {
		t.Fatal(err)
	}
	if merged.VocabSize() != base.VocabSize()+added || added == 0 {
		t.Fatalf("added %d: %d → %d", added, base.VocabSize(), merged.VocabSize())
	}
	for id := range base.VocabSize() {
		if merged.Piece(id) != base.Piece(id) || merged.Score(id) != base.Score(id) || merged.Type(id) != base.Type(id) {
			t.Fatalf("id %d changed", id)
		}
	}
	var want []string
	for id := range add.VocabSize() {
		if p := add.Piece(id); add.Type(id) == TypeNormal && base.PieceID(p) < 0 {
			want = append(want, p)
		}
	}
	var got []string
	for id := base.VocabSize(); id < merged.VocabSize(); id++ {
		if merged.Score(id) != 0 || merged.Type(id) != TypeNormal {
			t.Errorf("appended piece %d %q: score %g type %v", id, merged.Piece(id), merged.Score(id), merged.Type(id))
		}
		got = append(got, merged.Piece(id))
	}
	if !slices.Equal(got, want) {
		t.Errorf("appended %q, want %q", got, want)
	}
	zh := "我们今天去公园散步吧！"
	if b, m := len(base.Encode(zh, false, false)), len(merged.Encode(zh, false, false)); m >= b {
		t.Errorf("Chinese text: %d tokens with the merged vocabulary, %d without", m, b)
	}
	if merged.Decode(merged.Encode(zh, false, false)) != zh {
		t.Errorf("round trip failed")
	}
	// The merged .model encodes in sentencepiece as in herd.
	if testing.Short() {
		return
	}
	needOracle(t)
	texts := append(randomTexts(77, 500), zh, "the cat 中文 你好")
	sort.Strings(texts)
	diffEncode(t, merged, writeModel(t, merged), texts)
}

func TestLessConcat(t *testing.T) {
	parts := []string{"", "a", "ab", "b", "abc", "▁", "▁a", "中", "中文"}
	for _, a1 := range parts {
		for _, a2 := range parts {
			for _, b1 := range parts {
				for _, b2 := range parts {
					if got, want := lessConcat(a1, a2, b1, b2), a1+a2 < b1+b2; got != want {
						t.Fatalf("lessConcat(%q, %q, %q, %q) = %v", a1, a2, b1, b2, got)
					}
				}
			}
		}
	}
}

// FuzzTrain checks that any text trains into a vocabulary or an error,
// never a panic, and that the vocabulary survives a .model round trip and
// spells the text back.
func FuzzTrain(f *testing.F) {
	f.Add("Once upon a time\nthere was a cat 123\n", 300, true)
	f.Add("中文字符测试 你好\n\xff\xfe bytes\n", 280, false)
	f.Add("   \n\t\t\n", 270, true)
	f.Fuzz(func(t *testing.T, text string, size int, bf bool) {
		if size < 0 || size > 2000 || len(text) > 1<<16 {
			return
		}
		tk, _, err := Train(strings.NewReader(text), TrainOptions{VocabSize: size, ByteFallback: bf, CharacterCoverage: 1})
		if err != nil {
			return
		}
		back, err := FromModelProto(tk.MarshalModelProto())
		if err != nil {
			t.Fatalf("reading the trained model back: %v", err)
		}
		for _, line := range strings.Split(text, "\n") {
			if a, b := tk.Encode(line, true, false), back.Encode(line, true, false); !slices.Equal(a, b) {
				t.Fatalf("%q: %v before the round trip, %v after", line, a, b)
			}
		}
	})
}
