package quant

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
	"github.com/herd-llm/herd/assets"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/format/llama2c"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// smallModel writes a random LLaMA whose rows (256 and 512) fit every
// block format, with the tok512 vocabulary, as an F32 GGUF file.
func smallModel(t *testing.T, dir string, dt tensor.DType) string {
	t.Helper()
	c := llama.Config{Dim: 256, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 512, VocabSize: 512, ContextLen: 64,
		RopeTheta: 10000, NormEps: 1e-5}
	m, err := llama.RandomInit(c, dt, 7, llama.InitOptions{Std: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.FromLlama2c(assets.Tok512(), 512)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "model-"+dt.String()+".gguf")
	if err := checkpoint.SaveGGUF(path, m, tok, checkpoint.SaveOptions{Name: "small"}); err != nil {
		t.Fatal(err)
	}
	return path
}

func quantizeTo(t *testing.T, in, out string, ft FileType, threads int) (*Result, []string) {
	t.Helper()
	f, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var warnings []string
	res, err := File(f, out, Options{Type: ft, Threads: threads, Warn: func(s string) { warnings = append(warnings, s) }})
	if err != nil {
		t.Fatal(err)
	}
	return res, warnings
}

// logits runs the model over a few tokens and returns the last logits.
func logits(t *testing.T, path string) []float32 {
	t.Helper()
	m, err := llama.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var s llama.State
	out, err := m.Forward(&s, m.NewKVCache(16), []int{1, 200, 31, 400, 77}, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out...)
}

// TestFile quantizes a small model to every mix and checks the result:
// metadata kept with general.file_type and general.quantization_version
// set, each tensor in the planned type holding exactly the reference
// quantization of the input rows, and the model still predicting close to
// the float one.
func TestFile(t *testing.T) {
	dir := t.TempDir()
	in := smallModel(t, dir, tensor.F32)
	src, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ref := logits(t, in)
	fts := []FileType{MostlyQ4_0, MostlyQ4_1, MostlyQ5_0, MostlyQ5_1, MostlyQ8_0, MostlyQ2_K, MostlyQ3KS, MostlyQ3KM,
		MostlyQ3KL, MostlyQ4KS, MostlyQ4KM, MostlyQ5KS, MostlyQ5KM, MostlyQ6_K, MostlyIQ4NL, MostlyF16, MostlyBF16}
	if testing.Short() {
		fts = []FileType{MostlyQ4_0, MostlyQ4KM}
	}
	for _, ft := range fts {
		out := filepath.Join(dir, ft.String()+".gguf")
		res, _ := quantizeTo(t, in, out, ft, 2)
		f, err := gguf.Open(out)
		if err != nil {
			t.Fatalf("%s: %v", ft, err)
		}
		if v, _ := f.GetUint("general.file_type"); v != uint64(ft) {
			t.Errorf("%s: general.file_type %d", ft, v)
		}
		if v, _ := f.GetUint("general.quantization_version"); v != QuantizationVersion {
			t.Errorf("%s: general.quantization_version %d", ft, v)
		}
		for _, kv := range src.KV {
			v, ok := f.Get(kv.Key)
			if !ok || fmt.Sprint(v) != fmt.Sprint(kv.Value) {
				t.Errorf("%s: metadata %s not kept", ft, kv.Key)
			}
		}
		if len(f.Tensors) != len(res.Plan) {
			t.Fatalf("%s: %d tensors, plan has %d", ft, len(f.Tensors), len(res.Plan))
		}
		for i, c := range res.Plan {
			got := f.Tensors[i]
			if got.Name != c.Name || got.DType != c.To {
				t.Fatalf("%s: tensor %d is %s %s, want %s %s", ft, i, got.Name, got.DType, c.Name, c.To)
			}
			st, _ := src.Tensor(c.Name)
			want := st.Data
			if c.Quantized() {
				want = make([]byte, len(got.Data))
				x := make([]float32, st.NumElements())
				_ = tensor.Dequantize(st.DType, x, st.Data)
				if err := tensor.Quantize(c.To, want, x); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got.Data, want) {
				t.Errorf("%s: tensor %s differs from the reference quantization", ft, c.Name)
			}
		}
		f.Close()
		// The model still predicts: logits close to the float model's.
		q := logits(t, out)
		var num, den float64
		for i := range ref {
			d := float64(q[i] - ref[i])
			num += d * d
			den += float64(ref[i]) * float64(ref[i])
		}
		rel := math.Sqrt(num / den)
		if rel > 0.75 || math.IsNaN(rel) { // random weights: the 2-bit mix lands near 0.5
			t.Errorf("%s: logits differ from F32 by %.3f (relative RMS)", ft, rel)
		}
		t.Logf("%-6s %7.1f KiB, logits relative RMS error %.4f", ft, float64(res.OutBytes)/1024, rel)
	}
}

// TestFileThreads checks that the output does not depend on the thread count.
func TestFileThreads(t *testing.T) {
	dir := t.TempDir()
	in := smallModel(t, dir, tensor.F32)
	a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	quantizeTo(t, in, a, MostlyQ4KM, 1)
	quantizeTo(t, in, b, MostlyQ4KM, 5)
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Fatal("1 and 5 threads wrote different files")
	}
}

