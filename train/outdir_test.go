package train

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 21, item 8: what kills leave in an output directory (temporary
// files of the metrics, plot, latest and state, a checkpoint being
// written, one being pruned) is removed when the next run starts, and a
// model.gguf left linking an older checkpoint than latest names is mended.
func TestLeftoversRemoved(t *testing.T) {
	dir := prepared(t)
	out := filepath.Join(t.TempDir(), "run")
	r := tiny(dir, out)
	r.Steps, r.SaveEvery = 4, 2
	if _, err := Pretrain(r, Options{}); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{".state.safetensors.tmp123", ".latest.tmp5", ".loss.png.tmp7", ".metrics.jsonl.tmp1",
		".tmp-step-00000009/model.gguf", "step-00000004/.optimizer.gguf.tmp3", ".del-step-00000002/optimizer.gguf", ".tmp-model.gguf"}
	for _, f := range leftovers {
		p := filepath.Join(out, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// a kill between moving latest to step 4 and relinking model.gguf
	top := filepath.Join(out, ModelName)
	os.Remove(top)
	if err := os.Link(filepath.Join(out, "step-00000002", ModelName), top); err != nil {
		t.Fatal(err)
	}
	r.Resume = true
	if _, err := Pretrain(r, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range leftovers {
		if _, err := os.Stat(filepath.Join(out, f)); err == nil {
			t.Errorf("%s is still there", f)
		}
	}
	if _, err := os.Stat(filepath.Join(out, ".del-step-00000002")); err == nil {
		t.Error("the pruned checkpoint's directory is still there")
	}
	a, _ := os.Stat(top)
	b, _ := os.Stat(filepath.Join(out, "step-00000004", ModelName))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Errorf("model.gguf is not latest's model")
	}
}

// Issue 21, item 9: a second run on a directory another run holds is
// refused with a message naming the holder; once it is released, the
// directory is free.
func TestSecondWriterRefused(t *testing.T) {
	dir := prepared(t)
	out := filepath.Join(t.TempDir(), "run")
	lock, err := LockDir(out)
	if err != nil {
		t.Fatal(err)
	}
	r := tiny(dir, out)
	r.Steps = 2
	_, err = Pretrain(r, Options{})
	if err == nil || !strings.Contains(err.Error(), "in use by another herd run") || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Fatalf("a second writer: %v", err)
	}
	q := newQuadratic()
	if _, err := Fit(q, q, quadConfig(out)); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Fit on a held directory: %v", err)
	}
	lock.Release()
	if _, err := Pretrain(r, Options{}); err != nil {
		t.Errorf("after the release: %v", err)
	}
}

// StateDir keeps the newest Keep checkpoints.
func TestStateDirKeep(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	q := newQuadratic()
	c := quadConfig(dir)
	c.SaveEvery, c.Checkpoints = 1, StateDir{Dir: dir, Keep: 2}
	if _, err := Fit(q, q, c); err != nil {
		t.Fatal(err)
	}
	got, _ := filepath.Glob(filepath.Join(dir, "step-*"))
	if len(got) != 2 || filepath.Base(got[0]) != "step-7" || filepath.Base(got[1]) != "step-8" {
		t.Errorf("kept %v", got)
	}
}

// Only herd's own leftovers count as such.
func TestIsTemp(t *testing.T) {
	for name, want := range map[string]bool{
		".latest.tmp123": true, ".state.safetensors.tmp9": true, ".tmp-step-00000002": true, ".del-step-3": true,
		".lock": false, "latest": false, ".tmpnotes": false, ".config.tmpl": false, "step-00000002": false, "recipe.yaml": false,
	} {
		if isTemp(name) != want {
			t.Errorf("isTemp(%q) = %v", name, !want)
		}
	}
}
