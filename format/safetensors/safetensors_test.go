package safetensors

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func sample(t testing.TB) (map[string]string, []Tensor) {
	a, err := FromFloat32("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", F32, []int64{2, 3}, []float32{1, -2, 3.5, 0, 1e-3, -7})
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromFloat32("b16", BF16, []int64{3}, []float32{1, 0.5, -2})
	if err != nil {
		t.Fatal(err)
	}
	h, err := FromFloat32("h16", F16, []int64{1, 2}, []float32{0.25, 65504})
	if err != nil {
		t.Fatal(err)
	}
	ids := Tensor{Name: "ids", DType: I64, Shape: []int64{2}, Data: make([]byte, 16)}
	binary.LittleEndian.PutUint64(ids.Data[8:], 42)
	scalar := Tensor{Name: "scalar", DType: U8, Shape: []int64{}, Data: []byte{7}}
	empty := Tensor{Name: "empty", DType: F32, Shape: []int64{0, 4}, Data: []byte{}}
	return map[string]string{"format": "pt"}, []Tensor{a, b, h, ids, scalar, empty}
}

func TestRoundTrip(t *testing.T) {
	meta, ts := sample(t)
	p := filepath.Join(t.TempDir(), "a.safetensors")
	if err := WriteFile(p, meta, ts); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !reflect.DeepEqual(f.Metadata, meta) {
		t.Errorf("metadata %v, want %v", f.Metadata, meta)
	}
	if len(f.Tensors) != len(ts) {
		t.Fatalf("%d tensors, want %d", len(f.Tensors), len(ts))
	}
	for _, w := range ts {
		g, ok := f.Tensor(w.Name)
		if !ok {
			t.Fatalf("tensor %s missing", w.Name)
		}
		if g.DType != w.DType || !reflect.DeepEqual(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("tensor %s: got %s %v %v, want %s %v %v", w.Name, g.DType, g.Shape, g.Data, w.DType, w.Shape, w.Data)
		}
	}
	q, _ := f.Tensor(ts[0].Name)
	v, err := q.Float32()
	if err != nil || !reflect.DeepEqual(v, []float32{1, -2, 3.5, 0, 1e-3, -7}) {
		t.Errorf("Float32 = %v, %v", v, err)
	}
	h, _ := f.Tensor("h16")
	if v, _ := h.Float32(); !reflect.DeepEqual(v, []float32{0.25, 65504}) {
		t.Errorf("F16 values %v", v)
	}
	// the header is padded to 8 bytes
	var buf bytes.Buffer
	if err := Encode(&buf, meta, ts); err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(buf.Bytes()); n%8 != 0 {
		t.Errorf("header of %d bytes is not padded to 8", n)
	}
}

// file builds a file from a literal header and data.
func file(hdr string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	return append(append(b, hdr...), data...)
}

func TestStrictHeader(t *testing.T) {
	d8 := make([]byte, 8)
	for _, c := range []struct {
		name, hdr string
		data      []byte
		want      string
	}{
		{"ok", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  `, d8, ""},
		{"duplicate", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, d8, "twice"},
		{"dtype", `{"a":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}}`, d8, "unknown dtype"},
		{"shape", `{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, d8, "does not fill"},
		{"huge shape", `{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, d8, "does not fill"},
		{"negative", `{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, d8, "negative"},
		{"outside", `{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, d8, "outside"},
		{"hole", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, d8, "hole"},
		{"overlap", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, d8, "overlap"},
		{"trailing data", `{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, d8, "after the last tensor"},
		{"unknown field", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, d8, "unknown field"},
		{"metadata", `{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, d8, "__metadata__"},
		{"junk after", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} x`, d8, "after the header"},
		{"not object", `[1]`, nil, "start with"},
		{"offsets", `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}`, d8, "data_offsets"},
		{"fraction", `{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}`, d8, "tensor"},
	} {
		_, err := Parse("x.safetensors", file(c.hdr, c.data))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: err = %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	// a header length beyond the file
	b := binary.LittleEndian.AppendUint64(nil, 1000)
	if _, err := Parse("x", append(b, '{')); err == nil {
		t.Error("accepted a header longer than the file")
	}
	if _, err := Parse("x", []byte{1, 2}); err == nil {
		t.Error("accepted 2 bytes")
	}
}

// FuzzParse feeds arbitrary bytes to Parse; whatever parses must encode
// and parse back to the same tensors.
func FuzzParse(f *testing.F) {
	meta, ts := sample(f)
	var buf bytes.Buffer
	if err := Encode(&buf, meta, ts); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse("fuzz", b)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Encode(&out, p.Metadata, p.Tensors); err != nil {
			t.Fatalf("parsed file does not encode: %v", err)
		}
		q, err := Parse("again", out.Bytes())
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v", err)
		}
		if len(q.Tensors) != len(p.Tensors) {
			t.Fatalf("%d tensors, then %d", len(p.Tensors), len(q.Tensors))
		}
		for i := range p.Tensors {
			a, b := p.Tensors[i], q.Tensors[i]
			if a.Name != b.Name || a.DType != b.DType || !reflect.DeepEqual(a.Shape, b.Shape) || !bytes.Equal(a.Data, b.Data) {
				t.Fatalf("tensor %d changed: %v → %v", i, a.Name, b.Name)
			}
		}
	})
}

// TestIndex reads a written file through OpenIndex: the same entries as
// Open, and each tensor's bytes read on demand.
func TestIndex(t *testing.T) {
	meta, ts := sample(t)
	p := filepath.Join(t.TempDir(), "a.safetensors")
	if err := WriteFile(p, meta, ts); err != nil {
		t.Fatal(err)
	}
	ix, err := OpenIndex(p)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if !reflect.DeepEqual(ix.Metadata, meta) || len(ix.Entries) != len(ts) {
		t.Fatalf("metadata %v, %d entries", ix.Metadata, len(ix.Entries))
	}
	for _, want := range ts {
		e, ok := ix.Entry(want.Name)
		if !ok {
			t.Fatalf("no entry %s", want.Name)
		}
		b, err := ix.Read(e)
		if err != nil {
			t.Fatal(err)
		}
		if e.DType != want.DType || !reflect.DeepEqual(e.Shape, want.Shape) && len(want.Shape) > 0 || !bytes.Equal(b, want.Data) {
			t.Errorf("%s: %s %v %x, want %s %v %x", want.Name, e.DType, e.Shape, b, want.DType, want.Shape, want.Data)
		}
	}
	if err := os.WriteFile(p, []byte{1, 0, 0, 0, 0, 0, 0, 0, '['}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenIndex(p); err == nil || !strings.Contains(err.Error(), "does not start with") {
		t.Errorf("bad header: err = %v", err)
	}
}
