package llama

import (
	"testing"

	"github.com/herd-llm/herd/tensor"
)

// TestCopyPrefix: a cache seeded with another cache's first n positions
// continues exactly as the cache that computed them, and bad copies are
// errors.
func TestCopyPrefix(t *testing.T) {
	c := testConfig()
	c.ContextLen = 600 // past the initial room, so the copy must grow
	m := randomModel(t, c, tensor.F32)
	toks := make([]int, 300)
	for i := range toks {
		toks[i] = (i * 7) % c.VocabSize
	}
	var s State
	src := m.NewKVCache(c.ContextLen)
	if _, err := m.Forward(&s, src, toks, 0, false); err != nil {
		t.Fatal(err)
	}
	dst := m.NewKVCache(c.ContextLen)
	if err := dst.CopyPrefix(src, 290); err != nil {
		t.Fatal(err)
	}
	ref := m.NewKVCache(c.ContextLen)
	if _, err := m.Forward(&s, ref, toks[:290], 0, false); err != nil {
		t.Fatal(err)
	}
	a, err := m.Forward(&s, dst, toks[290:], 290, false)
	if err != nil {
		t.Fatal(err)
	}
	a = append([]float32(nil), a...)
	b, err := m.Forward(&s, ref, toks[290:], 290, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("logit %d: %g after the copy, %g computed", i, a[i], b[i])
		}
	}
	if err := dst.CopyPrefix(src, 301); err == nil {
		t.Error("copied more positions than the source holds")
	}
	if err := m.NewKVCache(100).CopyPrefix(src, 200); err == nil {
		t.Error("copied more positions than the destination can hold")
	}
	if err := m.NewKVCacheType(c.ContextLen, tensor.F32).CopyPrefix(src, 10); err == nil && src.DType != tensor.F32 {
		t.Error("copied between caches of different types")
	}
}
