package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

const sharedVocab = "/work/shared/data/tokenizers/ggml-vocab-llama-spm.gguf"

var testFiles = []string{"testdata/stories260K-llamacpp.gguf", "testdata/llama-2-tiny-random.gguf"}

// copyToWriter rebuilds f in a Writer: same metadata, same tensors, same order.
func copyToWriter(t testing.TB, f *File) *Writer {
	t.Helper()
	w := NewWriter()
	for _, kv := range f.KV {
		if err := w.Set(kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	for _, ti := range f.Tensors {
		if err := w.AddTensor(ti.Name, ti.DType, ti.Dims, ti.Data); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// sameFile fails unless a and b hold the same metadata and tensors.
func sameFile(t testing.TB, a, b *File) {
	t.Helper()
	if len(a.KV) != len(b.KV) || len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d KVs / %d tensors, want %d / %d", len(b.KV), len(b.Tensors), len(a.KV), len(a.Tensors))
	}
	for i := range a.KV {
		x, y := a.KV[i], b.KV[i]
		if x.Key != y.Key || x.Value.Type != y.Value.Type || !sameAny(x.Value.Any(), y.Value.Any()) {
			t.Fatalf("KV %d: got %s=%v, want %s=%v", i, y.Key, y.Value, x.Key, x.Value)
		}
	}
	for i := range a.Tensors {
		x, y := a.Tensors[i], b.Tensors[i]
		if x.Name != y.Name || x.DType != y.DType || !reflect.DeepEqual(x.Dims, y.Dims) || !bytes.Equal(x.Data, y.Data) {
			t.Fatalf("tensor %d: got %s %s %v (%d bytes), want %s %s %v (%d bytes)", i,
				y.Name, y.DType, y.Dims, len(y.Data), x.Name, x.DType, x.Dims, len(x.Data))
		}
	}
}

// sameAny compares decoded values, treating NaNs with equal bits as equal.
func sameAny(a, b any) bool {
	switch x := a.(type) {
	case float32:
		y, ok := b.(float32)
		return ok && math.Float32bits(x) == math.Float32bits(y)
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case []float32:
		y, ok := b.([]float32)
		return ok && bytes.Equal(tensor.BytesOfF32(x), tensor.BytesOfF32(y))
	case []Value:
		y, ok := b.([]Value)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i].Type != y[i].Type || !sameAny(x[i].Any(), y[i].Any()) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func TestReadStories260K(t *testing.T) {
	f, err := Open("testdata/stories260K-llamacpp.gguf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Version != 3 || f.Alignment != 32 || len(f.Tensors) != 48 {
		t.Fatalf("version %d alignment %d %d tensors", f.Version, f.Alignment, len(f.Tensors))
	}
	if s, _ := f.GetString("general.architecture"); s != "llama" {
		t.Errorf("architecture %q", s)
	}
	if n, ok := f.GetUint("llama.embedding_length"); !ok || n != 64 {
		t.Errorf("embedding_length %d %v", n, ok)
	}
	if n, ok := f.GetInt("llama.attention.head_count_kv"); !ok || n != 4 {
		t.Errorf("head_count_kv %d %v", n, ok)
	}
	if eps, ok := f.GetFloat("llama.attention.layer_norm_rms_epsilon"); !ok || float32(eps) != 1e-5 {
		t.Errorf("rms eps %g %v", eps, ok)
	}
	toks, ok := f.GetStrings("tokenizer.ggml.tokens")
	if !ok || len(toks) != 512 || toks[1] != "<s>" {
		t.Fatalf("tokens: %d %v", len(toks), ok)
	}
	if sc, ok := f.GetFloat32s("tokenizer.ggml.scores"); !ok || len(sc) != 512 {
		t.Errorf("scores %d %v", len(sc), ok)
	}
	if tt, ok := f.GetInt32s("tokenizer.ggml.token_type"); !ok || len(tt) != 512 {
		t.Errorf("token_type %d %v", len(tt), ok)
	}
	if _, ok := f.GetString("llama.embedding_length"); ok {
		t.Error("GetString of a uint32 succeeded")
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || emb.DType != tensor.F32 || !reflect.DeepEqual(emb.Dims, []uint64{64, 512}) || len(emb.Data) != 64*512*4 {
		t.Fatalf("token_embd: %+v", emb)
	}
	k, _ := f.Tensor("blk.4.attn_k.weight")
	if !reflect.DeepEqual(k.Dims, []uint64{64, 32}) || k.NumElements() != 2048 {
		t.Errorf("attn_k dims %v", k.Dims)
	}
	// Tensor data is a view of the mapping at DataOffset+Offset.
	raw, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	at := f.DataOffset + int64(k.Offset)
	if !bytes.Equal(k.Data, raw[at:at+int64(len(k.Data))]) {
		t.Error("attn_k data differs from the file bytes")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if f.Tensors[0].Data != nil {
		t.Error("Close left tensor data in place")
	}
}

// TestRoundTripRealFiles reads GGUF files written by llama.cpp, writes them
// back, and checks the result reads back identically and is byte-identical
// to the original (both use the same layout rules).
func TestRoundTripRealFiles(t *testing.T) {
	files := append([]string(nil), testFiles...)
	if _, err := os.Stat(sharedVocab); err == nil {
		files = append(files, sharedVocab)
	} else {
		t.Logf("skipping %s: shared data kit absent", sharedVocab)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			out := filepath.Join(t.TempDir(), "out.gguf")
			if err := copyToWriter(t, f).WriteFile(out); err != nil {
				t.Fatal(err)
			}
			g, err := Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			sameFile(t, f, g)
			a, _ := os.ReadFile(path)
			b, _ := os.ReadFile(out)
			if len(f.Tensors) == 0 {
				// Without tensors the original ends unpadded; we pad to the alignment.
				b = b[:min(len(b), len(a))]
			}
			if !bytes.Equal(a, b) {
				t.Errorf("rewritten file differs from the original (%d vs %d bytes)", len(b), len(a))
			}
		})
	}
}

// fullWriter builds a Writer using every value type and every supported tensor type.
func fullWriter(t testing.TB) *Writer {
	t.Helper()
	w := NewWriter()
	nested, err := ValueOf([]Value{mustValue(t, []int32{1, -2}), mustValue(t, []string{"a", ""}), mustValue(t, []Value{})})
	if err != nil {
		t.Fatal(err)
	}
	vals := []any{uint8(7), int8(-7), uint16(65535), int16(-300), uint32(1 << 31), int32(-5), float32(1.5),
		true, false, "héllo\x00", uint64(1 << 63), int64(-1 << 62), math.Pi,
		[]uint8{1, 2}, []int8{-1}, []uint16{9}, []int16{-9}, []uint32{}, []int32{3, 4}, []float32{float32(math.NaN()), -0},
		[]bool{true, false}, []string{"x", "yy", ""}, []uint64{1 << 40}, []int64{-1}, []float64{math.Inf(-1)}, nested}
	for i, v := range vals {
		if err := w.Set("k."+string(rune('a'+i)), v); err != nil {
			t.Fatal(err)
		}
	}
	for _, dt := range supportedTypes {
		dims := []uint64{256, 3}
		size, _ := tensorBytes(dt, dims)
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*7 + int(dt))
		}
		if err := w.AddTensor("t."+dt.String(), dt, dims, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.AddTensor("scalar", tensor.F32, []uint64{1}, []byte{0, 0, 128, 63}); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("empty", tensor.F32, []uint64{0, 5}, nil); err != nil {
		t.Fatal(err)
	}
	return w
}

func mustValue(t testing.TB, x any) Value {
	t.Helper()
	v, err := ValueOf(x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestWriterRoundTrip(t *testing.T) {
	for _, align := range []uint32{0, 64, 1} {
		w := fullWriter(t)
		if align != 0 {
			if err := w.Set(AlignmentKey, align); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		n, err := w.WriteTo(&buf)
		if err != nil || n != int64(buf.Len()) {
			t.Fatalf("WriteTo: %d %v (buffer %d)", n, err, buf.Len())
		}
		f, err := Parse("mem", buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		want := &File{KV: w.kv, Tensors: w.tensors}
		sameFile(t, want, f)
		if align != 0 && f.Alignment != int(align) {
			t.Errorf("alignment %d, want %d", f.Alignment, align)
		}
		for _, ti := range f.Tensors {
			if ti.Offset%uint64(f.Alignment) != 0 {
				t.Errorf("%s at offset %d", ti.Name, ti.Offset)
			}
		}
		v, _ := f.Get("k.z")
		if v.Elem() != TypeArray || v.Len() != 3 || v.String() != `[[1 -2] ["a" ""] []]` {
			t.Errorf("nested array: %v elem %s len %d", v, v.Elem(), v.Len())
		}
	}
}

func TestWriterReplaceAndRefuse(t *testing.T) {
	w := NewWriter()
	if err := w.Set("a", "x"); err != nil {
		t.Fatal(err)
	}
	if err := w.Set("b", uint32(1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Set("a", "y"); err != nil {
		t.Fatal(err)
	}
	if len(w.kv) != 2 || w.kv[0].Key != "a" || w.kv[0].Value.Any() != "y" {
		t.Errorf("Set did not replace in place: %v", w.kv)
	}
	for _, bad := range []struct {
		name string
		err  error
	}{
		{"int value", w.Set("c", 5)},
		{"zero Value", w.Set("c", Value{})},
		{"alignment type", w.Set(AlignmentKey, 64)},
		{"alignment power", w.Set(AlignmentKey, uint32(48))},
		{"unsupported type", w.AddTensor("q", tensor.Q8_1, []uint64{32}, make([]byte, 36))},
		{"data size", w.AddTensor("x", tensor.F32, []uint64{4}, make([]byte, 15))},
		{"block size", w.AddTensor("x", tensor.Q8_0, []uint64{16}, make([]byte, 17))},
		{"long name", w.AddTensor(strings.Repeat("n", 64), tensor.F32, []uint64{1}, make([]byte, 4))},
		{"no dims", w.AddTensor("x", tensor.F32, nil, nil)},
		{"5 dims", w.AddTensor("x", tensor.F32, []uint64{1, 1, 1, 1, 1}, make([]byte, 4))},
	} {
		if bad.err == nil {
			t.Errorf("%s: accepted", bad.name)
		}
	}
	if err := w.AddTensor("x", tensor.F32, []uint64{1}, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddTensor("x", tensor.F32, []uint64{1}, make([]byte, 4)); err == nil {
		t.Error("duplicate tensor accepted")
	}
	if err := w.AddTensor("q", tensor.Q8_1, []uint64{32}, make([]byte, 36)); err == nil ||
		!strings.Contains(err.Error(), "unsupported tensor type Q8_1 in tensor q") {
		t.Errorf("Q8_1: %v", err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.gguf")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fullWriter(t).WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
	if err := fullWriter(t).WriteFile(filepath.Join(dir, "missing", "m.gguf")); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "nope.gguf")); err == nil || !strings.Contains(err.Error(), "nope.gguf") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil {
		t.Error("directory opened")
	}
	empty := filepath.Join(t.TempDir(), "empty.gguf")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open(empty); err == nil || !strings.Contains(err.Error(), "empty.gguf") {
		t.Errorf("empty file: %v", err)
	}
}

// raw builds GGUF bytes by hand, independently of Writer, so that tests can
// produce files Writer would refuse.
type raw struct{ b []byte }

func (r *raw) u32(x uint32) *raw { r.b = binary.LittleEndian.AppendUint32(r.b, x); return r }
func (r *raw) u64(x uint64) *raw { r.b = binary.LittleEndian.AppendUint64(r.b, x); return r }
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.b = append(r.b, s...); return r }
func (r *raw) header(version uint32, nt, nkv uint64) *raw {
	r.b = append(r.b, Magic...)
	return r.u32(version).u64(nt).u64(nkv)
}
func (r *raw) tinfo(name string, dims []uint64, dt tensor.DType, off uint64) *raw {
	r.str(name).u32(uint32(len(dims)))
	for _, d := range dims {
		r.u64(d)
	}
	return r.u32(uint32(dt)).u64(off)
}
func (r *raw) data(n int) []byte {
	for len(r.b)%32 != 0 {
		r.b = append(r.b, 0)
	}
	return append(r.b, make([]byte, n)...)
}

func TestParseErrors(t *testing.T) {
	f32x8 := []uint64{8}
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"magic", []byte("GGML\x03\x00\x00\x00"), "not a GGUF file"},
		{"v1", new(raw).header(1, 0, 0).b, "version 1 is not supported"},
		{"v4", new(raw).header(4, 0, 0).b, "unsupported GGUF version 4"},
		{"v0", new(raw).header(0, 0, 0).b, "unsupported GGUF version 0"},
		{"big-endian", new(raw).header(3<<24, 0, 0).b, "big-endian"},
		{"huge tensor count", new(raw).header(3, 1<<60, 0).b, "tensor count at offset 8 is 1152921504606846976: cannot fit"},
		{"huge kv count", new(raw).header(3, 0, 1<<62).b, "metadata count"},
		{"huge key", new(raw).header(3, 0, 1).u64(1 << 60).u32(0).u32(0).b, "exceeds"},
		{"huge string", new(raw).header(3, 0, 1).str("k").u32(uint32(TypeString)).u64(1 << 60).b, `key "k": string at offset`},
		{"huge array", new(raw).header(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeUint8)).u64(1 << 60).b, `key "k": array count`},
		{"huge string array", new(raw).header(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(uint32(TypeString)).u64(3).u64(0).u64(0).b, "cannot fit"},
		{"unknown value type", new(raw).header(3, 0, 1).str("k").u32(13).u64(0).b, "unknown value type 13"},
		{"unknown elem type", new(raw).header(3, 0, 1).str("k").u32(uint32(TypeArray)).u32(99).u64(0).b, "unknown array element type 99"},
		{"bool 2", append(new(raw).header(3, 0, 1).str("k").u32(uint32(TypeBool)).b, 2), "not 0 or 1"},
		{"duplicate key", new(raw).header(3, 0, 2).str("k").u32(uint32(TypeUint32)).u32(1).str("k").u32(uint32(TypeUint32)).u32(1).b, `duplicate metadata key "k"`},
		{"alignment type", new(raw).header(3, 0, 1).str(AlignmentKey).u32(uint32(TypeUint64)).u64(32).b, "want uint32"},
		{"alignment zero", new(raw).header(3, 0, 1).str(AlignmentKey).u32(uint32(TypeUint32)).u32(0).b, "power of two"},
		{"alignment 24", new(raw).header(3, 0, 1).str(AlignmentKey).u32(uint32(TypeUint32)).u32(24).b, "power of two"},
		{"5 dims", new(raw).header(3, 1, 0).tinfo("t", []uint64{1, 1, 1, 1, 1}, tensor.F32, 0).data(4), `tensor "t" has 5 dims`},
		{"0 dims", new(raw).header(3, 1, 0).tinfo("t", nil, tensor.F32, 0).data(4), `tensor "t" has 0 dims`},
		{"dims overflow", new(raw).header(3, 1, 0).tinfo("t", []uint64{1 << 32, 1 << 32, 4}, tensor.F32, 0).data(4), "overflow"},
		{"dims overflow wrap", new(raw).header(3, 1, 0).tinfo("t", []uint64{1 << 63, 2}, tensor.F32, 0).data(4), "overflow"},
		{"size overflow", new(raw).header(3, 1, 0).tinfo("t", []uint64{1 << 30, 1 << 31}, tensor.F32, 0).data(4), "too large"},
		{"block size", new(raw).header(3, 1, 0).tinfo("t", []uint64{16}, tensor.Q8_0, 0).data(64), "block size"},
		{"Q8_1", new(raw).header(3, 1, 0).tinfo("blk.0.attn_q.weight", []uint64{32}, tensor.Q8_1, 0).data(64), "unsupported tensor type Q8_1 in tensor blk.0.attn_q.weight"},
		{"type 99", new(raw).header(3, 1, 0).tinfo("w", f32x8, 99, 0).data(32), "unsupported tensor type type(99) in tensor w"},
		{"misaligned", new(raw).header(3, 1, 0).tinfo("t", f32x8, tensor.F32, 4).data(64), "not a multiple of the alignment"},
		{"past end", new(raw).header(3, 1, 0).tinfo("t", f32x8, tensor.F32, 0).data(31), "runs past the end"},
		{"offset past end", new(raw).header(3, 1, 0).tinfo("t", f32x8, tensor.F32, 1<<63).data(32), "runs past the end"},
		{"overlap", new(raw).header(3, 2, 0).tinfo("a", []uint64{16}, tensor.F32, 0).tinfo("b", f32x8, tensor.F32, 32).data(96), `tensors "a" and "b" overlap`},
		{"duplicate tensor", new(raw).header(3, 2, 0).tinfo("a", f32x8, tensor.F32, 0).tinfo("a", f32x8, tensor.F32, 32).data(64), `duplicate tensor name "a"`},
		{"truncated tensor info", new(raw).header(3, 1, 0).str("tensor.name").u32(2).u64(8).b, `tensor "tensor.name": dim 1`},
	}
	// Nested arrays beyond maxNesting.
	deep := new(raw).header(3, 0, 1).str("k").u32(uint32(TypeArray))
	for i := 0; i < maxNesting+1; i++ {
		deep.u32(uint32(TypeArray)).u64(1)
	}
	cases = append(cases, struct {
		name string
		b    []byte
		want string
	}{"nesting", deep.b, "nested deeper"})
	for _, c := range cases {
		_, err := Parse("bad.gguf", c.b)
		if err == nil {
			t.Errorf("%s: parsed", c.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "gguf bad.gguf: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want it to name the file and contain %q", c.name, err, c.want)
		}
	}
}

// TestParseAcceptsEdgeCases covers valid files that stress the checks:
// overlapping-looking but disjoint tensors, zero-size tensors sharing an
// offset, tensors out of offset order, and a file ending right after its
// tensor infos.
func TestParseAcceptsEdgeCases(t *testing.T) {
	b := new(raw).header(3, 4, 0).
		tinfo("late", []uint64{8}, tensor.F32, 32).
		tinfo("early", []uint64{8}, tensor.F32, 0).
		tinfo("e1", []uint64{0}, tensor.F32, 0).
		tinfo("e2", []uint64{8, 0}, tensor.F32, 32).data(64)
	f, err := Parse("ok.gguf", b)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := f.Tensor("late"); len(l.Data) != 32 {
		t.Errorf("late: %d bytes", len(l.Data))
	}
	if _, err := Parse("ok.gguf", new(raw).header(2, 0, 0).b); err != nil {
		t.Errorf("empty v2 file: %v", err)
	}
}

// TestTruncations checks every prefix of a real file fails cleanly.
func TestTruncations(t *testing.T) {
	data, err := os.ReadFile("testdata/stories260K-llamacpp.gguf")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("s", data)
	if err != nil {
		t.Fatal(err)
	}
	step := 1
	if testing.Short() {
		step = 97
	}
	for n := 0; n < len(data); n += step {
		if n >= int(f.DataOffset) && n < len(data)-4096 {
			n = len(data) - 4096 // the tensor data itself: check only its tail
		}
		if _, err := Parse("s", data[:n]); err == nil {
			t.Fatalf("prefix of %d bytes parsed", n)
		}
	}
}

// BenchmarkOpen measures opening a file with a 32000-piece vocabulary; the
// rate is over its metadata and tensor infos (tensor data is mapped, not read).
func BenchmarkOpen(b *testing.B) {
	f, err := Open("testdata/llama-2-tiny-random.gguf")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(f.DataOffset)
	f.Close()
	for range b.N {
		f, err := Open("testdata/llama-2-tiny-random.gguf")
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// TestWriterRefusesPackedLayouts: the in-memory packed layouts
// (tensor.Q4_0x8, Q8_0x8, Q4_Kx8, Q6_Kx8, F16x32) are no GGUF type; a writer handed one fails,
// naming the tensor, rather than writing a file no reader understands.
func TestWriterRefusesPackedLayouts(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.Q4_0x8, tensor.Q8_0x8, tensor.Q4_Kx8, tensor.Q6_Kx8, tensor.F16x32} {
		w := NewWriter()
		rb, _ := dt.RowBytes(dt.BlockSize())
		err := w.AddTensor("blk.0.attn_q.weight", dt, []uint64{uint64(dt.BlockSize()), 8}, make([]byte, 8*rb))
		if err == nil || !strings.Contains(err.Error(), "blk.0.attn_q.weight") || !strings.Contains(err.Error(), dt.String()) {
			t.Errorf("AddTensor(%s) = %v", dt, err)
		}
		if Supported(dt) {
			t.Errorf("Supported(%s) = true", dt)
		}
	}
}
