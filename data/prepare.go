package data

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/dist"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/internal/recipe"
	"github.com/herd-llm/herd/tokenizer"
)

// Recipe is a data preparation: the sources, how to clean them, and how to
// mix, split and pack them into shards.
type Recipe struct {
	Sources []Source `yaml:"sources"`
	// Tokenizer is the tokenizer file (resolved by the caller; stored in
	// the manifest for the record).
	Tokenizer string `yaml:"tokenizer,omitempty"`
	Clean     Clean  `yaml:"clean,omitempty"`
	// ValFraction of every training source's documents (chosen at random
	// for the seed) goes to the validation split instead.
	ValFraction float64 `yaml:"val_fraction,omitempty"`
	// MaxEpochs is how many times a source may be repeated to reach its
	// weight (default 1: never; the other sources are subsampled instead).
	MaxEpochs float64 `yaml:"max_epochs,omitempty"`
	// ShardTokens is the size a shard is closed at (at a document boundary;
	// default 100M tokens).
	ShardTokens int64 `yaml:"shard_tokens,omitempty"`
	// NoBOS leaves out the BOS that opens every document; EOS closes every
	// document with EOS.
	NoBOS bool `yaml:"no_bos,omitempty"`
	EOS   bool `yaml:"eos,omitempty"`
	// Seed drives the validation split, the subsampling and the order of
	// documents in the shards.
	Seed uint64 `yaml:"seed,omitempty"`
	// Workers clean and tokenize in parallel (0: all cores).
	Workers int `yaml:"workers,omitempty"`
}

// LoadRecipe reads a YAML data recipe; unknown keys are an error.
func LoadRecipe(path string) (Recipe, error) {
	var r Recipe
	err := recipe.Load(path, &r, nil)
	return r, err
}

func (r *Recipe) check() error {
	if len(r.Sources) == 0 {
		return fmt.Errorf("no sources")
	}
	names := map[string]bool{}
	weighted, train := 0, 0
	for i := range r.Sources {
		s := &r.Sources[i]
		if err := s.check(); err != nil {
			return err
		}
		if names[s.Name] {
			return fmt.Errorf("two sources are named %s", s.Name)
		}
		names[s.Name] = true
		if !s.Val {
			train++
			if s.Weight > 0 {
				weighted++
			}
		}
	}
	switch {
	case train == 0:
		return fmt.Errorf("every source is a validation source: nothing to train on")
	case weighted != 0 && weighted != train:
		return fmt.Errorf("give every training source a weight, or none (then each is used once, as it is)")
	case !(r.ValFraction >= 0 && r.ValFraction < 1):
		return fmt.Errorf("val_fraction %g must be in [0, 1)", r.ValFraction)
	case r.MaxEpochs < 0 || r.ShardTokens < 0 || r.Workers < 0:
		return fmt.Errorf("max_epochs %g, shard_tokens %d and workers %d must not be negative", r.MaxEpochs, r.ShardTokens, r.Workers)
	}
	return r.Clean.check()
}

// Stats counts what a preparation read, kept and dropped.
type Stats struct {
	Sources  []SourceStats `json:"sources"`
	RawBytes int64         `json:"raw_bytes"` // bytes read from the files (decompressed)
	Seconds  float64       `json:"seconds"`
	MBPerSec float64       `json:"mb_per_sec"` // raw text to shards
}

// SourceStats are one source's counts.
type SourceStats struct {
	Name      string           `json:"name"`
	Files     int              `json:"files"`
	Docs      int64            `json:"docs"` // documents read
	Kept      int64            `json:"kept"`
	Dropped   map[string]int64 `json:"dropped"` // by reason
	RawBytes  int64            `json:"raw_bytes"`
	KeptBytes int64            `json:"kept_bytes"` // of cleaned text
	Tokens    int64            `json:"tokens"`     // of the kept documents
	// NULDocs and InvalidUTF8Docs count the documents read that held NUL
	// bytes (stripped) or invalid UTF-8 (replaced by U+FFFD); documents
	// dropped as binary are counted under that reason instead.
	NULDocs         int64 `json:"nul_docs"`
	InvalidUTF8Docs int64 `json:"invalid_utf8_docs"`
}

// PrepareOptions connect a preparation to the outside.
type PrepareOptions struct {
	Log io.Writer // progress and the report (nil: discarded)
	// Comm is the group of ranks that prepare together (nil: this
	// process alone): each reads its part of the inputs and rank 0
	// writes dir (see ranks.go).
	Comm dist.Comm
}

