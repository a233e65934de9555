// Package imatrix computes and stores llama.cpp's importance matrix: for
// every weight matrix of the transformer blocks, the mean over the
// calibration tokens of the square of each input column's activation
// (llama-imatrix's statistic), which llama-quantize uses to weight the
// error its block-format searches minimise.
//
// The file is llama-imatrix's (legacy) binary format, little-endian:
//
//	int32 n_entries
//	n_entries × { int32 len, name [len]byte, int32 ncall, int32 nval,
//	              nval × float32 (mean square × ncall) }
//	int32 last_call   (the number of chunks processed)
//	int32 len, dataset [len]byte   (the calibration file's name)
//
// llama-quantize divides each entry's values by its ncall to recover the
// means.
package imatrix

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/llama"
)

// Entry is the statistic of one matrix.
type Entry struct {
	Name   string
	NCall  int32     // forward passes (ubatches) observed
	Values []float32 // per input column: mean square × NCall
}

// Matrix is an importance matrix.
type Matrix struct {
	Entries  []Entry
	LastCall int32
	Dataset  string
}

// Means returns the entries' mean squared activations by tensor name, as
// llama-quantize uses them (values divided by ncall).
func (m *Matrix) Means() map[string][]float32 {
	out := map[string][]float32{}
	for _, e := range m.Entries {
		v := append([]float32(nil), e.Values...)
		if e.NCall > 0 {
			for i := range v {
				v[i] /= float32(e.NCall)
			}
		}
		out[e.Name] = v
	}
	return out
}

// Write stores m in llama-imatrix's format, atomically.
func (m *Matrix) Write(path string) error {
	return fileio.WriteAtomic(path, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		put := func(v any) { _ = binary.Write(bw, binary.LittleEndian, v) }
		put(int32(len(m.Entries)))
		for _, e := range m.Entries {
			put(int32(len(e.Name)))
			bw.WriteString(e.Name)
			put(e.NCall)
			put(int32(len(e.Values)))
			put(e.Values)
		}
		put(m.LastCall)
		put(int32(len(m.Dataset)))
		bw.WriteString(m.Dataset)
		return bw.Flush()
	})
}

// maxEntries and maxValues bound what Read accepts, so a corrupt count
// cannot ask for unbounded memory.
const (
	maxEntries = 1 << 20
	maxValues  = 1 << 26
	maxName    = 1 << 16
)

