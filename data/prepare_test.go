package data

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/internal/testutil"
	"github.com/herd-llm/herd/tokenizer"
	"github.com/klauspost/compress/zstd"
)

func tok512(t testing.TB) *tokenizer.SPM { return testutil.Tok512(t) }

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func jsonl(docs ...string) []byte {
	var b bytes.Buffer
	for _, d := range docs {
		row, _ := json.Marshal(map[string]any{"text": d, "meta": map[string]string{"source": "test"}})
		b.Write(row)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func gz(b []byte) []byte {
	var o bytes.Buffer
	w := gzip.NewWriter(&o)
	w.Write(b)
	w.Close()
	return o.Bytes()
}

func zst(t *testing.T, b []byte) []byte {
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return w.EncodeAll(b, nil)
}

// readDocs returns the documents of a split, decoded: the runs of tokens
// each opened by BOS.
func splitDocs(t *testing.T, dir string, infos []ShardInfo, tok *tokenizer.SPM) []string {
	t.Helper()
	var docs []string
	for _, si := range infos {
		s, err := OpenShard(filepath.Join(dir, si.File))
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]int, s.Count)
		s.Read(ids, 0)
		s.Close()
		start := -1
		for i, id := range append(ids, tok.BOS()) {
			if id == tok.BOS() {
				if start >= 0 {
					docs = append(docs, tok.Decode(ids[start:i]))
				}
				start = i + 1
			}
		}
	}
	return docs
}

func TestPrepareSources(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	story, err := os.ReadFile("testdata/tinystories.txt")
	if err != nil {
		t.Fatal(err)
	}
	paras := splitParagraphs(string(story))
	// a plain-text file of paragraphs, JSONL plain / gzip / zstd in a
	// directory, and a glob; with an exact duplicate, a near-duplicate, an
	// empty and a control-character document among them
	write(t, filepath.Join(in, "a.txt"), []byte(strings.Join(paras[:10], "\n\n")))
	write(t, filepath.Join(in, "dir", "b.jsonl"), jsonl(paras[10], paras[11], "  ", paras[0]))
	write(t, filepath.Join(in, "dir", "c.jsonl.gz"), gz(jsonl(paras[12], strings.Replace(paras[13], "the", "a", 1))))
	write(t, filepath.Join(in, "dir", "d.jsonl.zst"), zst(t, jsonl(paras[13]+"\x07", paras[14])))
	write(t, filepath.Join(in, "glob1.md"), []byte(paras[15]))
	write(t, filepath.Join(in, "glob2.md"), []byte(paras[16]))
	r := Recipe{
		Sources: []Source{
			{Name: "text", Paths: []string{filepath.Join(in, "a.txt")}, Split: "paragraph"},
			{Name: "jsonl", Paths: []string{filepath.Join(in, "dir")}},
			{Name: "glob", Paths: []string{filepath.Join(in, "glob*.md")}},
		},
		Clean:   Clean{NearDedup: 0.7},
		Workers: 3,
	}
	tok := tok512(t)
	out := filepath.Join(dir, "out")
	var log bytes.Buffer
	man, err := Prepare(r, tok, out, PrepareOptions{Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	st := man.Stats.Sources
	if st[0].Docs != 10 || st[0].Kept != 10 {
		t.Errorf("text source: %+v", st[0])
	}
	// jsonl: 8 docs read; dropped: the empty one, paras[0] (exact), one of
	// the two versions of paras[13] (near; a 1-word edit)
	if st[1].Docs != 8 || st[1].Kept != 5 || st[1].Dropped[ReasonEmpty] != 1 || st[1].Dropped[ReasonExactDup] != 1 || st[1].Dropped[ReasonNearDup] != 1 {
		t.Errorf("jsonl source: %+v", st[1])
	}
	if st[2].Files != 2 || st[2].Kept != 2 {
		t.Errorf("glob source: %+v", st[2])
	}
	for _, want := range []string{"exact_duplicate", "near_duplicate", "MB/s"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, log.String())
		}
	}
	// the shards hold exactly the kept documents, each once, cleaned
	got := splitDocs(t, out, man.Train, tok)
	if len(got) != 17 {
		t.Fatalf("%d documents in the shards, want 17", len(got))
	}
	want := map[string]bool{}
	for i, p := range paras[:17] {
		if i != 13 {
			want[p] = true
		}
	}
	n13 := 0
	for _, d := range got {
		if d == paras[13] || d == strings.Replace(paras[13], "the", "a", 1) {
			n13++
			continue
		}
		if !want[d] {
			t.Errorf("unexpected document %q", d)
		}
		delete(want, d)
	}
	if len(want) != 0 || n13 != 1 {
		t.Errorf("missing documents %v, versions of paragraph 13: %d", want, n13)
	}
	// the manifest reads back and the tokenizer beside it is the same
	m2, err := ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	if m2.TrainTokens != man.TrainTokens || m2.Tokenizer.Vocab != 512 || m2.Stats == nil {
		t.Errorf("manifest read back as %+v", m2)
	}
	tb, _ := os.ReadFile(filepath.Join(out, m2.Tokenizer.File))
	if !bytes.Equal(tb, tok.MarshalModelProto()) {
		t.Error("tokenizer.model differs from the tokenizer")
	}

	// the same output whatever the number of workers
	r.Workers = 1
	out1 := filepath.Join(dir, "out1")
	if _, err := Prepare(r, tok, out1, PrepareOptions{}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(out, "train-00000.bin"))
	b, _ := os.ReadFile(filepath.Join(out1, "train-00000.bin"))
	if !bytes.Equal(a, b) {
		t.Error("1 and 3 workers wrote different shards")
	}
}