// spool is one source's kept documents, tokenized, in a temporary file.
type spool struct {
	path  string
	f     *os.File
	w     *bufio.Writer
	lens  []int32 // tokens per document
	val   []bool  // the document belongs to the validation split
	total int64
	data  []byte // mapped after writing
	unmap func() error
}

// Prepare reads, cleans, deduplicates and tokenizes the recipe's sources
// with tok, mixes them by weight and writes the shards, the tokenizer and
// manifest.json into dir (created if needed).
func Prepare(r Recipe, tok tokenizer.Tokenizer, dir string, opt PrepareOptions) (*Manifest, error) {
	if opt.Comm != nil && opt.Comm.Size() > 1 {
		return r.prepareRanks(tok, dir, opt)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	log := opt.Log
	if log == nil {
		log = io.Discard
	}
	if r.MaxEpochs == 0 {
		r.MaxEpochs = 1
	}
	if r.ShardTokens == 0 {
		r.ShardTokens = 100_000_000
	}
	workers := r.Workers
	if workers == 0 {
		workers = runtime.NumCPU()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	stats := &Stats{}
	var exact map[[16]byte]struct{}
	if !r.Clean.NoDedup {
		exact = map[[16]byte]struct{}{}
	}
	var near *lsh
	perms, shingle := r.Clean.Perms, r.Clean.Shingle
	if perms == 0 {
		perms = defaultPerms
	}
	if shingle == 0 {
		shingle = defaultShingle
	}
	if r.Clean.NearDedup > 0 {
		near = newLSH(perms, r.Clean.NearDedup)
	}
	spools := make([]*spool, len(r.Sources))
	defer func() {
		for _, sp := range spools {
			if sp != nil {
				sp.remove()
			}
		}
	}()
	for i := range r.Sources {
		src := &r.Sources[i]
		sp, st, err := r.readSource(src, i, nil, tok, dir, workers, exact, near, nil, perms, shingle)
		spools[i] = sp
		if err != nil {
			return nil, err
		}
		stats.Sources = append(stats.Sources, *st)
		stats.RawBytes += st.RawBytes
		fmt.Fprintf(log, "%s: %d files, %d documents read, %d kept (%d tokens)\n", src.Name, st.Files, st.Docs, st.Kept, st.Tokens)
	}
	return r.finish(tok, dir, spools, stats, start, log)
}

// emptyVal explains a validation split that was asked for (a validation
// source or val_fraction) and came out empty, or returns "".
func (r *Recipe) emptyVal(stats *Stats, man *Manifest) string {
	if man.ValTokens > 0 {
		return ""
	}
	var why []string
	for i, s := range r.Sources {
		if !s.Val {
			continue
		}
		st := stats.Sources[i]
		var reasons []string
		for _, k := range slices.Sorted(maps.Keys(st.Dropped)) {
			reasons = append(reasons, fmt.Sprintf("%s %d", k, st.Dropped[k]))
		}
		why = append(why, fmt.Sprintf("validation source %s: %d of %d documents dropped (%s)", s.Name, st.Docs-st.Kept, st.Docs, strings.Join(reasons, ", ")))
		if st.Dropped[ReasonExactDup]+st.Dropped[ReasonNearDup] > 0 {
			why = append(why, "deduplication runs across sources, training sources first, so validation text that repeats training text is removed: give validation text distinct from the training data (or --no-dedup)")
		}
	}
	if len(why) == 0 && r.ValFraction > 0 {
		why = append(why, fmt.Sprintf("val_fraction %g of the kept documents selected none: too few documents", r.ValFraction))
	}
	if len(why) == 0 {
		return ""
	}
	return "the validation split is empty: " + strings.Join(why, "; ")
}

// printStats writes the kept/dropped table.
func printStats(w io.Writer, s *Stats) {
	reasons := []string{ReasonEmpty, ReasonShort, ReasonAlpha, ReasonDupLines, ReasonScript, ReasonExactDup, ReasonNearDup,
		ReasonBinary, ReasonTooLong}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "source\tread\tkept\t")
	for _, r := range reasons {
		fmt.Fprintf(tw, "%s\t", r)
	}
	fmt.Fprintln(tw, "had_nul\tbad_utf8\t")
	for _, src := range s.Sources {
		fmt.Fprintf(tw, "%s\t%d\t%d\t", src.Name, src.Docs, src.Kept)
		for _, r := range reasons {
			fmt.Fprintf(tw, "%d\t", src.Dropped[r])
		}
		fmt.Fprintf(tw, "%d\t%d\t\n", src.NULDocs, src.InvalidUTF8Docs)
	}
	tw.Flush()
	fmt.Fprintf(w, "%.1f MB of text in %.1f s: %.2f MB/s\n", float64(s.RawBytes)/1e6, s.Seconds, s.MBPerSec)
}

// docOut is what a worker makes of one document.
type docOut struct {
	reason       string
	nul, invalid bool // the raw document held NUL bytes, invalid UTF-8
	key          [16]byte
	sig          []uint32
	tokens       []int32
	bytes        int
}

type batchIn struct {
	seq  int
	docs []string
}

type batchOut struct {
	seq  int
	docs []docOut
}

// readSource runs one source through cleaning, dedup and tokenization into
// a spool: a reader, workers that clean, hash and tokenize, and a collector
// that applies the deduplication decisions in document order (so the result
// does not depend on the number of workers).
//
// Given files (nil: the source's own), it reads those; given cand (one
// rank of several, see ranks.go), the collector decides nothing beyond
// cleaning: it spools every clean document and records its hashes in cand.
func (r *Recipe) readSource(src *Source, idx int, files []string, tok tokenizer.Tokenizer, dir string, workers int,
	exact map[[16]byte]struct{}, near *lsh, cand *candidates, perms, shingle int) (*spool, *SourceStats, error) {
	if files == nil {
		var err error
		if files, err = src.files(); err != nil {
			return nil, nil, err
		}
	}
	st := &SourceStats{Name: src.Name, Files: len(files), Dropped: map[string]int64{}}
	f, err := os.CreateTemp(dir, ".spool-*")
	if err != nil {
		return nil, nil, err
	}
	sp := &spool{path: f.Name(), f: f, w: bufio.NewWriterSize(f, 1<<20)}
	valRng := rand.New(rand.NewPCG(r.Seed, uint64(idx)))

	in := make(chan batchIn, 2*workers)
	out := make(chan batchOut, 2*workers)
	readErr := make(chan error, 1)
	var counts readCounts // written by the reader, read after readErr
	go r.readBatches(src, files, st, &counts, in, readErr)
	var wg sync.WaitGroup
	bos := !r.NoBOS
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range in {
				out <- r.encodeBatch(b, tok, bos, exact != nil || (cand != nil && cand.exact), near != nil || (cand != nil && cand.near), perms, shingle)
			}
		}()
	}
	go func() { wg.Wait(); close(out) }()

	c := &collector{r: r, src: src, st: st, sp: sp, exact: exact, near: near, valRng: valRng, cand: cand}
	c.run(out)
	werr := c.werr
	if err := <-readErr; err != nil {
		return sp, nil, err
	}
	st.Docs += counts.TooLong
	st.RawBytes += counts.RawBytes
	st.InvalidUTF8Docs += counts.InvalidUTF8
	if counts.TooLong > 0 {
		st.Dropped[ReasonTooLong] += counts.TooLong
	}
	if werr == nil {
		werr = sp.w.Flush()
	}
	if werr != nil {
		return sp, nil, fmt.Errorf("%s: %w", sp.path, werr)
	}
	return sp, st, nil
}

