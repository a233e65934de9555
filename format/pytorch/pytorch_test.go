package pytorch

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/herd-llm/herd/format/safetensors"
)

// floats decodes a tensor's bytes through safetensors' conversion (F64 by hand).
func floats(t *testing.T, f *File, name string) ([]int64, []float64) {
	t.Helper()
	tt, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("no tensor %s", name)
	}
	b, err := f.Read(tt)
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	switch tt.DType {
	case F64:
		for i := 0; i < len(b); i += 8 {
			out = append(out, math.Float64frombits(binary.LittleEndian.Uint64(b[i:])))
		}
	case I64:
		for i := 0; i < len(b); i += 8 {
			out = append(out, float64(int64(binary.LittleEndian.Uint64(b[i:]))))
		}
	default:
		st := safetensors.Tensor{Name: name, DType: tt.DType, Shape: tt.Shape, Data: b}
		v, err := st.Float32()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range v {
			out = append(out, float64(x))
		}
	}
	return tt.Shape, out
}

// TestReadTorchSave reads an archive written by torch.save (testdata/make.py)
// and checks every tensor's shape and values.
func TestReadTorchSave(t *testing.T) {
	f, err := Open("testdata/state.pt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	for _, tt := range f.Tensors {
		names = append(names, tt.Name)
	}
	if want := []string{"f32", "bf16", "f16", "transposed", "offset", "i64", "scalar"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	for _, c := range []struct {
		name  string
		shape []int64
		vals  []float64
	}{
		{"f32", []int64{2, 3}, []float64{0, 0.25, 0.5, 0.75, 1, 1.25}},
		{"bf16", []int64{3}, []float64{1, -2.5, 3}},
		{"f16", []int64{1, 2}, []float64{0.5, 65504}},
		{"transposed", []int64{3, 2}, []float64{0, 0.75, 0.25, 1, 0.5, 1.25}},
		{"offset", []int64{3}, []float64{4, 5, 6}},
		{"i64", []int64{2}, []float64{7, -1}},
		{"scalar", []int64{}, []float64{2}},
	} {
		shape, vals := floats(t, f, c.name)
		if !reflect.DeepEqual(shape, c.shape) || !reflect.DeepEqual(vals, c.vals) {
			t.Errorf("%s: shape %v values %v, want %v %v", c.name, shape, vals, c.shape, c.vals)
		}
	}
	if tt, _ := f.Tensor("transposed"); tt.Contiguous() {
		t.Error("a transposed view reads as contiguous")
	}
}

// TestModuleStateDict reads a module's state_dict, whose _metadata
// attribute is set by BUILD.
func TestModuleStateDict(t *testing.T) {
	f, err := Open("testdata/linear.pt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Tensors) != 2 || f.Tensors[0].Name != "weight" || f.Tensors[1].Name != "bias" {
		t.Fatalf("tensors %+v", f.Tensors)
	}
	if s, _ := floats(t, f, "weight"); !reflect.DeepEqual(s, []int64{3, 2}) {
		t.Errorf("weight shape %v", s)
	}
}

// TestRefusesOSSystem loads a torch.save archive whose pickle calls
// os.system (through posix.system, as CPython spells it): it must be refused
// by name, before anything is called.
func TestRefusesOSSystem(t *testing.T) {
	_, err := Open("testdata/evil.pt")
	var ge *GlobalError
	if !errors.As(err, &ge) || ge.Module != "posix" || ge.Name != "system" {
		t.Fatalf("err = %v, want a GlobalError for posix.system", err)
	}
	if !strings.Contains(err.Error(), "evil.pt") || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("error %q does not name the file and the refusal", err)
	}
}

// zipOf wraps a pickle as an archive's data.pkl.
func zipOf(t testing.TB, pkl []byte, records map[string][]byte) []byte {
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for name, b := range map[string][]byte{"archive/data.pkl": pkl} {
		w, err := z.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	for k, b := range records {
		w, err := z.CreateHeader(&zip.FileHeader{Name: "archive/data/" + k, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRefusesHandWritten covers the other ways a pickle reaches code or
// breaks the state-dict shape, each with its error.
func TestRefusesHandWritten(t *testing.T) {
	for _, c := range []struct {
		name, pkl, want string
	}{
		{"os.system by GLOBAL", "\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsR.", "global os.system is not allowed"},
		{"builtins.eval by STACK_GLOBAL", "\x80\x04\x8c\x08builtins\x8c\x04eval\x93.", "global builtins.eval is not allowed"},
		{"INST", "\x80\x02(ios\nsystem\n.", "opcode not allowed"},
		{"OBJ", "\x80\x02(o.", "opcode not allowed"},
		{"REDUCE of a string", "\x80\x02X\x01\x00\x00\x00a)R.", "REDUCE calls a str"},
		{"BUILD on a list", "\x80\x02]}b.", "BUILD on a list"},
		{"not a dict", "\x80\x02K\x05.", "not a state dict"},
		{"entry not a tensor", "\x80\x02}X\x01\x00\x00\x00aK\x01s.", `entry "a" is a int`},
		{"no STOP", "\x80\x02}", "without STOP"},
		{"memo miss", "\x80\x02h\x07.", "never stored"},
		{"storage type bogus", "\x80\x02ctorch\nFooStorage\n.", "global torch.FooStorage is not allowed"},
	} {
		_, err := Parse(c.name, zipOf(t, []byte(c.pkl), nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
}

// TestStorageTooShort: a view past its storage record's bytes.
func TestStorageTooShort(t *testing.T) {
	data, err := os.ReadFile("testdata/linear.pt")
	if err != nil {
		t.Fatal(err)
	}
	z, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var pkl []byte
	for _, e := range z.File {
		if strings.HasSuffix(e.Name, "data.pkl") {
			pkl, _ = readRecord(e, 1<<20)
		}
	}
	_, err = Parse("short", zipOf(t, pkl, map[string][]byte{"0": make([]byte, 8), "1": make([]byte, 12)}))
	if err == nil || !strings.Contains(err.Error(), `tensor "weight": storage data/0 holds 8 bytes`) {
		t.Fatalf("err = %v", err)
	}
	_, err = Parse("missing", zipOf(t, pkl, map[string][]byte{"0": make([]byte, 24)}))
	if err == nil || !strings.Contains(err.Error(), "data/1 is missing") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzUnpickle runs arbitrary bytes through the restricted unpickler and,
// wrapped as an archive, through Parse: neither may panic, and whatever
// parses must read every tensor without error.
func FuzzUnpickle(f *testing.F) {
	for _, p := range []string{"testdata/state.pt", "testdata/linear.pt", "testdata/evil.pt"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		z, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range z.File {
			if strings.HasSuffix(e.Name, "data.pkl") {
				b, _ := readRecord(e, 1<<20)
				f.Add(b)
			}
		}
	}
	storage := map[string][]byte{}
	for i := range 8 {
		storage[string(rune('0'+i))] = make([]byte, 64)
	}
	f.Fuzz(func(t *testing.T, pkl []byte) {
		unpickle(pkl)
		pf, err := Parse("fuzz", zipOf(t, pkl, storage))
		if err != nil {
			return
		}
		for i := range pf.Tensors {
			if _, err := pf.Read(&pf.Tensors[i]); err != nil {
				t.Fatalf("tensor %s parsed but does not read: %v", pf.Tensors[i].Name, err)
			}
		}
	})
}