func TestPrepareMixtureAndSplit(t *testing.T) {
	dir := t.TempDir()
	// source a: 200 documents, b: 50 documents of the same size
	var a, b []string
	for i := range 200 {
		a = append(a, fmt.Sprintf("story number %d about a cat named Tom who likes fish", i))
	}
	for i := range 50 {
		b = append(b, fmt.Sprintf("story number %d about a dog named Rex who likes bones", i))
	}
	write(t, filepath.Join(dir, "a.jsonl"), jsonl(a...))
	write(t, filepath.Join(dir, "b.jsonl"), jsonl(b...))
	write(t, filepath.Join(dir, "v.txt"), []byte("held out one\nheld out two\n"))
	tok := tok512(t)
	// weights 1:1 with b repeatable twice: T = min(A·2/0.5, B·2/0.5) = 4B,
	// a used 4B·0.5/A = 0.5 times, b twice
	r := Recipe{
		Sources: []Source{
			{Name: "a", Paths: []string{filepath.Join(dir, "a.jsonl")}, Weight: 1},
			{Name: "b", Paths: []string{filepath.Join(dir, "b.jsonl")}, Weight: 1},
			{Name: "v", Paths: []string{filepath.Join(dir, "v.txt")}, Split: "line", Val: true},
		},
		MaxEpochs: 2, ShardTokens: 1000, EOS: true, Seed: 7,
	}
	man, err := Prepare(r, tok, filepath.Join(dir, "out"), PrepareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ma, mb := man.Mixture[0], man.Mixture[1]
	if math.Abs(mb.Epochs-2) > 1e-9 || math.Abs(ma.Epochs-float64(4*mb.Tokens)*0.5/float64(ma.Tokens)) > 1e-9 {
		t.Errorf("epochs a %.3f, b %.3f", ma.Epochs, mb.Epochs)
	}
	if math.Abs(ma.Share-0.5) > 0.06 || math.Abs(mb.Share-0.5) > 0.06 {
		t.Errorf("shares a %.3f, b %.3f, want 0.5 each", ma.Share, mb.Share)
	}
	if len(man.Train) < 2 {
		t.Errorf("%d train shards of at most ~1000 tokens", len(man.Train))
	}
	if man.Mixture[2].ValTokens != man.ValTokens || man.ValTokens == 0 || man.Mixture[2].TrainTokens != 0 {
		t.Errorf("val source: %+v, val tokens %d", man.Mixture[2], man.ValTokens)
	}
	// every document ends with EOS
	s, err := OpenShard(filepath.Join(dir, "out", man.Val[0].File))
	if err != nil {
		t.Fatal(err)
	}
	if s.At(s.Count-1) != tok.EOS() || s.Docs != 2 {
		t.Errorf("val shard: last token %d, %d docs", s.At(s.Count-1), s.Docs)
	}
	s.Close()

	// a validation fraction takes documents from the training sources
	r2 := Recipe{Sources: r.Sources[:1], ValFraction: 0.25, Seed: 3}
	man2, err := Prepare(r2, tok, filepath.Join(dir, "out2"), PrepareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	frac := float64(man2.ValTokens) / float64(man2.ValTokens+man2.TrainTokens)
	if frac < 0.15 || frac > 0.35 {
		t.Errorf("val fraction %.2f of tokens, asked 0.25", frac)
	}
}

func TestPrepareErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "bad.jsonl"), []byte("{\"text\": \"ok\"}\nnot json\n"))
	write(t, filepath.Join(dir, "nofield.jsonl"), []byte("{\"body\": \"ok\"}\n"))
	write(t, filepath.Join(dir, "fake.gz"), []byte("plain"))
	tok := tok512(t)
	for _, c := range []struct {
		src  Source
		want string
	}{
		{Source{Name: "s", Paths: []string{filepath.Join(dir, "bad.jsonl")}}, "bad.jsonl:2"},
		{Source{Name: "s", Paths: []string{filepath.Join(dir, "nofield.jsonl")}}, `no "text" field`},
		{Source{Name: "s", Paths: []string{filepath.Join(dir, "missing.txt")}}, "missing.txt"},
		{Source{Name: "s", Paths: []string{filepath.Join(dir, "*.none")}}, "matches no file"},
		{Source{Name: "s", Paths: []string{filepath.Join(dir, "fake.gz")}}, "not gzip or zstd"},
		{Source{Name: "s", Paths: []string{"x"}, Split: "words"}, "split"},
	} {
		_, err := Prepare(Recipe{Sources: []Source{c.src}}, tok, filepath.Join(dir, "out"), PrepareOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.src, err, c.want)
		}
	}
	two := Recipe{Sources: []Source{{Name: "a", Paths: []string{"x"}, Weight: 1}, {Name: "b", Paths: []string{"y"}}}}
	if err := two.check(); err == nil {
		t.Error("a mixture with one weight missing accepted")
	}
	if _, err := LoadRecipe(filepath.Join(dir, "bad.jsonl")); err == nil {
		t.Error("a non-YAML recipe accepted")
	}
	write(t, filepath.Join(dir, "typo.yaml"), []byte("sources: []\nval_fractoin: 0.1\n"))
	if _, err := LoadRecipe(filepath.Join(dir, "typo.yaml")); err == nil || !strings.Contains(err.Error(), "val_fractoin") {
		t.Errorf("a misspelt key: %v", err)
	}
}

// The documented mixture recipe (the LLaMA paper's) loads and is valid.
func TestLLaMARecipe(t *testing.T) {
	r, err := LoadRecipe("recipes/llama.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.check(); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"commoncrawl": 67, "c4": 15, "github": 4.5, "wikipedia": 4.5, "books": 4.5, "arxiv": 2.5, "stackexchange": 2}
	var sum float64
	for _, s := range r.Sources {
		if want[s.Name] != s.Weight {
			t.Errorf("%s: weight %g, the paper says %g", s.Name, s.Weight, want[s.Name])
		}
		sum += s.Weight
	}
	if len(r.Sources) != len(want) || sum != 100 {
		t.Errorf("%d sources summing to %g", len(r.Sources), sum)
	}
}
