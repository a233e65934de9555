package convert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
)

// metaParams is Meta's params.json.
type metaParams struct {
	Dim        int      `json:"dim"`
	NLayers    int      `json:"n_layers"`
	NHeads     int      `json:"n_heads"`
	NKVHeads   int      `json:"n_kv_heads"`
	VocabSize  int      `json:"vocab_size"`
	MultipleOf int      `json:"multiple_of"`
	FFNMult    *float64 `json:"ffn_dim_multiplier"`
	NormEps    float64  `json:"norm_eps"`
	RopeTheta  float64  `json:"rope_theta"`
	MaxSeqLen  int      `json:"max_seq_len"`
}

// ffnDim is the feed-forward width Meta's model.py derives from params.
func (p metaParams) ffnDim() int {
	h := 4 * p.Dim
	h = 2 * h / 3
	if p.FFNMult != nil {
		h = int(*p.FFNMult * float64(h))
	}
	m := max(p.MultipleOf, 1)
	return m * ((h + m - 1) / m)
}

// metaNames maps Meta's per-layer names to GGUF's, with the axis along
// which model parallelism split each tensor (0: rows, ColumnParallelLinear;
// 1: columns, RowParallelLinear and ParallelEmbedding; -1: replicated).
var metaNames = []struct {
	meta, gguf string
	axis       int
}{
	{"attention_norm.weight", "attn_norm.weight", -1},
	{"attention.wq.weight", "attn_q.weight", 0},
	{"attention.wk.weight", "attn_k.weight", 0},
	{"attention.wv.weight", "attn_v.weight", 0},
	{"attention.wo.weight", "attn_output.weight", 1},
	{"ffn_norm.weight", "ffn_norm.weight", -1},
	{"feed_forward.w1.weight", "ffn_gate.weight", 0},
	{"feed_forward.w2.weight", "ffn_down.weight", 1},
	{"feed_forward.w3.weight", "ffn_up.weight", 0},
}

// openMeta opens Meta's layout: params.json, consolidated.NN.pth and
// tokenizer.model. Meta's RoPE pairs interleaved elements, as GGUF does, so
// q and k are kept as they are.
func openMeta(dir string) (src *Source, err error) {
	ppath := filepath.Join(dir, "params.json")
	data, err := os.ReadFile(ppath)
	if err != nil {
		return nil, err
	}
	var p metaParams
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", ppath, err)
	}
	shards, _ := filepath.Glob(filepath.Join(dir, "consolidated.*.pth"))
	sort.Strings(shards)
	if len(shards) == 0 {
		return nil, fmt.Errorf("%s: no consolidated.NN.pth beside params.json", dir)
	}
	for i, sh := range shards {
		if want := filepath.Join(dir, fmt.Sprintf("consolidated.%02d.pth", i)); sh != want {
			return nil, fmt.Errorf("%s: shard %s is missing (found %d shards)", dir, want, len(shards))
		}
	}
	parts := make([]*weights, len(shards))
	s := &Source{Path: dir, Layout: "meta", Arch: "llama (Meta)"}
	defer closeOnError(s, &err)
	all := &weights{byName: map[string]*srcTensor{}}
	s.w = all
	for i, sh := range shards {
		w := &weights{byName: map[string]*srcTensor{}}
		if err := w.openPyTorch(sh); err != nil {
			return nil, err
		}
		all.closers = append(all.closers, w.closers...)
		parts[i] = w
	}
	if s.Config, err = metaConfig(ppath, p, parts); err != nil {
		return nil, err
	}
	if err := s.mapMeta(parts); err != nil {
		return nil, err
	}
	tpath := filepath.Join(dir, "tokenizer.model")
	if !fileExists(tpath) {
		tpath = filepath.Join(filepath.Dir(dir), "tokenizer.model") // Meta ships it beside the size directories
	}
	if fileExists(tpath) {
		data, err := os.ReadFile(tpath)
		if err != nil {
			return nil, err
		}
		tok, err := tokenizer.FromModelProto(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tpath, err)
		}
		if tok.VocabSize() != s.Config.VocabSize {
			return nil, fmt.Errorf("%s: the tokenizer has %d tokens but the model's vocabulary is %d", tpath, tok.VocabSize(), s.Config.VocabSize)
		}
		s.Tokenizer = tok
	}
	return s, nil
}

