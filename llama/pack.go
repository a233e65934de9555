package llama

import (
	"sync"

	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// PackForInference rearranges the block matrices and the output matrix
// into the in-memory layout the active CPU path multiplies fastest, where
// it has one (kernels.PackedLayout: Q4_0 → Q4_0x8, Q8_0 → Q8_0x8 and
// Q4_K → Q4_Kx8 on the assembly paths, eight rows read as one stream; F16
// → F16x32 where the rows come in whole groups of 32; see tensor.PackRows8),
// and returns the number of matrices converted. Q4_0's and Q8_0's products
// are the plain format's, bit for bit on the paths whose plain kernels sum
// the same way (every path but Q8_0's AVX-512 product); Q4_Kx8's are the
// same sums added in another order, F16x32's the same products summed in
// one chain a row instead of sixteen lanes.
//
// It is for a model that only runs forward passes (generation, serving,
// benchmarks, evaluation): a packed matrix's rows cannot be read one by
// one, so training, merging and saving refuse it. The token embedding
// (read a row at a time) and a tied output matrix stay as they are. Each
// matrix is copied into the new layout and the file's pages of the old
// one handed back (gguf.File.Release), so the resident memory stays that
// of one copy of the weights, plus one matrix while it is converted. The
// copies are anonymous memory the kernel is asked to back with huge pages
// (fileio.AllocHuge, on Unix; one arena for all of them), which Close
// frees: decoding streams every weight once a token, and fewer TLB misses
// and page-crossings for the prefetchers measured 7% more TinyLlama Q4_0
// tg128 on a Zen 4 with a mapping per matrix and about 12% more again with
// the one arena (BENCHMARKS.md). With m.NoMmap the other matrices but the
// embedding are copied into the arena too, unchanged (the count returned
// is of the repacked ones only). After Close the model must not run.
func (m *Model) PackForInference() int {
	release := func([]byte) {}
	if r, ok := m.closer.(interface{ Release([]byte) }); ok {
		release = r.Release
	}
	// the matrices to convert and their packed sizes, then one arena for
	// all of them: one mapping starting on a huge page, so that only its
	// last huge page is partial (a mapping per matrix left 250 of TinyLlama
	// Q4_0's 600 MiB in small pages)
	type conv struct {
		l    *nn.Linear
		p    tensor.DType
		size int
		copy bool // NoMmap: the same bytes, only moved into the arena
	}
	var convs []conv
	total := 0
	want := func(l *nn.Linear) {
		if l == nil || l == m.Embed {
			return
		}
		p, ok := kernels.PackedLayout(l.DType)
		if p == tensor.F16x32 && l.Out%tensor.F16Group != 0 {
			ok = false // F16x32 takes whole groups of rows: the matrix stays F16
		}
		if !ok {
			if m.NoMmap && !tensor.IsPacked(l.DType) {
				convs = append(convs, conv{l, l.DType, len(l.Data), true})
				total += (len(l.Data) + 63) &^ 63
			}
			return
		}
		prb, err := p.RowBytes(l.In)
		if err != nil {
			return
		}
		convs = append(convs, conv{l, p, prb * l.Out, false})
		total += (prb*l.Out + 63) &^ 63
	}
	for i := range m.Layers {
		for _, w := range m.Layers[i].Matrices() {
			want(*w)
		}
	}
	want(m.Output)
	if len(convs) == 0 {
		return 0
	}
	arena, free := fileio.AllocHuge(total)
	m.frees = append(m.frees, free)
	n, off := 0, 0
	for _, c := range convs {
		dst := arena[off : off+c.size : off+c.size]
		off += (c.size + 63) &^ 63
		if c.copy {
			copy(dst, c.l.Data)
			release(c.l.Data)
			c.l.Data = dst
			continue
		}
		if err := packRows(c.l.DType, c.p, dst, c.l.Data, c.l.Out, c.l.In); err != nil {
			continue // Q4_K rows not a multiple of eight: the matrix stays plain
		}
		release(c.l.Data)
		c.l.DType, c.l.Data = c.p, dst
		n++
	}
	return n
}

// packRows is tensor.PackRows8 of a rows×cols matrix of plain dtype d into
// packed dtype p, on the pool's threads: every packed layout keeps each
// group of rows (eight, or 32 for F16x32) at the offset where the plain
// matrix has it, so whole groups convert independently, and the rows after
// the last group go with the last piece.
func packRows(d, p tensor.DType, dst, src []byte, rows, cols int) error {
	rb, err := d.RowBytes(cols)
	if err != nil {
		return err
	}
	prb, err := p.RowBytes(cols)
	if err != nil {
		return err
	}
	const unit = tensor.F16Group // a multiple of every layout's group
	units := (rows + unit - 1) / unit
	var mu sync.Mutex
	var first error
	kernels.ParallelFor(units, max(1, (4<<20)/max(1, unit*rb)), func(lo, hi int) {
		r0, r1 := lo*unit, min(rows, hi*unit)
		if err := tensor.PackRows8(d, dst[r0*prb:r1*prb], src[r0*rb:r1*rb], r1-r0, cols); err != nil {
			mu.Lock()
			first = err
			mu.Unlock()
		}
	})
	return first
}
