package data

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/tokenizer"
)

const sentence = "The little cat sat by the window and watched the rain fall on the garden. "

// TestPrepareBinaryAndDefects checks that a random binary file is dropped
// as binary (it was kept as one 200 KB document), and that documents with
// NUL bytes or invalid UTF-8 are kept, repaired and counted, in text and
// in JSONL (whose decoder replaced invalid UTF-8 silently).
func TestPrepareBinaryAndDefects(t *testing.T) {
	dir := t.TempDir()
	junk := make([]byte, 200<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range junk {
		junk[i] = byte(rng.IntN(256))
	}
	write(t, filepath.Join(dir, "bin", "blob.txt"), junk)
	write(t, filepath.Join(dir, "bin", "nul.txt"), []byte(strings.Repeat(sentence, 4)+"\x00"+sentence))
	write(t, filepath.Join(dir, "bin", "latin1.txt"), []byte(strings.Repeat(sentence, 3)+"caf\xe9 "+sentence))
	write(t, filepath.Join(dir, "rows.jsonl"), append(jsonl(sentence+" one", sentence+"\x00 two"),
		[]byte(`{"text": "`+sentence+` caf`+"\xe9"+` three"}`+"\n"+`{"text": "`+sentence+` four \udc00"}`+"\n")...))
	r := Recipe{Sources: []Source{
		{Name: "files", Paths: []string{filepath.Join(dir, "bin")}},
		{Name: "rows", Paths: []string{filepath.Join(dir, "rows.jsonl")}},
	}}
	var log bytes.Buffer
	man, err := Prepare(r, tok512(t), filepath.Join(dir, "out"), PrepareOptions{Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	f, rows := man.Stats.Sources[0], man.Stats.Sources[1]
	if f.Docs != 3 || f.Kept != 2 || f.Dropped[ReasonBinary] != 1 || f.NULDocs != 1 || f.InvalidUTF8Docs != 1 {
		t.Errorf("files: %+v; want 3 read, 2 kept, 1 binary, 1 with NUL, 1 with invalid UTF-8", f)
	}
	if rows.Docs != 4 || rows.Kept != 4 || rows.NULDocs != 1 || rows.InvalidUTF8Docs != 2 {
		t.Errorf("rows: %+v; want 4 read and kept, 1 with NUL, 2 with invalid UTF-8 (a byte, a lone surrogate escape)", rows)
	}
	for _, want := range []string{"binary", "had_nul", "bad_utf8"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, log.String())
		}
	}
	// turned off, the blob is kept
	r.Clean.MaxBinaryFraction = 1
	man, err = Prepare(r, tok512(t), filepath.Join(dir, "out2"), PrepareOptions{})
	if err != nil || man.Stats.Sources[0].Kept != 3 {
		t.Errorf("max_binary_fraction 1: %v, %+v", err, man.Stats.Sources[0])
	}
}

// TestPrepareTooLong checks that documents and JSONL rows over
// max_doc_bytes are dropped and counted before they are cleaned or
// tokenized (a 100 MB document cost 1.6 GB), in every kind of input, and
// that skipping one allocates far less than its size.
func TestPrepareTooLong(t *testing.T) {
	dir := t.TempDir()
	const limit, size = 1 << 20, 16 << 20
	huge := strings.Repeat(sentence, size/len(sentence))
	write(t, filepath.Join(dir, "file", "huge.txt"), []byte(huge))
	write(t, filepath.Join(dir, "file", "small.txt"), []byte(sentence))
	write(t, filepath.Join(dir, "lines.txt"), []byte(sentence+"\n"+huge+"\n"+sentence+" again\n"))
	write(t, filepath.Join(dir, "rows.jsonl"), jsonl(sentence, huge, sentence+" again"))
	r := Recipe{Sources: []Source{
		{Name: "file", Paths: []string{filepath.Join(dir, "file")}},
		{Name: "lines", Paths: []string{filepath.Join(dir, "lines.txt")}, Split: "line"},
		{Name: "rows", Paths: []string{filepath.Join(dir, "rows.jsonl")}},
	}, Clean: Clean{MaxDocBytes: limit, NoDedup: true}, Workers: 1}
	var log bytes.Buffer
	man, err := Prepare(r, tok512(t), filepath.Join(dir, "out"), PrepareOptions{Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{1, 2, 2} {
		st := man.Stats.Sources[i]
		if st.Dropped[ReasonTooLong] != 1 || st.Kept != want {
			t.Errorf("%s: %+v; want 1 too long and %d kept", st.Name, st, want)
		}
	}
	if !strings.Contains(log.String(), "too_long") {
		t.Errorf("the report lacks too_long:\n%s", log.String())
	}
	// skipping allocates about the limit, not the document
	for _, src := range r.Sources {
		one := Recipe{Sources: []Source{src}, Clean: r.Clean, Workers: 1}
		one.Sources[0].Paths = []string{filepath.Join(dir, "file", "huge.txt")}
		if src.Name != "file" {
			one.Sources[0].Paths = src.Paths
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := Prepare(one, tok512(t), filepath.Join(dir, "out-"+src.Name), PrepareOptions{})
		runtime.ReadMemStats(&after)
		if src.Name == "file" {
			if err == nil || !strings.Contains(err.Error(), "no documents left") {
				t.Errorf("a source of one huge document: %v", err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		// lines: the file is read whole to be split (its bytes, grown by
		// doubling, and one string of them)
		budget := uint64(8 << 20)
		if src.Split == "line" {
			budget = 5 * size
		}
		if alloc > budget {
			t.Errorf("%s: skipping a %d-byte document allocated %d bytes", src.Name, size, alloc)
		}
	}
	if err := (&Clean{MaxDocBytes: -1}).check(); err == nil {
		t.Error("a negative max_doc_bytes accepted")
	}
}

// TestPrepareValEmptiedByDedup checks that a validation file that repeats
// training text, which deduplication empties, gives a warning that says
// why (it was a silent "0 val shards").
func TestPrepareValEmptiedByDedup(t *testing.T) {
	dir := t.TempDir()
	docs := []string{sentence + "one", sentence + "two", sentence + "three"}
	write(t, filepath.Join(dir, "train.jsonl"), jsonl(docs...))
	write(t, filepath.Join(dir, "val.jsonl"), jsonl(docs[1:]...))
	r := Recipe{Sources: []Source{
		{Name: "train", Paths: []string{filepath.Join(dir, "train.jsonl")}},
		{Name: "val0", Paths: []string{filepath.Join(dir, "val.jsonl")}, Val: true},
	}}
	var log bytes.Buffer
	man, err := Prepare(r, tok512(t), filepath.Join(dir, "out"), PrepareOptions{Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"warning: the validation split is empty", "val0: 2 of 2 documents dropped (exact_duplicate 2)", "--no-dedup"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, log.String())
		}
	}
	if len(man.Warnings) != 1 {
		t.Errorf("manifest warnings %q", man.Warnings)
	}
	// with distinct validation text there is no warning
	write(t, filepath.Join(dir, "val.jsonl"), jsonl(sentence+"four"))
	log.Reset()
	if _, err := Prepare(r, tok512(t), filepath.Join(dir, "out2"), PrepareOptions{Log: &log}); err != nil || strings.Contains(log.String(), "warning") {
		t.Errorf("distinct validation text: %v\n%s", err, log.String())
	}
}

// TestPrepareBPE checks that a byte-level BPE tokenizer (what a directory
// of encoder.json + vocab.bpe loads as) prepares data, stored beside the
// shards as a vocabulary-only tokenizer.gguf that reads back the same.
func TestPrepareBPE(t *testing.T) {
	var tokens []string
	for b := range 256 {
		tokens = append(tokens, tokenizer.ByteLevel(string([]byte{byte(b)})))
	}
	merges := []string{"Ġ t", "h e", "Ġt he", "a t", "Ġ c", "Ġc at"}
	for _, m := range merges {
		tokens = append(tokens, strings.Replace(m, " ", "", 1))
	}
	tokens = append(tokens, "<|endoftext|>")
	types := make([]tokenizer.Type, len(tokens))
	for i := range types {
		types[i] = tokenizer.TypeNormal
	}
	types[len(types)-1] = tokenizer.TypeControl
	n := len(tokens)
	tok, err := tokenizer.NewBPE(tokens, types, merges, tokenizer.BPEOptions{Pre: tokenizer.PreGPT2, BOS: n - 1, EOS: n - 1})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.txt"), []byte(strings.Repeat(sentence, 3)))
	out := filepath.Join(dir, "out")
	man, err := Prepare(Recipe{Sources: []Source{{Name: "a", Paths: []string{filepath.Join(dir, "a.txt")}}}}, tok, out, PrepareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if man.Tokenizer.File != "tokenizer.gguf" || man.Tokenizer.Vocab != n {
		t.Fatalf("tokenizer %+v", man.Tokenizer)
	}
	back, err := checkpoint.OpenTokenizer(filepath.Join(out, man.Tokenizer.File), 0)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.TrimSpace(strings.Repeat(sentence, 3)) // as cleaning leaves it
	a, b := tok.Encode(text, true, false), back.Encode(text, true, false)
	if len(a) != len(b) || int64(len(a)) != man.TrainTokens {
		t.Fatalf("%d tokens, read back %d, in the shards %d", len(a), len(b), man.TrainTokens)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("token %d: %d, read back %d", i, a[i], b[i])
		}
	}
	if _, err := os.Stat(filepath.Join(out, "tokenizer.model")); err == nil {
		t.Error("a tokenizer.model was written for a BPE vocabulary")
	}
}

// TestPrepareBOM checks that a UTF-8 byte-order mark opening a text or a
// JSONL file is not part of the first document (in JSONL it made line 1
// "not a JSON object").
func TestPrepareBOM(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.txt"), []byte("\ufeff"+sentence))
	write(t, filepath.Join(dir, "b.jsonl"), append([]byte("\ufeff"), jsonl(sentence+"two")...))
	tok := tok512(t)
	out := filepath.Join(dir, "out")
	man, err := Prepare(Recipe{Sources: []Source{{Name: "s", Paths: []string{filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.jsonl")}}}}, tok, out, PrepareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range splitDocs(t, out, man.Train, tok) {
		if !strings.HasPrefix(d, "The little cat") {
			t.Errorf("document %q does not start with its text", d)
		}
	}
}