// Read loads a llama-imatrix file (herd's or llama.cpp's), checking every
// count against the file's size.
func Read(path string) (*Matrix, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Parse decodes an imatrix file's bytes.
func Parse(b []byte) (*Matrix, error) {
	off := 0
	i32 := func(what string) (int32, error) {
		if len(b)-off < 4 {
			return 0, fmt.Errorf("truncated at byte %d reading %s", off, what)
		}
		v := int32(binary.LittleEndian.Uint32(b[off:]))
		off += 4
		return v, nil
	}
	str := func(what string) (string, error) {
		n, err := i32(what + " length")
		if err != nil {
			return "", err
		}
		if n < 0 || n > maxName || int(n) > len(b)-off {
			return "", fmt.Errorf("%s length %d at byte %d is out of range", what, n, off-4)
		}
		s := string(b[off : off+int(n)])
		off += int(n)
		return s, nil
	}
	n, err := i32("the entry count")
	if err != nil {
		return nil, err
	}
	if n < 1 || n > maxEntries {
		return nil, fmt.Errorf("%d entries: not an imatrix file", n)
	}
	m := &Matrix{}
	for i := range int(n) {
		var e Entry
		if e.Name, err = str(fmt.Sprintf("entry %d's name", i)); err != nil {
			return nil, err
		}
		if e.NCall, err = i32(e.Name + " ncall"); err != nil {
			return nil, err
		}
		nv, err := i32(e.Name + " nval")
		if err != nil {
			return nil, err
		}
		if nv < 1 || nv > maxValues || int(nv)*4 > len(b)-off {
			return nil, fmt.Errorf("entry %s: %d values at byte %d is out of range", e.Name, nv, off-4)
		}
		e.Values = make([]float32, nv)
		for k := range e.Values {
			e.Values[k] = math.Float32frombits(binary.LittleEndian.Uint32(b[off:]))
			off += 4
		}
		m.Entries = append(m.Entries, e)
	}
	// the trailer (older files lack it)
	if off < len(b) {
		if m.LastCall, err = i32("last_call"); err != nil {
			return nil, err
		}
		if off < len(b) {
			if m.Dataset, err = str("the dataset name"); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// Collector accumulates the statistic while a model runs: attach it, run
// forward passes, detach, then Matrix.
type Collector struct {
	m       *llama.Model
	stats   []*stat
	MinRows int // passes with fewer input rows are ignored (llama-imatrix: 16)
}

type stat struct {
	name   string
	sum    []float32 // Σ x² per column, in single precision as llama-imatrix adds
	counts []int32
	ncall  int32
}

// Attach sets Observe on every matrix of m's blocks.
func Attach(m *llama.Model) *Collector {
	c := &Collector{m: m, MinRows: 16}
	for i := range m.Layers {
		l := &m.Layers[i]
		for _, wp := range l.Matrices() {
			w := *wp
			if w == nil { // a feed-forward without a gate
				continue
			}
			s := &stat{name: w.Name, sum: make([]float32, w.In), counts: make([]int32, w.In)}
			c.stats = append(c.stats, s)
			w.Observe = func(x []float32, nt int) { c.observe(s, x, nt) }
		}
	}
	return c
}

func (c *Collector) observe(s *stat, x []float32, nt int) {
	if nt < c.MinRows {
		return
	}
	s.ncall++
	n := len(s.sum)
	for r := range nt {
		row := x[r*n : (r+1)*n]
		for j, v := range row {
			s.sum[j] += float32(v * v)
			s.counts[j]++
		}
	}
}

// Detach removes the observers.
func (c *Collector) Detach() {
	for i := range c.m.Layers {
		l := &c.m.Layers[i]
		for _, wp := range l.Matrices() {
			if *wp != nil {
				(*wp).Observe = nil
			}
		}
	}
}

// Matrix returns the statistic gathered so far, as llama-imatrix saves it
// (entries without data left out), after chunks chunks of dataset.
func (c *Collector) Matrix(chunks int, dataset string) *Matrix {
	m := &Matrix{LastCall: int32(chunks), Dataset: dataset}
	for _, s := range c.stats {
		if s.ncall == 0 {
			continue
		}
		e := Entry{Name: s.name, NCall: s.ncall, Values: make([]float32, len(s.sum))}
		for j, v := range s.sum {
			e.Values[j] = float32(v/float32(s.counts[j])) * float32(s.ncall)
		}
		m.Entries = append(m.Entries, e)
	}
	return m
}

// Options control Compute.
type Options struct {
	Ctx    int // tokens per chunk (llama-imatrix's -c); 0 means 512
	Chunks int // at most this many chunks; 0 means all
	// UBatch is the most tokens per forward pass (llama.cpp's n_ubatch):
	// each pass is one call of every matrix. 0 means 512.
	UBatch  int
	OnChunk func(chunk, chunks int)
}

// Compute runs model m over tokens as llama-imatrix does (chunks of Ctx
// tokens, the first of each replaced by bos when bos ≥ 0, each chunk from
// an empty cache in passes of at most UBatch tokens) and returns the
// importance matrix.
func Compute(m *llama.Model, tokens []int, bos int, dataset string, opt Options) (*Matrix, error) {
	if opt.Ctx <= 0 {
		opt.Ctx = 512
	}
	if opt.UBatch <= 0 {
		opt.UBatch = 512
	}
	n := len(tokens) / opt.Ctx
	if opt.Chunks > 0 {
		n = min(n, opt.Chunks)
	}
	if n == 0 {
		return nil, fmt.Errorf("imatrix: the text is %d tokens, shorter than one chunk of %d (-c)", len(tokens), opt.Ctx)
	}
	col := Attach(m)
	defer col.Detach()
	var s llama.State
	chunk := make([]int, opt.Ctx)
	for k := range n {
		copy(chunk, tokens[k*opt.Ctx:(k+1)*opt.Ctx])
		if bos >= 0 {
			chunk[0] = bos
		}
		cache := m.NewKVCache(opt.Ctx)
		for p := 0; p < opt.Ctx; p += opt.UBatch {
			end := min(opt.Ctx, p+opt.UBatch)
			if _, err := m.Hidden(&s, []llama.Seq{{Tokens: chunk[p:end], Cache: cache}}); err != nil {
				return nil, fmt.Errorf("imatrix: chunk %d: %w", k, err)
			}
		}
		if opt.OnChunk != nil {
			opt.OnChunk(k+1, n)
		}
	}
	return col.Matrix(n, dataset), nil
}

// Lookup returns the means of tensor name, checked against its row
// length, or nil when the matrix has no entry for it.
func Lookup(means map[string][]float32, name string, rowLen int) ([]float32, error) {
	v, ok := means[name]
	if !ok {
		return nil, nil
	}
	if len(v) != rowLen {
		return nil, fmt.Errorf("imatrix entry %s has %d values, the tensor's rows %d", name, len(v), rowLen)
	}
	for i, x := range v {
		if !(x >= 0) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("imatrix entry %s: value %d is %g", name, i, x)
		}
	}
	return v, nil
}
