package tokenizer

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

var tok512Once = sync.OnceValues(func() (*SPM, error) {
	data, err := os.ReadFile("testdata/tok512.bin")
	if err != nil {
		return nil, err
	}
	return FromLlama2c(data, 512)
})

func fuzzTok512(f *testing.F) *SPM {
	tk, err := tok512Once()
	if err != nil {
		f.Fatal(err)
	}
	return tk
}

// FuzzEncode checks, with the tok512 vocabulary, that Encode never panics
// and only emits ids of the vocabulary, and that decoding gives the text
// back as spm would: each invalid UTF-8 byte read as U+FFFD, a literal '▁'
// read as ' ' (the encoder cannot tell it from a space). For valid UTF-8
// without '▁', Decode(Encode(x)) == x exactly, and so is llama2.c-style
// streaming with DecodePiece after BOS.
func FuzzEncode(f *testing.F) {
	tk := fuzzTok512(f)
	for _, s := range goldenCases {
		f.Add(s)
	}
	for _, s := range roundTripCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids := tk.Encode(s, true, false)
		for _, id := range ids {
			if id < 0 || id >= tk.VocabSize() {
				t.Fatalf("Encode(%q) gave id %d outside the vocabulary", s, id)
			}
		}
		want := strings.ReplaceAll(replaceEach(s), spaceSymbol, " ")
		if got := tk.Decode(ids); got != want {
			t.Fatalf("Decode(Encode(%q)) = %q, want %q", s, got, want)
		}
		if !utf8.ValidString(s) || strings.Contains(s, spaceSymbol) {
			return
		}
		var stream bytes.Buffer
		for i := 1; i < len(ids); i++ {
			stream.Write(tk.DecodePiece(ids[i-1], ids[i]))
		}
		if stream.String() != s {
			t.Fatalf("streaming Encode(%q) with DecodePiece gives %q", s, stream.String())
		}
	})
}

// FuzzDecode checks that Decode and DecodePiece accept any ids, in the
// vocabulary or not, and that Decode always returns valid UTF-8.
func FuzzDecode(f *testing.F) {
	tk := fuzzTok512(f)
	f.Add([]byte{1, 147, 0, 2, 200, 255, 3})
	f.Add([]byte{230, 187, 172, 255, 255})
	f.Fuzz(func(t *testing.T, data []byte) {
		ids := make([]int, 0, len(data)/2)
		for i := 0; i+1 < len(data); i += 2 {
			ids = append(ids, (int(data[i])<<8|int(data[i+1]))%(tk.VocabSize()+8)-4)
		}
		if s := tk.Decode(ids); !utf8.ValidString(s) {
			t.Fatalf("Decode(%v) = %q is not valid UTF-8", ids, s)
		}
		prev := -1
		for _, id := range ids {
			tk.DecodePiece(prev, id)
			prev = id
		}
	})
}

// FuzzFromLlama2c checks that any bytes and vocabulary size (given, or
// counted by Llama2cVocabSize) give a tokenizer or an error, never a panic, and that a tokenizer it returns
// works.
func FuzzFromLlama2c(f *testing.F) {
	data, err := os.ReadFile("testdata/tok512.bin")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data, 512)
	f.Add(data[:len(data)/2], 512)
	f.Add(data, 3)
	f.Add(llama2cFile(5, []string{"<unk>", "\n<s>\n", "\n</s>\n", "a", " a"}, []float32{0, 0, 0, -1, -2}), 5)
	f.Fuzz(func(t *testing.T, data []byte, vocab int) {
		if n, err := Llama2cVocabSize(data); err == nil {
			FromLlama2c(data, n) // the size read from the file: a tokenizer or an error
		}
		tk, err := FromLlama2c(data, vocab)
		if err != nil {
			return
		}
		if tk.VocabSize() != vocab {
			t.Fatalf("VocabSize %d, want %d", tk.VocabSize(), vocab)
		}
		ids := tk.Encode("Hello wörld \xff 中文  \t😀", true, true)
		tk.Decode(ids)
		tk.Decode([]int{0, 1, 2, 3, vocab - 1, vocab})
	})
}

// FuzzFromModelProto checks that any bytes give a tokenizer or an error,
// never a panic, and that a tokenizer it returns works and survives a
// MarshalModelProto round trip.
func FuzzFromModelProto(f *testing.F) {
	tk := fuzzTok512(f)
	model := tk.MarshalModelProto()
	f.Add(model)
	f.Add(model[:len(model)/3])
	small, err := NewSPM([]string{"<unk>", "<s>", "</s>", "▁", "a", "▁a"}, []float32{0, 0, 0, -1, -2, -3}, nil, SPMOptions{BOS: 1, EOS: 2, UNK: 0, AddDummyPrefix: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(small.MarshalModelProto())
	f.Fuzz(func(t *testing.T, data []byte) {
		tk, err := FromModelProto(data)
		if err != nil {
			return
		}
		text := "Hello wörld \xff 中文  \t😀"
		ids := tk.Encode(text, true, true)
		tk.Decode(ids)
		again, err := FromModelProto(tk.MarshalModelProto())
		if err != nil {
			t.Fatalf("reading back the marshalled model: %v", err)
		}
		if got := again.Encode(text, true, true); !equalInts(got, ids) {
			t.Fatalf("after a round trip Encode gives %v, before %v", got, ids)
		}
	})
}
