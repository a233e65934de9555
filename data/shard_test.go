package data

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeShard(t testing.TB, path string, width int, docs ...[]int32) {
	t.Helper()
	w, err := CreateShard(path, width)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		if err := w.WriteDoc(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestShardRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, width := range []int{2, 4} {
		path := filepath.Join(dir, "s.bin")
		big := int32(65535)
		if width == 4 {
			big = 1 << 20
		}
		writeShard(t, path, width, []int32{1, 5, 7}, []int32{1, big, 0})
		s, err := OpenShard(path)
		if err != nil {
			t.Fatal(err)
		}
		if s.Width != width || s.Count != 6 || s.Docs != 2 {
			t.Errorf("width %d: header says width %d, %d tokens, %d docs", width, s.Width, s.Count, s.Docs)
		}
		got := make([]int, 6)
		s.Read(got, 0)
		want := []int{1, 5, 7, 1, int(big), 0}
		for i := range want {
			if got[i] != want[i] || s.At(int64(i)) != want[i] {
				t.Fatalf("width %d: token %d = %d (At %d), want %d", width, i, got[i], s.At(int64(i)), want[i])
			}
		}
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
			t.Errorf("shard mode %v", st.Mode().Perm())
		}
		s.Close()
	}
	w, err := CreateShard(filepath.Join(dir, "x.bin"), 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteDoc([]int32{70000}); err == nil {
		t.Error("a token over 16 bits went into a 2-byte shard")
	}
	w.Abort()
	if _, err := CreateShard(filepath.Join(dir, "y.bin"), 3); err == nil {
		t.Error("width 3 accepted")
	}
	if TokenWidth(32000) != 2 || TokenWidth(65536) != 4 || TokenWidth(128256) != 4 {
		t.Error("TokenWidth")
	}
}

func TestShardErrors(t *testing.T) {
	good := make([]byte, headerSize+4)
	copy(good, shardMagic)
	binary.LittleEndian.PutUint32(good[8:], 1)
	binary.LittleEndian.PutUint32(good[12:], 2)
	binary.LittleEndian.PutUint64(good[16:], 2)
	if _, err := parseShard("good", good); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(b []byte) []byte
		want string
	}{
		{"short", func(b []byte) []byte { return b[:10] }, "too short"},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, "bad magic"},
		{"version", func(b []byte) []byte { b[8] = 9; return b }, "version 9"},
		{"width", func(b []byte) []byte { b[12] = 3; return b }, "token width 3"},
		{"count", func(b []byte) []byte { b[16] = 3; return b }, "header says 3 tokens"},
		{"odd bytes", func(b []byte) []byte { return append(b, 0) }, "header says 2 tokens"},
	} {
		b := c.edit(append([]byte(nil), good...))
		_, err := parseShard("f.bin", b)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "f.bin") {
			t.Errorf("%s: error %v, want one naming the file and %q", c.name, err, c.want)
		}
	}
}

// FuzzParseShard feeds arbitrary bytes to the shard parser, seeded with a
// real shard (testdata/shard-tok512.bin, TinyStories text in tok512): it
// must never panic, and what it accepts must read back in range.
func FuzzParseShard(f *testing.F) {
	for _, name := range []string{"shard-tok512.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(shardMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseShard("fuzz", b)
		if err != nil {
			return
		}
		dst := make([]int, min(s.Count, 1<<12))
		s.Read(dst, s.Count-int64(len(dst)))
		if s.Count > 0 {
			s.At(s.Count - 1)
		}
	})
}
