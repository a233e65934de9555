package gguf

import (
	"bytes"
	"os"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse. Whatever parses must survive a
// write and read back identical.
func FuzzParse(f *testing.F) {
	var buf bytes.Buffer
	if _, err := fullWriter(f).WriteTo(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	for _, path := range testFiles {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		p, err := Parse(path, data)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data[:min(len(data), 4096)])
		// A small complete file in the shape of the real one: its scalar
		// metadata and the first bytes of its first tensors.
		w := NewWriter()
		for _, kv := range p.KV {
			if kv.Value.Len() <= 16 {
				w.Set(kv.Key, kv.Value)
			}
		}
		for _, ti := range p.Tensors[:3] {
			w.AddTensor(ti.Name, ti.DType, ti.Dims[:1], ti.Data[:len(ti.Data)/int(ti.NumElements()/ti.Dims[0])])
		}
		var small bytes.Buffer
		if _, err := w.WriteTo(&small); err != nil {
			f.Fatal(err)
		}
		f.Add(small.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		w := NewWriter()
		for _, kv := range p.KV {
			if err := w.Set(kv.Key, kv.Value); err != nil {
				return // e.g. a general.alignment the writer refuses
			}
		}
		for _, ti := range p.Tensors {
			if err := w.AddTensor(ti.Name, ti.DType, ti.Dims, ti.Data); err != nil {
				if len(ti.Name) > MaxNameLen {
					return
				}
				t.Fatalf("parsed tensor refused by the writer: %v", err)
			}
		}
		var out bytes.Buffer
		if _, err := w.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		q, err := Parse("rewritten", out.Bytes())
		if err != nil {
			t.Fatalf("rewritten file does not parse: %v", err)
		}
		sameFile(t, p, q)
	})
}