// TestRequantize checks that an already quantized input is accepted with
// a warning.
func TestRequantize(t *testing.T) {
	dir := t.TempDir()
	in := smallModel(t, dir, tensor.Q8_0)
	_, warnings := quantizeTo(t, in, filepath.Join(dir, "q4.gguf"), MostlyQ4_0, 2)
	if len(warnings) == 0 || !strings.Contains(warnings[0], "already Q8_0") {
		t.Fatalf("warnings: %q", warnings)
	}
}

// TestIndependentReader decodes a herd-quantized file with
// gpustack/gguf-parser-go, an independent GGUF implementation, and checks
// that it sees every tensor with the same type, shape and offset.
func TestIndependentReader(t *testing.T) {
	dir := t.TempDir()
	in := smallModel(t, dir, tensor.F32)
	for _, ft := range []FileType{MostlyQ4KM, MostlyQ3KM, MostlyIQ4NL} {
		out := filepath.Join(dir, ft.String()+".gguf")
		quantizeTo(t, in, out, ft, 2)
		pf, err := parser.ParseGGUFFile(out)
		if err != nil {
			t.Fatalf("%s: gguf-parser-go: %v", ft, err)
		}
		f, err := gguf.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(pf.TensorInfos) != len(f.Tensors) {
			t.Fatalf("%s: gguf-parser-go sees %d tensors, herd %d", ft, len(pf.TensorInfos), len(f.Tensors))
		}
		if pf.TensorDataStartOffset != f.DataOffset {
			t.Errorf("%s: data offset %d vs %d", ft, pf.TensorDataStartOffset, f.DataOffset)
		}
		for i, pt := range pf.TensorInfos {
			ht := f.Tensors[i]
			if pt.Name != ht.Name || uint32(pt.Type) != uint32(ht.DType) || fmt.Sprint(pt.Dimensions) != fmt.Sprint(ht.Dims) || pt.Offset != ht.Offset {
				t.Errorf("%s: gguf-parser-go reads %s %v %v @%d, herd %s %s %v @%d", ft, pt.Name, pt.Type, pt.Dimensions, pt.Offset,
					ht.Name, ht.DType, ht.Dims, ht.Offset)
			}
		}
		if kv, ok := pf.Header.MetadataKV.Get("general.file_type"); !ok || kv.ValueUint32() != uint32(ft) {
			t.Errorf("%s: gguf-parser-go reads general.file_type %v", ft, kv)
		}
		f.Close()
	}
}

// TestLlama2cQ8_0 is the byte-level check against an independent
// quantizer: llama2.c's export (runq.c's version-2 format) quantizes
// stories260K in groups of 32 with scale = max|x|/127 and q = round(x/scale),
// exactly Q8_0's rule except that it keeps the scale as float32 and rounds
// halves to even. herd's Q8_0 of the same float32 weights (each tensor
// quantized as one flat run, as ggml's quantize_row_q8_0_ref does) must
// give the same int8 values, and its float16 scale must be the float16
// rounding of llama2.c's float32 scale, for every group of every tensor.
func TestLlama2cQ8_0(t *testing.T) {
	fp, err := llama2c.Open("../format/llama2c/testdata/stories260K.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	q8, err := os.ReadFile("../format/llama2c/testdata/stories260K_q80_v2.bin")
	if err != nil {
		t.Fatal(err)
	}
	c := fp.Config
	if gs := int(binary.LittleEndian.Uint32(q8[37:])); gs != 32 {
		t.Fatalf("group size %d", gs)
	}
	off := 256 + 4*(2*c.NLayers*c.Dim+c.Dim) // skip the header and the float32 norms
	names := []string{"token_embd.weight"}
	for _, fam := range []string{"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"} {
		for l := 0; l < c.NLayers; l++ {
			names = append(names, fmt.Sprintf("blk.%d.%s.weight", l, fam))
		}
	}
	var groups, intDiff, scaleDiff int
	for _, name := range names {
		ft, ok := fp.Tensor(name)
		if !ok || ft.DType != tensor.F32 {
			t.Fatalf("%s: missing or not F32", name)
		}
		x := tensor.F32s(ft.Data)
		n := len(x)
		qs := q8[off : off+n]
		ss := q8[off+n : off+n+4*(n/32)]
		off += n + 4*(n/32)
		got := make([]byte, n/32*34)
		tensor.QuantizeRowQ8_0(got, x)
		for g := 0; g < n/32; g++ {
			groups++
			s := math.Float32frombits(binary.LittleEndian.Uint32(ss[4*g:]))
			if binary.LittleEndian.Uint16(got[34*g:]) != tensor.F32ToF16(s) {
				scaleDiff++
			}
			if !bytes.Equal(got[34*g+2:34*g+34], qs[32*g:32*g+32]) {
				intDiff++
			}
		}
	}
	if off != len(q8) {
		t.Fatalf("read %d of %d bytes of the version-2 file", off, len(q8))
	}
	if intDiff != 0 || scaleDiff != 0 {
		t.Errorf("%d groups: %d differ in their int8 values, %d in their scale", groups, intDiff, scaleDiff)
	}
	t.Logf("%d groups of 32 in %d tensors: int8 values and scales identical", groups, len(names))
}