// readBatches is readSource's reader: it reads the documents of files in
// order, sends them to in in numbered batches (about 256 KiB or 1024
// documents each), closes in, and sends the read error (or nil) to readErr.
// It adds the raw bytes of the documents it sends to st.RawBytes.
func (r *Recipe) readBatches(src *Source, files []string, st *SourceStats, counts *readCounts,
	in chan<- batchIn, readErr chan<- error) {
	defer close(in)
	const batchBytes = 1 << 18
	var cur []string
	size, seq := 0, 0
	for _, path := range files {
		err := src.readDocs(path, r.Clean.maxDoc(), func(doc string, raw int64) error {
			st.RawBytes += raw
			cur = append(cur, doc)
			size += len(doc)
			if size >= batchBytes || len(cur) >= 1024 {
				in <- batchIn{seq, cur}
				seq++
				cur, size = nil, 0
			}
			return nil
		}, counts)
		if err != nil {
			readErr <- err
			return
		}
	}
	if len(cur) > 0 {
		in <- batchIn{seq, cur}
	}
	readErr <- nil
}

// encodeBatch is a readSource worker's work on one batch: it cleans every
// document, hashes it for exact (hashExact) and near (sign) deduplication,
// and tokenizes it (with BOS when bos, EOS when r.EOS).
func (r *Recipe) encodeBatch(b batchIn, tok tokenizer.Tokenizer, bos, hashExact, sign bool, perms, shingle int) batchOut {
	res := batchOut{seq: b.seq, docs: make([]docOut, len(b.docs))}
	for i, d := range b.docs {
		o := &res.docs[i]
		def := defectsOf(d)
		o.nul, o.invalid = def.nul > 0, def.invalid > 0
		text, reason := r.Clean.clean(d, def)
		if reason != "" {
			o.reason = reason
			continue
		}
		if hashExact {
			o.key = docKey(text)
		}
		if sign {
			o.sig = minHash(text, shingle, perms)
		}
		ids := tok.Encode(text, bos, r.EOS)
		o.tokens = make([]int32, len(ids))
		for j, id := range ids {
			o.tokens[j] = int32(id)
		}
		o.bytes = len(text)
	}
	return res
}

