package llama2c

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herd-llm/herd/tensor"
)

const (
	v0File  = "testdata/stories260K.bin"
	v2File  = "testdata/stories260K_q80_v2.bin"
	tokFile = "testdata/tok512.bin"
)

var stories260K = Config{Dim: 64, HiddenDim: 172, NLayers: 5, NHeads: 8, NKVHeads: 4, VocabSize: 512, SeqLen: 512, SharedClassifier: true}

func mustOpen(t testing.TB, path string) *Checkpoint {
	t.Helper()
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// f32 returns a tensor's values as float32, whatever its dtype.
func f32(t testing.TB, x *Tensor) []float32 {
	t.Helper()
	out := make([]float32, numElems(x.Dims))
	if err := tensor.Dequantize(x.DType, out, x.Data); err != nil {
		t.Fatalf("%s: %v", x.Name, err)
	}
	return out
}

func TestReadLegacy(t *testing.T) {
	c := mustOpen(t, v0File)
	if c.Config != stories260K {
		t.Fatalf("config %+v, want %+v", c.Config, stories260K)
	}
	if len(c.Tensors) != 2+9*5 {
		t.Fatalf("%d tensors", len(c.Tensors))
	}
	if !slices.Equal(c.Config.order(), names(c.Tensors)) {
		t.Errorf("tensor order %v", names(c.Tensors))
	}
	raw, err := os.ReadFile(v0File)
	if err != nil {
		t.Fatal(err)
	}
	// The token embedding is the first array after the 28-byte header, and
	// every tensor is a float32 view of the file.
	emb, _ := c.Tensor("token_embd.weight")
	if !slices.Equal(emb.Dims, []uint64{64, 512}) || !bytes.Equal(emb.Data, raw[28:28+64*512*4]) {
		t.Errorf("token_embd: dims %v", emb.Dims)
	}
	wantDims := map[string][]uint64{
		"blk.3.attn_norm.weight": {64}, "blk.3.attn_q.weight": {64, 64}, "blk.3.attn_k.weight": {64, 32},
		"blk.3.attn_v.weight": {64, 32}, "blk.3.attn_output.weight": {64, 64}, "blk.3.ffn_norm.weight": {64},
		"blk.3.ffn_gate.weight": {64, 172}, "blk.3.ffn_down.weight": {172, 64}, "blk.3.ffn_up.weight": {64, 172},
		"output_norm.weight": {64},
	}
	for name, dims := range wantDims {
		x, ok := c.Tensor(name)
		if !ok || x.DType != tensor.F32 || !slices.Equal(x.Dims, dims) || len(x.Data) != int(numElems(dims))*4 {
			t.Errorf("%s: %v", name, x)
		}
	}
	if _, ok := c.Tensor("output.weight"); ok {
		t.Error("shared classifier exposed as output.weight")
	}
	// The final norm sits right before the RoPE tables, which end the file.
	fc := len(raw) - len(c.FreqCis)
	norm, _ := c.Tensor("output_norm.weight")
	if len(c.FreqCis) != 2*512*4*4 || !bytes.Equal(norm.Data, raw[fc-256:fc]) {
		t.Errorf("freq_cis %d bytes / output_norm misplaced", len(c.FreqCis))
	}
	if err := c.Close(); err != nil || c.Tensors[0].Data != nil {
		t.Errorf("Close: %v", err)
	}
}

func names(ts []Tensor) []string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Name)
	}
	return s
}

// TestReadV2 checks the Q8_0 file against the float32 one: every weight
// within one quantization step of its group (max|x|/127 per tensor bounds it).
func TestReadV2(t *testing.T) {
	q := mustOpen(t, v2File)
	want := stories260K
	want.Version, want.GroupSize = 2, 32
	if q.Config != want {
		t.Fatalf("config %+v", q.Config)
	}
	f := mustOpen(t, v0File)
	if !slices.Equal(names(q.Tensors), names(f.Tensors)) {
		t.Fatalf("tensor names differ: %v", names(q.Tensors))
	}
	for i := range q.Tensors {
		a, b := &f.Tensors[i], &q.Tensors[i]
		if !slices.Equal(a.Dims, b.Dims) {
			t.Fatalf("%s: dims %v, want %v", b.Name, b.Dims, a.Dims)
		}
		// Rows of 172 (ffn_down) are not whole Q8_0 blocks: those dequantize.
		wantType := tensor.Q8_0
		if len(a.Dims) == 1 || a.Dims[0]%32 != 0 {
			wantType = tensor.F32
		}
		if b.DType != wantType {
			t.Errorf("%s: dtype %s, want %s", b.Name, b.DType, wantType)
		}
		x, y := f32(t, a), f32(t, b)
		var amax, maxErr float64
		for j := range x {
			amax = max(amax, math.Abs(float64(x[j])))
			maxErr = max(maxErr, math.Abs(float64(x[j]-y[j])))
		}
		if len(a.Dims) == 1 {
			if maxErr != 0 {
				t.Errorf("%s: norm differs by %g", b.Name, maxErr)
			}
		} else if maxErr > amax/127 {
			t.Errorf("%s: max error %g, bound %g", b.Name, maxErr, amax/127)
		}
	}
}

