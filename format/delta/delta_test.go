package delta

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/tensor"
)

// writeGGUF writes a GGUF file of F32 tensors named a, b (and c when extra).
func writeGGUF(t testing.TB, path string, seed float32, extra bool) {
	t.Helper()
	w := gguf.NewWriter()
	if err := w.Set("general.name", "m"); err != nil {
		t.Fatal(err)
	}
	add := func(name string, n int) {
		v := make([]float32, n)
		for i := range v {
			v[i] = seed*float32(i) + 0.5
		}
		if err := w.AddTensor(name, tensor.F32, []uint64{uint64(n)}, tensor.BytesOfF32(v)); err != nil {
			t.Fatal(err)
		}
	}
	add("a", 8)
	add("b", 16)
	if extra {
		add("c", 4)
	}
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
}

// Make then Apply rebuilds the target byte for byte (a tensor the base
// lacks stored whole); a wrong base and a damaged delta are errors that
// write nothing.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	base, target, d, out := filepath.Join(dir, "base.gguf"), filepath.Join(dir, "target.gguf"), filepath.Join(dir, "d.gguf"), filepath.Join(dir, "out.gguf")
	writeGGUF(t, base, 1, false)
	writeGGUF(t, target, 1.25, true)
	n, whole, err := Make(base, target, d)
	if err != nil || n != 2 || whole != 1 {
		t.Fatalf("Make: %d against the base, %d whole, %v", n, whole, err)
	}
	if _, err := Apply(base, d, out); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(target)
	b, _ := os.ReadFile(out)
	if !bytes.Equal(a, b) {
		t.Error("the rebuilt target differs from the target")
	}
	wrong := filepath.Join(dir, "wrong.gguf")
	writeGGUF(t, wrong, 2, false)
	if _, err := Apply(wrong, d, filepath.Join(dir, "x.gguf")); err == nil || !strings.Contains(err.Error(), "not the base") {
		t.Errorf("wrong base: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.gguf")); err == nil {
		t.Error("a wrong base wrote output")
	}
}

// FuzzApply: a damaged delta never panics Apply, and whatever Apply
// accepts is the target exactly.
func FuzzApply(f *testing.F) {
	dir := f.TempDir()
	base, target, d := filepath.Join(dir, "base.gguf"), filepath.Join(dir, "target.gguf"), filepath.Join(dir, "d.gguf")
	writeGGUF(f, base, 1, false)
	writeGGUF(f, target, 1.25, true)
	if _, _, err := Make(base, target, d); err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(d)
	want, _ := os.ReadFile(target)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		tmp := t.TempDir()
		p, out := filepath.Join(tmp, "d.gguf"), filepath.Join(tmp, "out.gguf")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Apply(base, p, out); err != nil {
			return
		}
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got[len(got)-len(want)/2:], want[len(want)-len(want)/2:]) {
			t.Errorf("an accepted delta rebuilt other tensor bytes than the target's")
		}
	})
}