// collector is readSource's collector: it takes the workers' batches back
// in document order, applies the deduplication decisions, counts into st
// and appends the kept documents to sp.
type collector struct {
	r      *Recipe
	src    *Source
	st     *SourceStats
	sp     *spool
	exact  map[[16]byte]struct{}
	near   *lsh
	valRng *rand.Rand
	buf    []byte
	werr   error       // the first error writing the spool
	cand   *candidates // one rank of several: record, do not deduplicate
}

// run collects every batch from out, in sequence order, until out closes.
func (c *collector) run(out <-chan batchOut) {
	pending := map[int]batchOut{}
	next := 0
	for b := range out {
		pending[b.seq] = b
		for {
			cur, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			for _, d := range cur.docs {
				c.add(d)
			}
		}
	}
}

// add counts one document, drops it if cleaning or deduplication rejects
// it, and otherwise appends its tokens to the spool and chooses its split.
func (c *collector) add(d docOut) {
	st, sp := c.st, c.sp
	st.Docs++
	reason := d.reason
	if reason != ReasonBinary {
		st.NULDocs += b2i(d.nul)
		st.InvalidUTF8Docs += b2i(d.invalid)
	}
	if reason == "" && c.cand != nil {
		c.cand.add(d)
		c.spoolDoc(d.tokens)
		return
	}
	if reason == "" && c.exact != nil {
		if _, dup := c.exact[d.key]; dup {
			reason = ReasonExactDup
		} else {
			c.exact[d.key] = struct{}{}
		}
	}
	if reason == "" && c.near != nil && c.near.add(d.sig) {
		reason = ReasonNearDup
	}
	if reason != "" {
		st.Dropped[reason]++
		return
	}
	st.Kept++
	st.KeptBytes += int64(d.bytes)
	st.Tokens += int64(len(d.tokens))
	c.spoolDoc(d.tokens)
	sp.val = append(sp.val, c.valSplit())
}

// spoolDoc appends a document's tokens to the spool.
func (c *collector) spoolDoc(tokens []int32) {
	sp := c.sp
	c.buf = c.buf[:0]
	for _, t := range tokens {
		c.buf = binary.LittleEndian.AppendUint32(c.buf, uint32(t))
	}
	if _, err := sp.w.Write(c.buf); err != nil && c.werr == nil {
		c.werr = err
	}
	sp.lens = append(sp.lens, int32(len(tokens)))
	sp.total += int64(len(tokens))
}