// TestRoundTripLegacy rewrites stories260K.bin byte for byte.
func TestRoundTripLegacy(t *testing.T) {
	c := mustOpen(t, v0File)
	raw, _ := os.ReadFile(v0File)
	var buf bytes.Buffer
	if n, err := c.WriteTo(&buf); err != nil || n != int64(len(raw)) {
		t.Fatalf("WriteTo: %d %v", n, err)
	}
	if !bytes.Equal(buf.Bytes(), raw) {
		t.Fatal("rewritten file differs")
	}
	// Tensors in another order and computed RoPE tables: equal up to the
	// tables, which match llama2.c's float32 computation closely.
	d := &Checkpoint{Config: c.Config, Tensors: slices.Clone(c.Tensors)}
	slices.Reverse(d.Tensors)
	buf.Reset()
	if _, err := d.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	fc := len(raw) - len(c.FreqCis)
	if !bytes.Equal(buf.Bytes()[:fc], raw[:fc]) {
		t.Fatal("weights differ")
	}
	got, want := tensor.F32s(buf.Bytes()[fc:]), tensor.F32s(raw[fc:])
	exact := 0
	for i := range want {
		if got[i] == want[i] {
			exact++
		}
		if math.Abs(float64(got[i]-want[i])) > 2e-6 {
			t.Fatalf("freq_cis[%d] = %g, want %g", i, got[i], want[i])
		}
	}
	t.Logf("computed RoPE tables: %d of %d values bit-identical to llama2.c's", exact, len(want))
}

// TestWriteV2MatchesExport quantizes the float32 model as llama2.c's export
// does and gets the shared version 2 file byte for byte.
func TestWriteV2MatchesExport(t *testing.T) {
	c := mustOpen(t, v0File)
	c.Config.Version, c.Config.GroupSize = 2, 32
	raw, _ := os.ReadFile(v2File)
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), raw) {
		t.Fatalf("version 2 export differs from %s (%d vs %d bytes)", v2File, buf.Len(), len(raw))
	}
}

// TestRoundTripVersions writes every version from both real files, with
// shared and separate classifiers, and reads each back.
func TestRoundTripVersions(t *testing.T) {
	for _, src := range []string{v0File, v2File} {
		for _, version := range []int{0, 1, 2} {
			for _, shared := range []bool{true, false} {
				c := mustOpen(t, src)
				cfg := c.Config
				cfg.Version, cfg.SharedClassifier, cfg.GroupSize = version, shared, 0
				ts := slices.Clone(c.Tensors)
				if !shared {
					emb, _ := c.Tensor("token_embd.weight")
					out := f32(t, emb)
					for i := range out {
						out[i] *= -2
					}
					ts = append(ts, Tensor{Name: "output.weight", DType: tensor.F32, Dims: emb.Dims, Data: tensor.BytesOfF32(out)})
				}
				if version == 2 {
					cfg.GroupSize = 64
				}
				path := filepath.Join(t.TempDir(), "m.bin")
				if err := (&Checkpoint{Config: cfg, Tensors: ts}).WriteFile(path); err != nil {
					t.Fatal(err)
				}
				d := mustOpen(t, path)
				if d.Config != cfg {
					t.Fatalf("%s v%d shared %v: config %+v, want %+v", src, version, shared, d.Config, cfg)
				}
				if len(d.Tensors) != len(ts) {
					t.Fatalf("%d tensors, want %d", len(d.Tensors), len(ts))
				}
				for _, x := range ts {
					y, ok := d.Tensor(x.Name)
					if !ok {
						t.Fatalf("%s missing", x.Name)
					}
					a, b := f32(t, &x), f32(t, y)
					tol := 0.0
					if version == 2 && len(x.Dims) == 2 {
						for _, v := range a {
							tol = max(tol, math.Abs(float64(v))/127)
						}
					}
					for i := range a {
						if math.Abs(float64(a[i]-b[i])) > tol {
							t.Fatalf("%s v%d shared %v: %s[%d] = %g, want %g", src, version, shared, x.Name, i, b[i], a[i])
						}
					}
				}
			}
		}
	}
}

