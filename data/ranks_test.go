package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/herd-llm/herd/dist"
)

// rankCorpus writes the TinyStories excerpt's paragraphs into files of
// two training sources and a validation source, with exact duplicates
// inside a file, across files and across sources, and near duplicates (one
// word changed) across files, and returns the recipe reading them.
func rankCorpus(t *testing.T, dir string) Recipe {
	t.Helper()
	b, err := os.ReadFile("testdata/tinystories.txt")
	if err != nil {
		t.Fatal(err)
	}
	var paras []string
	for _, p := range strings.Split(string(b), "\n\n") {
		if p = strings.TrimSpace(p); len(p) > 80 {
			paras = append(paras, p)
		}
	}
	if len(paras) < 30 {
		t.Fatalf("%d paragraphs in the excerpt", len(paras))
	}
	files := make([][]string, 7)
	for i, p := range paras {
		files[i%len(files)] = append(files[i%len(files)], p)
	}
	files[0] = append(files[0], paras[0])                                   // inside a file
	files[5] = append(files[5], paras[1], paras[8])                         // across files
	files[6] = append(files[6], strings.Replace(paras[2], " ", "  ", 3))    // the same after whitespace folding
	files[4] = append(files[4], strings.Replace(paras[3], "the", "a", 1))   // near
	files[2] = append(files[2], strings.Replace(paras[10], "and", "or", 1)) // near
	var a, c []string
	for i, f := range files {
		path := filepath.Join(dir, "in", fmt.Sprintf("a%d.txt", i))
		if i >= 5 {
			path = filepath.Join(dir, "in", fmt.Sprintf("c%d.txt", i))
			c = append(c, path)
		} else {
			a = append(a, path)
		}
		write(t, path, []byte(strings.Join(f, "\n\n")+"\n"))
	}
	val := filepath.Join(dir, "in", "val.txt")
	write(t, val, []byte(paras[4]+"\n\n"+"A short validation story that no training file holds, about a cat and a dog who play.\n"))
	return Recipe{
		Sources: []Source{
			{Name: "a", Paths: a, Split: "paragraph", Weight: 2},
			{Name: "c", Paths: c, Split: "paragraph", Weight: 1},
			{Name: "v", Paths: []string{val}, Split: "paragraph", Val: true},
		},
		Clean:       Clean{NearDedup: 0.7},
		ValFraction: 0.1, MaxEpochs: 1.5, ShardTokens: 2000, Seed: 7, Workers: 2,
	}
}

// prepareOn runs Prepare on n ranks of one process (dist.Local), every
// rank with the same recipe, and returns rank 0's manifest.
func prepareOn(t *testing.T, n int, r Recipe, out string) *Manifest {
	t.Helper()
	comms := dist.Local(n)
	mans := make([]*Manifest, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for q := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mans[q], errs[q] = Prepare(r, tok512(t), out, PrepareOptions{Comm: comms[q]})
		}()
	}
	wg.Wait()
	for q, err := range errs {
		if err != nil {
			t.Fatalf("rank %d of %d: %v", q, n, err)
		}
	}
	for q := 1; q < n; q++ {
		a, _ := json.Marshal(mans[0])
		b, _ := json.Marshal(mans[q])
		if !bytes.Equal(a, b) {
			t.Errorf("rank %d returned another manifest than rank 0", q)
		}
	}
	return mans[0]
}

