package tokenizer

import (
	"os"
	"strings"
	"testing"
)

const openLlamaModelPath = "/work/shared/data/tokenizers/open_llama_3b-tokenizer.model"

func sameVocabulary(t *testing.T, a, b *SPM) {
	t.Helper()
	if a.VocabSize() != b.VocabSize() || a.Options() != b.Options() {
		t.Fatalf("vocab %d options %+v vs vocab %d options %+v", a.VocabSize(), a.Options(), b.VocabSize(), b.Options())
	}
	for id := range a.VocabSize() {
		if a.Piece(id) != b.Piece(id) || a.Score(id) != b.Score(id) || a.Type(id) != b.Type(id) {
			t.Fatalf("piece %d: %q %v %v vs %q %v %v", id, a.Piece(id), a.Score(id), a.Type(id), b.Piece(id), b.Score(id), b.Type(id))
		}
	}
}

func TestModelProtoRoundTrip(t *testing.T) {
	tk := loadTok512(t)
	back, err := FromModelProto(tk.MarshalModelProto())
	if err != nil {
		t.Fatal(err)
	}
	sameVocabulary(t, tk, back)
	for _, s := range goldenCases {
		if a, b := tk.Encode(s, true, true), back.Encode(s, true, true); !equalInts(a, b) {
			t.Errorf("Encode(%q): %v before the round trip, %v after", s, a, b)
		}
	}
	odd := variant(t, tk, func(p []string, ty []Type, opt *SPMOptions) {
		ty[300], ty[301] = TypeUserDefined, TypeUnused
		opt.AddDummyPrefix, opt.RemoveExtraWhitespaces, opt.BOS, opt.EOS = false, true, -1, 2
	})
	back, err = FromModelProto(odd.MarshalModelProto())
	if err != nil {
		t.Fatal(err)
	}
	sameVocabulary(t, odd, back)
}

// TestModelProtoLlama reads Meta's LLaMA .model and checks it is the
// vocabulary of llama2.c's tokenizer.bin.
func TestModelProtoLlama(t *testing.T) {
	fromBin := loadLlama(t)
	data, err := os.ReadFile(llamaModelPath)
	if err != nil {
		t.Skipf("LLaMA .model not available: %v", err)
	}
	tk, err := FromModelProto(data)
	if err != nil {
		t.Fatal(err)
	}
	sameVocabulary(t, tk, fromBin)
}

// TestDifferentialOpenLlama compares the OpenLLaMA tokenizer, whose model
// removes extra whitespace, with the reference.
func TestDifferentialOpenLlama(t *testing.T) {
	data, err := os.ReadFile(openLlamaModelPath)
	if err != nil {
		t.Skipf("OpenLLaMA .model not available: %v", err)
	}
	needOracle(t)
	tk, err := FromModelProto(data)
	if err != nil {
		t.Fatal(err)
	}
	if o := tk.Options(); !o.RemoveExtraWhitespaces || !o.AddDummyPrefix || !o.ByteFallback {
		t.Errorf("OpenLLaMA options %+v: want extra-whitespace removal, dummy prefix, byte fallback", o)
	}
	n := diffStrings
	if testing.Short() {
		n = 200
	}
	texts := append(randomTexts(5, n), goldenLines()...)
	diffEncode(t, tk, openLlamaModelPath, texts)
	diffDecode(t, tk, openLlamaModelPath, randomIDs(tk, 6, n))
}

func TestFromModelProtoErrors(t *testing.T) {
	good := loadTok512(t).MarshalModelProto()
	trainer := func(fields ...[]byte) []byte {
		var m []byte
		for _, f := range fields {
			m = append(m, f...)
		}
		return appendBytesField(append([]byte(nil), good...), fieldModelTrainer, m)
	}
	normalizer := func(field int, v []byte) []byte {
		return appendBytesField(append([]byte(nil), good...), fieldModelNormalizer, appendBytesField(nil, field, v))
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"unigram", trainer(appendVarintField(nil, fieldTrainerModelType, 1)), "model_type 1"},
		{"suffix", trainer(appendVarintField(nil, fieldTrainerWhitespaceSuffix, 1)), "treat_whitespace_as_suffix"},
		{"nfkc", normalizer(fieldNormCharsmap, []byte{1, 2, 3, 4, 5}), "precompiled charsmap"},
		{"denormalizer", appendBytesField(append([]byte(nil), good...), fieldModelDenormalizer, appendBytesField(nil, fieldNormCharsmap, []byte{1})), "denormalizer"},
		{"escape", append(append([]byte(nil), good...), appendBytesField(nil, fieldModelNormalizer, appendVarintField(nil, fieldNormEscapeSpaces, 0))...), "escape_whitespaces"},
		{"truncated", good[:len(good)-3], "past the end"},
		{"no pieces", appendBytesField(nil, fieldModelTrainer, appendVarintField(nil, fieldTrainerModelType, modelTypeBPE)), "no pieces"},
		{"bad varint", []byte{0x80}, "bad varint"},
		{"field zero", []byte{0x00, 0x01}, "bad field number"},
		{"wire type", []byte{0x0b}, "wire type 3"},
		{"bad type", appendBytesField(append([]byte(nil), good...), fieldModelPieces, appendVarintField(appendBytesField(nil, fieldPiecePiece, []byte("x")), fieldPieceType, 9)), "unknown type 9"},
	}
	for _, c := range cases {
		_, err := FromModelProto(c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one containing %q", c.name, err, c.want)
		}
	}
}