func TestWriteErrors(t *testing.T) {
	c := mustOpen(t, v0File)
	emb, _ := c.Tensor("token_embd.weight")
	cases := []struct {
		name string
		mod  func(*Checkpoint)
		want string
	}{
		{"missing", func(d *Checkpoint) { d.Tensors = d.Tensors[1:] }, `missing tensor "token_embd.weight"`},
		{"extra", func(d *Checkpoint) { d.Tensors = append(d.Tensors, *emb) }, `duplicate tensor "token_embd.weight"`},
		{"output with shared", func(d *Checkpoint) {
			d.Tensors = append(d.Tensors, Tensor{Name: "output.weight", DType: tensor.F32, Dims: emb.Dims, Data: emb.Data})
		}, `tensor "output.weight" has no place`},
		{"unknown", func(d *Checkpoint) { d.Tensors[1].Name = "blk.9.attn_norm.weight" }, "has no place"},
		{"dims", func(d *Checkpoint) { d.Tensors[0].Dims = []uint64{512, 64} }, "has dims [512 64], want [64 512]"},
		{"short data", func(d *Checkpoint) { d.Tensors[0].Data = d.Tensors[0].Data[:100] }, "100 bytes of F32 data"},
		{"dtype", func(d *Checkpoint) { d.Tensors[0].DType = tensor.Q4_K }, "Q4_K"},
		{"version", func(d *Checkpoint) { d.Config.Version = 3 }, "unsupported version 3"},
		{"group size", func(d *Checkpoint) { d.Config.Version, d.Config.GroupSize = 2, 48 }, "group size 48 does not divide"},
		{"no group size", func(d *Checkpoint) { d.Config.Version = 2 }, "group size is 0"},
		{"group size v1", func(d *Checkpoint) { d.Config.Version, d.Config.GroupSize = 1, 32 }, "group size 32 given for version 1"},
		{"heads", func(d *Checkpoint) { d.Config.NHeads = 7 }, "n_heads 7 does not divide dim 64"},
	}
	for _, tc := range cases {
		d := &Checkpoint{Config: c.Config, Tensors: slices.Clone(c.Tensors)}
		tc.mod(d)
		_, err := d.WriteTo(&bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := (&Checkpoint{Config: c.Config, Tensors: c.Tensors}).WriteFile(filepath.Join(t.TempDir(), "no", "m.bin")); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

// le32 overwrites the int32 at off.
func le32(b []byte, off int, v int32) []byte {
	b = slices.Clone(b)
	binary.LittleEndian.PutUint32(b[off:], uint32(v))
	return b
}

func TestParseErrors(t *testing.T) {
	v0, _ := os.ReadFile(v0File)
	v2, _ := os.ReadFile(v2File)
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated header"},
		{"short legacy", v0[:27], "truncated header"},
		{"short ak42", v2[:255], "truncated header: 255 bytes, want 256"},
		{"truncated", v0[:len(v0)-1], "file is 1056539 bytes"},
		{"trailing", append(slices.Clone(v0), 0), "file is 1056541 bytes"},
		{"unshared but no classifier", le32(v0, 20, -512), "implies 1187612"},
		{"dim 0", le32(v0, 0, 0), "dim is 0"},
		{"negative hidden", le32(v0, 4, -1), "hidden_dim is -1"},
		{"vocab min int32", le32(v0, 20, math.MinInt32), "vocab_size is 2147483648"},
		{"layers", le32(v0, 8, 0), "n_layers is 0"},
		{"seq", le32(v0, 24, -5), "seq_len is -5"},
		{"heads", le32(v0, 12, 5), "n_heads 5 does not divide dim 64"},
		{"kv heads", le32(v0, 16, 3), "n_kv_heads 3 does not divide n_heads 8"},
		{"kv > heads", le32(v0, 16, 16), "n_kv_heads 16 does not divide n_heads 8"},
		{"odd head size", le32(le32(v0, 12, 64), 16, 64), "head size 1"},
		{"overflow", le32(le32(v0, 0, 1<<30), 4, math.MaxInt32), "overflow"},
		{"huge", le32(v0, 4, math.MaxInt32), "implies"},
		{"version 3", le32(v2, 4, 3), "unsupported ak42 checkpoint version 3"},
		{"version 0 ak42", le32(v2, 4, 0), "unsupported ak42 checkpoint version 0"},
		{"negative vocab v2", le32(v2, 28, -512), "vocab_size is -512"},
		{"group size 0", le32(v2, 37, 0), "group size is 0"},
		{"group size 48", le32(v2, 37, 48), "group size 48 does not divide"},
		{"group size 64", le32(v2, 37, 64), "file is 294816 bytes"},
		{"flag", func() []byte { b := slices.Clone(v2); b[36] = 2; return b }(), "shared-classifier flag is 2"},
		{"padding", func() []byte { b := slices.Clone(v2); b[200] = 1; return b }(), "padding byte 200 is 1"},
	}
	for _, tc := range cases {
		_, err := Parse("bad.bin", tc.b)
		if err == nil {
			t.Errorf("%s: parsed", tc.name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "llama2c bad.bin: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to name the file and contain %q", tc.name, err, tc.want)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "none.bin")); err == nil || !strings.Contains(err.Error(), "none.bin") {
		t.Errorf("missing file: %v", err)
	}
}

func TestTokenizer(t *testing.T) {
	raw, err := os.ReadFile(tokFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, vs := range []int{512, 0} {
		tok, err := ParseTokenizer(tokFile, raw, vs)
		if err != nil {
			t.Fatal(err)
		}
		if tok.MaxTokenLength != 7 || len(tok.Pieces) != 512 || len(tok.Scores) != 512 {
			t.Fatalf("max %d, %d pieces, %d scores", tok.MaxTokenLength, len(tok.Pieces), len(tok.Scores))
		}
		if tok.Pieces[0] != "<unk>" || tok.Pieces[1] != "\n<s>\n" || tok.Pieces[2] != "\n</s>\n" || tok.Pieces[3] != "<0x00>" {
			t.Errorf("pieces %q", tok.Pieces[:4])
		}
		var buf bytes.Buffer
		if _, err := tok.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), raw) {
			t.Fatalf("round trip differs: %v", err)
		}
	}
	tok, err := ReadTokenizer(tokFile, 512)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tok.bin")
	tok.MaxTokenLength = 0 // recomputed
	if err := WriteTokenizer(path, tok); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, raw) {
		t.Error("WriteTokenizer output differs")
	}
	const shared = "/work/shared/data/tokenizers/llama2c-tokenizer.bin"
	if big, err := os.ReadFile(shared); err == nil {
		tok, err := ParseTokenizer(shared, big, 32000)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if tok.MaxTokenLength != 27 || tok.Pieces[29871] != " " {
			t.Errorf("LLaMA tokenizer: max %d, piece 29871 %q", tok.MaxTokenLength, tok.Pieces[29871])
		}
		if _, err := tok.WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), big) {
			t.Errorf("LLaMA tokenizer round trip differs: %v", err)
		}
	} else {
		t.Logf("skipping %s: shared data kit absent", shared)
	}
}

