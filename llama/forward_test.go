package llama

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// refForward is an independent float64 LLaMA forward over all tokens from
// position 0, written plainly from the paper's equations; it returns logits
// for every position.
func refForward(m *Model, tokens []int) [][]float64 { return refForwardKV(m, tokens, false) }

// refForwardKV is refForward with, when f16kv, the keys and values rounded
// to F16 as an F16 KV cache stores them.
func refForwardKV(m *Model, tokens []int, f16kv bool) [][]float64 {
	c := m.Config
	hd, kvd := c.HeadDim(), c.KVDim()
	mat := func(l *nn.Linear) [][]float64 {
		w := make([][]float64, l.Out)
		row := make([]float32, l.In)
		for r := range w {
			l.Row(row, r)
			w[r] = make([]float64, l.In)
			for i, v := range row {
				w[r][i] = float64(v)
			}
		}
		return w
	}
	mv := func(w [][]float64, x []float64) []float64 {
		y := make([]float64, len(w))
		for r := range w {
			for i, v := range x {
				y[r] += w[r][i] * v
			}
		}
		return y
	}
	norm := func(x []float64, g []float32) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		s := 1 / math.Sqrt(ss/float64(len(x))+float64(c.NormEps))
		y := make([]float64, len(x))
		for i := range x {
			y[i] = x[i] * s * float64(g[i])
		}
		return y
	}
	rope := func(x []float64, heads, pos int) {
		for h := 0; h < heads; h++ {
			v := x[h*hd : (h+1)*hd]
			for i := 0; i < hd/2; i++ {
				f := math.Pow(float64(c.RopeTheta), -float64(2*i)/float64(hd))
				a := float64(pos) * f
				cs, sn := math.Cos(a), math.Sin(a)
				j0, j1 := 2*i, 2*i+1
				if c.Rope == RopeHalf {
					j0, j1 = i, i+hd/2
				}
				x0, x1 := v[j0], v[j1]
				v[j0], v[j1] = x0*cs-x1*sn, x0*sn+x1*cs
			}
		}
	}
	emb := mat(m.Embed)
	n := len(tokens)
	x := make([][]float64, n)
	for t, tok := range tokens {
		x[t] = append([]float64(nil), emb[tok]...)
	}
	for _, l := range m.Layers {
		wq, wk, wv, wo := mat(l.Wq), mat(l.Wk), mat(l.Wv), mat(l.Wo)
		wg, wu, wd := mat(l.Gate), mat(l.Up), mat(l.Down)
		q, k, v := make([][]float64, n), make([][]float64, n), make([][]float64, n)
		for t := range x {
			h := norm(x[t], l.AttnNorm)
			q[t], k[t], v[t] = mv(wq, h), mv(wk, h), mv(wv, h)
			rope(q[t], c.NHeads, t)
			rope(k[t], c.NKVHeads, t)
			if f16kv {
				for i := range k[t] {
					k[t][i] = float64(tensor.F16ToF32(tensor.F32ToF16(float32(k[t][i]))))
					v[t][i] = float64(tensor.F16ToF32(tensor.F32ToF16(float32(v[t][i]))))
				}
			}
		}
		for t := range x {
			att := make([]float64, c.Dim)
			for h := 0; h < c.NHeads; h++ {
				kh := h / (c.NHeads / c.NKVHeads)
				sc := make([]float64, t+1)
				mx := math.Inf(-1)
				for s := 0; s <= t; s++ {
					for i := 0; i < hd; i++ {
						sc[s] += q[t][h*hd+i] * k[s][kh*hd+i]
					}
					sc[s] /= math.Sqrt(float64(hd))
					mx = math.Max(mx, sc[s])
				}
				var sum float64
				for s := range sc {
					sc[s] = math.Exp(sc[s] - mx)
					sum += sc[s]
				}
				for s := range sc {
					for i := 0; i < hd; i++ {
						att[h*hd+i] += sc[s] / sum * v[s][kh*hd+i]
					}
				}
			}
			_ = kvd
			o := mv(wo, att)
			for i := range o {
				x[t][i] += o[i]
			}
			h := norm(x[t], l.FFNNorm)
			g, u := mv(wg, h), mv(wu, h)
			for i := range g {
				g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
			}
			d := mv(wd, g)
			for i := range d {
				x[t][i] += d[i]
			}
		}
	}
	out := mat(m.Output)
	logits := make([][]float64, n)
	for t := range x {
		logits[t] = mv(out, norm(x[t], m.OutNorm))
	}
	return logits
}

