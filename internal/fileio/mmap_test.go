package fileio

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestMapDroppable: dropping pages of a mapping (all of it, a range that
// starts and ends inside pages, a slice that is not the mapping's) leaves
// the bytes as the file holds them.
func TestMapDroppable(t *testing.T) {
	want := make([]byte, 5<<16+123)
	for i := range want {
		want[i] = byte(i*7 + i>>9)
	}
	path := filepath.Join(t.TempDir(), "m.bin")
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	b, unmap, drop, err := MapDroppable(path)
	if err != nil {
		t.Fatal(err)
	}
	defer unmap()
	if !bytes.Equal(b, want) {
		t.Fatal("mapped bytes differ from the file")
	}
	drop(b[1000 : 3<<16+17])
	drop(b)
	drop(make([]byte, 100)) // not part of the mapping: ignored
	drop(nil)
	if !bytes.Equal(b, want) {
		t.Fatal("bytes changed after drop")
	}
}

// TestAllocHuge: the memory is n zeroed, writable bytes, and freeing it
// (once) returns without error.
func TestAllocHuge(t *testing.T) {
	for _, n := range []int{0, 1, 4096, 3<<20 + 5} {
		b, free := AllocHuge(n)
		if len(b) != n {
			t.Fatalf("AllocHuge(%d): %d bytes", n, len(b))
		}
		for i := range b {
			if b[i] != 0 {
				t.Fatalf("AllocHuge(%d): byte %d = %d", n, i, b[i])
			}
			b[i] = byte(i)
		}
		free()
	}
}