// valSplit says whether the next kept document goes to the validation
// split: every document of a validation source, else a draw of valRng
// (one per kept document, in document order) below ValFraction.
func (c *collector) valSplit() bool {
	return c.src.Val || (c.r.ValFraction > 0 && c.valRng.Float64() < c.r.ValFraction)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// open maps the spool for reading.
func (sp *spool) open() error {
	if err := sp.f.Close(); err != nil {
		return err
	}
	sp.f = nil
	if sp.total == 0 {
		return nil
	}
	b, unmap, err := fileio.Map(sp.path)
	if err != nil {
		return err
	}
	sp.data, sp.unmap = b, unmap
	return nil
}

func (sp *spool) remove() {
	if sp.f != nil {
		sp.f.Close()
	}
	if sp.unmap != nil {
		sp.unmap()
	}
	os.Remove(sp.path)
}

// tokenizerFile is the file a data directory stores tok in: a SentencePiece
// tokenizer.model for a SentencePiece vocabulary (as before), otherwise a
// vocabulary-only tokenizer.gguf (tokenizer.ggml.* metadata, no tensors),
// which checkpoint.OpenTokenizer reads like any GGUF.
func tokenizerFile(tok tokenizer.Tokenizer) (string, []byte, error) {
	if spm, ok := tok.(*tokenizer.SPM); ok {
		return "tokenizer.model", spm.MarshalModelProto(), nil
	}
	kv, err := checkpoint.TokenizerMetadata(tok)
	if err != nil {
		return "", nil, err
	}
	w := gguf.NewWriter()
	if err := w.Set("general.architecture", "tokenizer"); err != nil {
		return "", nil, err
	}
	for _, e := range kv {
		if err := w.Set(e.Key, e.Value); err != nil {
			return "", nil, fmt.Errorf("tokenizer metadata %s: %w", e.Key, err)
		}
	}
	var b bytes.Buffer
	if _, err := w.WriteTo(&b); err != nil {
		return "", nil, err
	}
	return "tokenizer.gguf", b.Bytes(), nil
}

// docRef is one document of one source in the output order.
type docRef struct {
	src int32
	doc int32
}

// pack mixes the spools by weight into train and val shards.
func (r *Recipe) pack(tok tokenizer.Tokenizer, dir string, spools []*spool, log io.Writer) (*Manifest, error) {
	offsets, trainTok, err := openSpools(spools)
	if err != nil {
		return nil, err
	}
	epochs, weights := r.mixEpochs(trainTok, len(spools))
	train, val := r.order(spools, epochs)
	if len(train) == 0 {
		return nil, fmt.Errorf("no documents left to train on after cleaning")
	}

	man := &Manifest{Version: 1, Width: TokenWidth(tok.VocabSize())}
	if err := writeTokenizer(tok, dir, man); err != nil {
		return nil, err
	}
	srcTrain := make([]int64, len(spools))
	srcVal := make([]int64, len(spools))
	sw := &splitWriter{dir: dir, width: man.Width, shardTokens: r.ShardTokens, spools: spools, offsets: offsets}
	if man.Train, man.TrainTokens, err = sw.write("train", train, srcTrain); err != nil {
		return nil, err
	}
	if man.Val, man.ValTokens, err = sw.write("val", val, srcVal); err != nil {
		return nil, err
	}
	for i, s := range r.Sources {
		sum := SourceSummary{Name: s.Name, Weight: weights[i], Docs: int64(len(spools[i].lens)), Tokens: spools[i].total,
			Epochs: epochs[i], TrainTokens: srcTrain[i], ValTokens: srcVal[i]}
		if man.TrainTokens > 0 {
			sum.Share = float64(srcTrain[i]) / float64(man.TrainTokens)
		}
		man.Mixture = append(man.Mixture, sum)
	}
	fmt.Fprintf(log, "wrote %d train shards (%d tokens) and %d val shards (%d tokens) to %s\n",
		len(man.Train), man.TrainTokens, len(man.Val), man.ValTokens, dir)
	return man, nil
}

// openSpools maps every spool for reading and returns, per spool, the token
// offset of every document (one more than the documents) and the number of
// tokens in its training documents.
func openSpools(spools []*spool) (offsets [][]int64, trainTok []int64, err error) {
	offsets = make([][]int64, len(spools))
	trainTok = make([]int64, len(spools))
	for i, sp := range spools {
		if err := sp.open(); err != nil {
			return nil, nil, err
		}
		offsets[i] = make([]int64, len(sp.lens)+1)
		for j, n := range sp.lens {
			offsets[i][j+1] = offsets[i][j] + int64(n)
			if !sp.val[j] {
				trainTok[i] += int64(n)
			}
		}
	}
	return offsets, trainTok, nil
}

// mixEpochs is how many times each of n sources is used (epochs) and its
// normalized weight. With weights w (normalized), the output holds
// T = min over sources of tokens·maxEpochs/w training tokens, so that no
// source repeats more than maxEpochs times; source i is used w_i·T/tokens_i
// times (whole copies plus a random share of documents). With no weights,
// every training source is used once.
func (r *Recipe) mixEpochs(trainTok []int64, n int) (epochs, weights []float64) {
	var wsum float64
	for _, s := range r.Sources {
		if !s.Val {
			wsum += s.Weight
		}
	}
	epochs = make([]float64, n)
	weights = make([]float64, n)
	if wsum == 0 {
		for i, s := range r.Sources {
			if !s.Val {
				epochs[i] = 1
			}
		}
		return epochs, weights
	}
	total := math.Inf(1)
	for i, s := range r.Sources {
		if s.Val {
			continue
		}
		weights[i] = s.Weight / wsum
		total = math.Min(total, float64(trainTok[i])*r.MaxEpochs/weights[i])
	}
	for i := range r.Sources {
		if weights[i] > 0 && trainTok[i] > 0 {
			epochs[i] = weights[i] * total / float64(trainTok[i])
		}
	}
	return epochs, weights
}

// order lists the validation documents in spool order and the training
// documents, each repeated by its source's epochs (whole copies plus a
// random share, for the seed), shuffled for the seed.
func (r *Recipe) order(spools []*spool, epochs []float64) (train, val []docRef) {
	for i, sp := range spools {
		rng := rand.New(rand.NewPCG(r.Seed, 1<<32+uint64(i)))
		whole := math.Floor(epochs[i])
		frac := epochs[i] - whole
		for j := range sp.lens {
			if sp.val[j] {
				val = append(val, docRef{int32(i), int32(j)})
				continue
			}
			n := int(whole)
			if rng.Float64() < frac {
				n++
			}
			for range n {
				train = append(train, docRef{int32(i), int32(j)})
			}
		}
	}
	rng := rand.New(rand.NewPCG(r.Seed, 1<<33))
	rng.Shuffle(len(train), func(a, b int) { train[a], train[b] = train[b], train[a] })
	return train, val
}

// writeTokenizer writes tok's file into dir (atomically) and records it,
// with its SHA-256 and special tokens, in man.Tokenizer.
func writeTokenizer(tok tokenizer.Tokenizer, dir string, man *Manifest) error {
	name, model, err := tokenizerFile(tok)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(model)
	man.Tokenizer = TokenizerInfo{File: name, SHA256: hex.EncodeToString(sum[:]), Vocab: tok.VocabSize(), BOS: tok.BOS(), EOS: tok.EOS()}
	return fileio.WriteAtomic(filepath.Join(dir, man.Tokenizer.File), func(w io.Writer) error {
		_, err := w.Write(model)
		return err
	})
}

// splitWriter writes lists of spooled documents into numbered shards.
type splitWriter struct {
	dir         string
	width       int
	shardTokens int64
	spools      []*spool
	offsets     [][]int64 // per spool, the token offset of every document
}

// write writes refs in order into shards named split-NNNNN.bin, closing a
// shard at the first document boundary at or past shardTokens; it adds
// every source's tokens to perSrc and returns the shards and their total.
func (w *splitWriter) write(split string, refs []docRef, perSrc []int64) ([]ShardInfo, int64, error) {
	var infos []ShardInfo
	var total int64
	var sw *ShardWriter
	tokens := make([]int32, 0, 1<<12)
	for k, ref := range refs {
		if sw == nil {
			name := fmt.Sprintf("%s-%05d.bin", split, len(infos))
			var err error
			if sw, err = CreateShard(filepath.Join(w.dir, name), w.width); err != nil {
				return nil, 0, err
			}
			infos = append(infos, ShardInfo{File: name})
		}
		sp := w.spools[ref.src]
		lo, hi := w.offsets[ref.src][ref.doc], w.offsets[ref.src][ref.doc+1]
		tokens = tokens[:0]
		for p := lo; p < hi; p++ {
			tokens = append(tokens, int32(binary.LittleEndian.Uint32(sp.data[4*p:])))
		}
		if err := sw.WriteDoc(tokens); err != nil {
			sw.Abort()
			return nil, 0, err
		}
		perSrc[ref.src] += hi - lo
		if sw.Tokens() >= w.shardTokens || k == len(refs)-1 {
			infos[len(infos)-1].Tokens = sw.count
			infos[len(infos)-1].Docs = sw.docs
			total += sw.count
			if err := sw.Close(); err != nil {
				return nil, 0, err
			}
			sw = nil
		}
	}
	return infos, total, nil
}