func testConfig() Config {
	return Config{Dim: 32, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 64, VocabSize: 37, ContextLen: 16,
		RopeTheta: 10000, NormEps: 1e-5}
}

// randomModel builds a small model with random norm gains, so every weight matters.
func randomModel(t *testing.T, c Config, dt tensor.DType) *Model {
	t.Helper()
	m, err := Random(c, dt, 7)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, v := range append([][]float32{m.OutNorm}, func() (g [][]float32) {
		for _, l := range m.Layers {
			g = append(g, l.AttnNorm, l.FFNNorm)
		}
		return
	}()...) {
		for i := range v {
			v[i] = float32(0.5 + rng.Float64())
		}
	}
	return m
}

// maxRelErr is max |got-want| / max |want| over a row.
func maxRelErr(got []float32, want []float64) float64 {
	var e, s float64
	for i := range want {
		e = math.Max(e, math.Abs(float64(got[i])-want[i]))
		s = math.Max(s, math.Abs(want[i]))
	}
	return e / s
}

func TestForwardMatchesReference(t *testing.T) {
	cases := []struct {
		name string
		dt   tensor.DType
		rope RopeLayout
		tied bool
		tol  float64
	}{
		{"f32", tensor.F32, RopeInterleaved, false, 1e-4},
		{"f32-half-rope-tied", tensor.F32, RopeHalf, true, 1e-4},
		{"f16", tensor.F16, RopeInterleaved, false, 1e-4},
		{"bf16", tensor.BF16, RopeInterleaved, true, 1e-4},
		// the quantized kernels quantize activations to Q8_0: errors of a few 1e-3
		{"q8_0", tensor.Q8_0, RopeInterleaved, false, 3e-2},
		{"q4_0", tensor.Q4_0, RopeInterleaved, false, 6e-2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			c.Rope, c.TiedEmbeddings = tc.rope, tc.tied
			m := randomModel(t, c, tc.dt)
			tokens := []int{1, 5, 9, 36, 0, 17, 17, 3, 22, 11}
			for _, kvf32 := range []bool{false, true} {
				m.KVF32 = kvf32
				t.Run(map[bool]string{false: "kv-f16", true: "kv-f32"}[kvf32], func(t *testing.T) {
					testForwardMatchesReference(t, m, tokens, tc.tol)
				})
			}
		})
	}
}

