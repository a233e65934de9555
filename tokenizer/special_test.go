package tokenizer

import (
	"slices"
	"testing"
)

func TestSPMEncodeSpecial(t *testing.T) {
	tk := loadTok512(t)
	text := "Hi<s> there</s><unk>x"
	plain := tk.Encode(text, false, false)
	for _, id := range plain {
		if tk.Type(id) == TypeControl || tk.Type(id) == TypeUnknown {
			t.Fatalf("Encode(%q) = %v: a special piece was parsed from user text", text, plain)
		}
	}
	got := tk.EncodeSpecial(text, true, true)
	var want []int
	want = append(want, tk.BOS())
	want = append(want, tk.Encode("Hi", false, false)...)
	want = append(want, 1)
	want = append(want, tk.Encode(" there", false, false)...)
	want = append(want, 2, 0)
	want = append(want, tk.Encode("x", false, false)...)
	want = append(want, tk.EOS())
	if !slices.Equal(got, want) {
		t.Errorf("EncodeSpecial(%q)\n got %v\nwant %v", text, got, want)
	}
	if got := tk.EncodeSpecial("no specials here", false, false); !slices.Equal(got, tk.Encode("no specials here", false, false)) {
		t.Errorf("EncodeSpecial without specials differs from Encode: %v", got)
	}
}

func TestEncodeBatch(t *testing.T) {
	for _, tok := range []Tokenizer{loadTok512(t), synthBPE(t, PreLlama3)} {
		texts := append(randomTexts(9, 300), goldenCases...)
		texts = append(texts, "<s>x</s>", "<|bos|>y")
		for _, threads := range []int{0, 1, 3} {
			for _, special := range []bool{false, true} {
				got := EncodeBatch(tok, texts, true, false, special, threads)
				for i, s := range texts {
					want := tok.Encode(s, true, false)
					if special {
						want = tok.(SpecialEncoder).EncodeSpecial(s, true, false)
					}
					if !slices.Equal(got[i], want) {
						t.Fatalf("threads %d special %v: text %d %q: %v, want %v", threads, special, i, s, got[i], want)
					}
				}
			}
		}
	}
	if got := EncodeBatch(loadTok512(t), nil, true, false, false, 4); len(got) != 0 {
		t.Errorf("empty batch gave %v", got)
	}
}

func TestLlama2cVocabSize(t *testing.T) {
	data := llama2cFile(5, []string{"<unk>", "\n<s>\n", "\n</s>\n", "a", " a"}, []float32{0, 0, 0, -1, -2})
	if n, err := Llama2cVocabSize(data); err != nil || n != 5 {
		t.Errorf("Llama2cVocabSize = %d, %v; want 5", n, err)
	}
	for _, bad := range [][]byte{data[:2], data[:len(data)-1], append(append([]byte{}, data...), 1, 2, 3)} {
		if _, err := Llama2cVocabSize(bad); err == nil {
			t.Errorf("Llama2cVocabSize(%d bytes) gave no error", len(bad))
		}
	}
}