// metaConfig derives the Config from params.json and the shards' shapes.
func metaConfig(ppath string, p metaParams, parts []*weights) (llama.Config, error) {
	emb, ok := parts[0].byName["tok_embeddings.weight"]
	if !ok || len(emb.shape) != 2 {
		return llama.Config{}, fmt.Errorf("%s: tok_embeddings.weight is missing or not a matrix", shardName(parts[0]))
	}
	c := llama.Config{Dim: p.Dim, NLayers: p.NLayers, NHeads: p.NHeads, NKVHeads: p.NKVHeads, FFNDim: p.ffnDim(),
		VocabSize: p.VocabSize, ContextLen: p.MaxSeqLen, RopeTheta: 10000, NormEps: float32(p.NormEps), Rope: llama.RopeInterleaved}
	if c.NKVHeads == 0 {
		c.NKVHeads = c.NHeads
	}
	if w1, ok := parts[0].byName["layers.0.feed_forward.w1.weight"]; ok && len(w1.shape) == 2 {
		if shape := int(w1.shape[0]) * len(parts); p.MultipleOf == 0 || shape != c.FFNDim {
			if p.MultipleOf > 0 {
				return c, fmt.Errorf("%s: dim %d, multiple_of %d and ffn_dim_multiplier give a feed-forward of %d, but %s holds %d rows in each of %d shards",
					ppath, p.Dim, p.MultipleOf, c.FFNDim, "layers.0.feed_forward.w1.weight", w1.shape[0], len(parts))
			}
			c.FFNDim = shape
		}
	}
	if c.VocabSize <= 0 { // LLaMA 1's params.json says -1
		c.VocabSize = int(emb.shape[0])
	}
	if p.RopeTheta > 0 {
		c.RopeTheta = float32(p.RopeTheta)
	}
	if c.ContextLen == 0 {
		// params.json does not say; LLaMA (eps 1e-6) was trained on 2048
		// positions, Llama 2 (eps 1e-5) on 4096
		c.ContextLen = 2048
		if p.NormEps == 1e-5 {
			c.ContextLen = 4096
		}
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%s: %w", ppath, err)
	}
	return c, nil
}

// mapMeta lists the tensors, each joined from the shards along its axis.
func (s *Source) mapMeta(parts []*weights) error {
	c := s.Config
	used := map[string]bool{"rope.freqs": true}
	add := func(mname, name string, axis, rows, cols int) error {
		used[mname] = true
		return s.addJoined(parts, mname, name, axis, rows, cols)
	}
	if err := add("tok_embeddings.weight", "token_embd.weight", 1, c.VocabSize, c.Dim); err != nil {
		return err
	}
	for i := range c.NLayers {
		for _, n := range metaNames {
			rows, cols := c.Dim, c.Dim
			switch n.gguf {
			case "attn_norm.weight", "ffn_norm.weight":
				rows = 1
			case "attn_k.weight", "attn_v.weight":
				rows = c.KVDim()
			case "ffn_gate.weight", "ffn_up.weight":
				rows = c.FFNDim
			case "ffn_down.weight":
				cols = c.FFNDim
			}
			if err := add(fmt.Sprintf("layers.%d.%s", i, n.meta), fmt.Sprintf("blk.%d.%s", i, n.gguf), n.axis, rows, cols); err != nil {
				return err
			}
		}
	}
	if err := add("norm.weight", "output_norm.weight", -1, 1, c.Dim); err != nil {
		return err
	}
	if err := add("output.weight", "output.weight", 0, c.VocabSize, c.Dim); err != nil {
		return err
	}
	for _, w := range parts {
		for _, n := range w.order {
			if !used[n] {
				return fmt.Errorf("%s: tensor %s is not part of a LLaMA", w.byName[n].file, n)
			}
		}
	}
	return nil
}

// addJoined appends the tensor mname of every shard, concatenated along
// axis (-1: every shard holds the whole tensor; shard 0's is taken).
func (s *Source) addJoined(parts []*weights, mname, name string, axis, rows, cols int) error {
	n := len(parts)
	ts := make([]*srcTensor, n)
	for i, w := range parts {
		t, ok := w.byName[mname]
		if !ok {
			return fmt.Errorf("%s: tensor %s is missing", shardName(w), mname)
		}
		ts[i] = t
	}
	want := []int64{int64(rows), int64(cols)}
	switch {
	case rows == 1:
		want = want[1:]
	case axis == 0 && rows%n == 0:
		want[0] /= int64(n)
	case axis == 1 && cols%n == 0:
		want[1] /= int64(n)
	case axis >= 0:
		return fmt.Errorf("%s: tensor %s of %d×%d cannot be split into %d model-parallel shards", s.Path, mname, rows, cols, n)
	}
	for _, t := range ts {
		if !equalShape(t.shape, want) || t.dtype != ts[0].dtype {
			return fmt.Errorf("%s: tensor %s has shape %v of %s, params.json implies %v of %s for %d shards", t.file, mname, t.shape, t.dtype, want, ts[0].dtype, n)
		}
	}
	joined := *ts[0]
	joined.shape = []int64{int64(rows), int64(cols)}
	if rows == 1 {
		joined.shape = joined.shape[1:]
	}
	if axis >= 0 && n > 1 {
		joined.read = func() ([]byte, error) { return concat(ts, axis) }
		joined.dtype = ts[0].dtype
	}
	return s.addTensor(&joined, name, rows, cols, nil)
}

// concat reads the shards of a matrix and joins them along axis.
func concat(ts []*srcTensor, axis int) ([]byte, error) {
	bufs := make([][]byte, len(ts))
	total := 0
	for i, t := range ts {
		b, err := t.read()
		if err != nil {
			return nil, err
		}
		bufs[i], total = b, total+len(b)
	}
	out := make([]byte, 0, total)
	if axis == 0 {
		for _, b := range bufs {
			out = append(out, b...)
		}
		return out, nil
	}
	rows := int(ts[0].shape[0])
	for r := range rows {
		for _, b := range bufs {
			rb := len(b) / rows
			out = append(out, b[r*rb:(r+1)*rb]...)
		}
	}
	return out, nil
}

func shardName(w *weights) string {
	for _, t := range w.byName {
		return t.file
	}
	return "shard"
}