func TestTokenizerErrors(t *testing.T) {
	raw, _ := os.ReadFile(tokFile)
	cases := []struct {
		name string
		b    []byte
		vs   int
		want string
	}{
		{"empty", nil, 0, "truncated"},
		{"negative max", le32(raw, 0, -1), 0, "max_token_length is -1"},
		{"too long", le32(raw, 0, 4), 0, "token 0 at offset 8: length 5, want 0 to max_token_length 4"},
		{"negative len", le32(raw, 8, -3), 0, "length -3"},
		{"past end", raw[:len(raw)-1], 0, "runs past the end"},
		{"partial record", append(slices.Clone(raw), 1, 2, 3), 0, "truncated"},
		{"trailing", raw, 511, "bytes left after 511 tokens"},
		{"too few", raw, 513, "token 512 at offset 6227: truncated"},
		{"huge vocab", raw, 1 << 40, "cannot fit"},
	}
	for _, tc := range cases {
		_, err := ParseTokenizer("bad.bin", tc.b, tc.vs)
		if err == nil || !strings.HasPrefix(err.Error(), "llama2c tokenizer bad.bin: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := ReadTokenizer(filepath.Join(t.TempDir(), "none.bin"), 0); err == nil {
		t.Error("missing file read")
	}
	bad := &Tokenizer{MaxTokenLength: 2, Pieces: []string{"abc"}, Scores: []float32{0}}
	if _, err := bad.WriteTo(&bytes.Buffer{}); err == nil {
		t.Error("piece longer than max_token_length written")
	}
	bad = &Tokenizer{Pieces: []string{"a"}}
	if _, err := bad.WriteTo(&bytes.Buffer{}); err == nil {
		t.Error("pieces without scores written")
	}
}

func BenchmarkOpenV2(b *testing.B) {
	raw, _ := os.ReadFile(v2File)
	b.SetBytes(int64(len(raw)))
	for range b.N {
		if _, err := Parse(v2File, raw); err != nil {
			b.Fatal(err)
		}
	}
}