// sameOutput compares two data directories: every file byte for byte,
// the manifests but for their timings.
func sameOutput(t *testing.T, a, b string) {
	t.Helper()
	names := func(dir string) []string {
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	na, nb := names(a), names(b)
	if !slices.Equal(na, nb) {
		t.Fatalf("%s holds %v, %s holds %v", a, na, b, nb)
	}
	for _, name := range na {
		x, _ := os.ReadFile(filepath.Join(a, name))
		y, _ := os.ReadFile(filepath.Join(b, name))
		if name == ManifestName {
			x, y = untimed(t, x), untimed(t, y)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs:\n%s\n%s", name, x[:min(len(x), 2000)], y[:min(len(y), 2000)])
		}
	}
}

// untimed is a manifest with its stats' seconds and MB/s zeroed.
func untimed(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	st := m["stats"].(map[string]any)
	st["seconds"], st["mb_per_sec"] = 0, 0
	out, _ := json.MarshalIndent(m, "", " ")
	return out
}

// Prepared on 2, 3 and 4 ranks, the output is the one process's, byte for
// byte (the manifest but for its timings), with exact and near duplicates
// found across the ranks' files.
func TestPrepareAcrossRanks(t *testing.T) {
	dir := t.TempDir()
	r := rankCorpus(t, dir)
	one := filepath.Join(dir, "one")
	man, err := Prepare(r, tok512(t), one, PrepareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var exact, near int64
	for _, s := range man.Stats.Sources {
		exact += s.Dropped[ReasonExactDup]
		near += s.Dropped[ReasonNearDup]
	}
	if exact < 4 || near < 2 || len(man.Train) < 2 || man.ValTokens == 0 {
		t.Fatalf("the corpus does not exercise the test: %d exact and %d near duplicates, %d train shards, %d val tokens",
			exact, near, len(man.Train), man.ValTokens)
	}
	for _, n := range []int{2, 3, 4} {
		out := filepath.Join(dir, fmt.Sprint("ranks", n))
		prepareOn(t, n, r, out)
		sameOutput(t, one, out)
	}
	// without near deduplication, and without any
	r.Clean.NearDedup = 0
	one2, two := filepath.Join(dir, "one-exact"), filepath.Join(dir, "two-exact")
	if _, err := Prepare(r, tok512(t), one2, PrepareOptions{}); err != nil {
		t.Fatal(err)
	}
	prepareOn(t, 2, r, two)
	sameOutput(t, one2, two)
	r.Clean.NoDedup = true
	one3, three := filepath.Join(dir, "one-nodedup"), filepath.Join(dir, "three-nodedup")
	if _, err := Prepare(r, tok512(t), one3, PrepareOptions{}); err != nil {
		t.Fatal(err)
	}
	prepareOn(t, 3, r, three)
	sameOutput(t, one3, three)
}

func TestCutFiles(t *testing.T) {
	sizes := []int64{10, 10, 10, 70, 5, 5}
	var got [][2]int
	for q := range 3 {
		lo, hi := cutFiles(sizes, 3, q)
		got = append(got, [2]int{lo, hi})
	}
	// shares [0,37) [37,74) [74,110): file 3 starts at 30
	if want := [][2]int{{0, 4}, {4, 4}, {4, 6}}; !slices.Equal(got, want) {
		t.Errorf("cut %v", got)
	}
	for _, n := range []int{1, 2, 5, 9} {
		at := 0
		for q := range n {
			lo, hi := cutFiles(sizes, n, q)
			if lo != at || hi < lo {
				t.Fatalf("%d ranks: rank %d takes [%d, %d) after %d", n, q, lo, hi, at)
			}
			at = hi
		}
		if at != len(sizes) {
			t.Fatalf("%d ranks cover %d of %d files", n, at, len(sizes))
		}
	}
}

// Ranks that see different inputs stop with an error, every one of them.
func TestPrepareRanksDisagree(t *testing.T) {
	dir := t.TempDir()
	r := rankCorpus(t, dir)
	comms := dist.Local(2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for q := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rq := r
			if q == 1 {
				rq.Seed++
			}
			_, errs[q] = Prepare(rq, tok512(t), filepath.Join(dir, "out"), PrepareOptions{Comm: comms[q]})
		}()
	}
	wg.Wait()
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "differ from rank 0") || errs[0] == nil {
		t.Fatalf("ranks with another seed: %v; %v", errs[0], errs[1])
	}
	if _, err := os.Stat(filepath.Join(dir, "out", ManifestName)); err == nil {
		t.Error("a manifest was written")
	}
}