func testForwardMatchesReference(t *testing.T, m *Model, tokens []int, tol float64) {
	c := m.Config
	want := refForwardKV(m, tokens, !m.KVF32)

	// the whole sequence in one batch, logits for every position
	var s State
	cache := m.NewKVCache(c.ContextLen)
	got, err := m.Forward(&s, cache, tokens, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	for p := range tokens {
		if e := maxRelErr(got[p*c.VocabSize:(p+1)*c.VocabSize], want[p]); e > tol {
			t.Errorf("batched: position %d: relative error %.3g > %.3g", p, e, tol)
		}
	}
	// a prompt of 4, then one token at a time through the cache
	cache = m.NewKVCache(c.ContextLen)
	got, err = m.Forward(&s, cache, tokens[:4], 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if e := maxRelErr(got, want[3]); e > tol {
		t.Errorf("prompt: last position: relative error %.3g", e)
	}
	for p := 4; p < len(tokens); p++ {
		got, err = m.Forward(&s, cache, tokens[p:p+1], p, false)
		if err != nil {
			t.Fatal(err)
		}
		if e := maxRelErr(got, want[p]); e > tol {
			t.Errorf("incremental: position %d: relative error %.3g > %.3g", p, e, tol)
		}
	}
}

func TestForwardErrors(t *testing.T) {
	c := testConfig()
	m := randomModel(t, c, tensor.F32)
	var s State
	cache := m.NewKVCache(4)
	if _, err := m.Forward(&s, cache, []int{1, 2, 3, 4, 5}, 0, false); err == nil {
		t.Error("a batch past the context was accepted")
	}
	if _, err := m.Forward(&s, cache, []int{37}, 0, false); err == nil {
		t.Error("a token outside the vocabulary was accepted")
	}
	if _, err := m.Forward(&s, cache, []int{1}, 2, false); err == nil {
		t.Error("a position that skips the cache was accepted")
	}
	if _, err := m.Forward(&s, cache, nil, 0, false); err == nil {
		t.Error("an empty batch was accepted")
	}
}

func TestPresetsValid(t *testing.T) {
	for _, p := range Presets {
		if err := p.Config.Validate(); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
		if p.Source == "" {
			t.Errorf("%s: no source", p.Name)
		}
	}
	p, err := LookupPreset("TinyLlama-1.1B")
	if err != nil {
		t.Fatal(err)
	}
	// TinyLlama-1.1B has 1,100,048,384 parameters (its model card says 1.1B)
	if got := p.Config.Params(); got != 1100048384 {
		t.Errorf("tinyllama params = %d", got)
	}
	if _, err := LookupPreset("nope"); err == nil {
		t.Error("unknown preset accepted")
	}
}

// A batch of sequences at different positions gives each the logits it gets alone.
func TestForwardBatchMatchesSingle(t *testing.T) {
	c := testConfig()
	m := randomModel(t, c, tensor.F32)
	prompts := [][]int{{1, 2, 3}, {4}, {5, 6, 7, 8, 9}}
	alone := make([][]float32, len(prompts))
	var s State
	for i, p := range prompts {
		cache := m.NewKVCache(c.ContextLen)
		// a first part through the cache, then the rest
		if _, err := m.Forward(&s, cache, p[:1], 0, false); err != nil {
			t.Fatal(err)
		}
		var err error
		rest := append([]int{11}, p[1:]...)
		got, err := m.Forward(&s, cache, rest, 1, true)
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = append([]float32(nil), got...)
	}
	seqs := make([]Seq, len(prompts))
	for i, p := range prompts {
		cache := m.NewKVCache(c.ContextLen)
		if _, err := m.Forward(&s, cache, p[:1], 0, false); err != nil {
			t.Fatal(err)
		}
		seqs[i] = Seq{Tokens: append([]int{11}, p[1:]...), Cache: cache, All: i != 1}
	}
	got, err := m.ForwardBatch(&s, seqs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range prompts {
		want := alone[i]
		if !seqs[i].All {
			want = want[len(want)-c.VocabSize:]
		}
		if len(got[i]) != len(want) {
			t.Fatalf("sequence %d: %d logits, want %d", i, len(got[i]), len(want))
		}
		for j := range want {
			if d := math.Abs(float64(got[i][j] - want[j])); d > 1e-4 {
				t.Fatalf("sequence %d: logit %d: %g vs %g alone", i, j, got[i][j], want[j])
			}
		}
		if seqs[i].Cache.Len != len(prompts[i])+1 {
			t.Errorf("sequence %d: cache length %d", i, seqs[i].Cache.Len)
		}
	}
	if _, err := m.ForwardBatch(&s, []Seq{{Tokens: []int{1}, Cache: seqs[0].Cache}, {Tokens: []int{1}, Cache: seqs[0].Cache}}); err == nil {
		t.Error("two sequences sharing a cache were accepted")
	}
}

func TestKVCacheTypes(t *testing.T) {
	c := testConfig()
	m := randomModel(t, c, tensor.F32)
	if kc := m.NewKVCache(8); kc.DType != tensor.F16 || kc.Bytes() != c.KVCacheBytes(8, tensor.F16) {
		t.Errorf("default cache: %s of %d bytes, want F16 of %d", kc.DType, kc.Bytes(), c.KVCacheBytes(8, tensor.F16))
	}
	m.KVF32 = true
	if kc := m.NewKVCache(8); kc.DType != tensor.F32 || kc.Bytes() != c.KVCacheBytes(8, tensor.F32) {
		t.Errorf("KVF32 cache: %s of %d bytes, want F32 of %d", kc.DType, kc.Bytes(), c.KVCacheBytes(8, tensor.F32))
	}
	if c.KVCacheBytes(8, tensor.F32) != 2*c.KVCacheBytes(8, tensor.F16) {
		t.Error("an F16 cache is not half an F32 one")
	}
	for in, want := range map[string]tensor.DType{"f16": tensor.F16, "F32": tensor.F32} {
		if got, err := ParseKVType(in); err != nil || got != want {
			t.Errorf("ParseKVType(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseKVType("q8_0"); err == nil {
		t.Error("ParseKVType accepted q8_0")
	}
}

// TestHidden: the hidden states Hidden returns are what the output head
// turns into ForwardBatch's logits, and the caches advance the same way.
func TestHidden(t *testing.T) {
	c := testConfig()
	m := randomModel(t, c, tensor.F32)
	toks := [][]int{{1, 5, 9, 36}, {17, 3}}
	var s1, s2 State
	seqs := func() []Seq {
		return []Seq{{Tokens: toks[0], Cache: m.NewKVCache(8), All: true}, {Tokens: toks[1], Cache: m.NewKVCache(8)}}
	}
	sl, sh := seqs(), seqs()
	logits, err := m.ForwardBatch(&s1, sl)
	if err != nil {
		t.Fatal(err)
	}
	hidden, err := m.Hidden(&s2, sh)
	if err != nil {
		t.Fatal(err)
	}
	row := make([]float32, c.Dim)
	for i := range sl {
		if sl[i].Cache.Len != sh[i].Cache.Len {
			t.Errorf("sequence %d: cache at %d after Hidden, %d after ForwardBatch", i, sh[i].Cache.Len, sl[i].Cache.Len)
		}
		rows := len(hidden[i]) / c.Dim
		if rows*c.VocabSize != len(logits[i]) {
			t.Fatalf("sequence %d: %d hidden rows for %d logits", i, rows, len(logits[i]))
		}
		for r := range rows {
			want := make([]float64, c.VocabSize)
			for v := range want {
				m.Output.Row(row, v)
				for d, x := range row {
					want[v] += float64(x) * float64(hidden[i][r*c.Dim+d])
				}
			}
			if e := maxRelErr(logits[i][r*c.VocabSize:(r+1)*c.VocabSize], want); e > 1e-5 {
				t.Errorf("sequence %d row %d: logits differ from Output·hidden by %.3g", i, r, e)
			}
		}
	}
}

// TestALiBiSlopes: the slopes of ALiBi for 8 heads are 2^-1 … 2^-8, and
// for 40 heads (Baichuan-13B) those of 32 heads then every other one of 64.
func TestALiBiSlopes(t *testing.T) {
	s8 := ALiBiSlopes(8)
	for i, s := range s8 {
		if want := math.Pow(2, -float64(i+1)); math.Abs(float64(s)-want) > 1e-7 {
			t.Fatalf("8 heads: slope %d = %g, want %g", i, s, want)
		}
	}
	s40 := ALiBiSlopes(40)
	for i, s := range s40 {
		want := math.Pow(2, -0.25*float64(i+1)) // 32 heads: 2^(-8/32·(i+1))
		if i >= 32 {
			want = math.Pow(2, -0.125*float64(2*(i-32)+1)) // 64 heads, odd exponents
		}
		if math.Abs(float64(s)-want) > 1e-7 {
			t.Fatalf("40 heads: slope %d = %g, want %g", i, s, want)
		}
	}
}
