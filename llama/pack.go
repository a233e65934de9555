package llama

import (
	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// PackForInference rearranges the block matrices and the output matrix
// into the in-memory layout the active CPU path multiplies fastest, where
// it has one (kernels.PackedLayout: Q4_0 → Q4_0x8, Q8_0 → Q8_0x8 and
// Q4_K → Q4_Kx8 on the assembly paths, eight rows read as one stream; see
// tensor.PackRows8), and returns the number of matrices converted. Q4_0's
// and Q8_0's products are the plain format's, bit for bit on the paths
// whose plain kernels sum the same way (every path but Q8_0's AVX-512
// product); Q4_Kx8's are the same sums added in another order.
//
// It is for a model that only runs forward passes (generation, serving,
// benchmarks, evaluation): a packed matrix's rows cannot be read one by
// one, so training, merging and saving refuse it. The token embedding
// (read a row at a time) and a tied output matrix stay as they are. Each
// matrix is copied into the new layout and the file's pages of the old
// one handed back (gguf.File.Release), so the resident memory stays that
// of one copy of the weights, plus one matrix while it is converted. The
// copies are anonymous memory the kernel is asked to back with huge pages
// (fileio.AllocHuge, on Unix), which Close frees: decoding streams every
// weight once a token, and fewer TLB misses and page-crossings for the
// prefetchers measured about 7% more TinyLlama Q4_0 tg128 on a Zen 4
// (BENCHMARKS.md). After Close the model must not run.
func (m *Model) PackForInference() int {
	release := func([]byte) {}
	if r, ok := m.closer.(interface{ Release([]byte) }); ok {
		release = r.Release
	}
	pack := func(l *nn.Linear) bool {
		if l == nil || l == m.Embed {
			return false
		}
		p, ok := kernels.PackedLayout(l.DType)
		if !ok {
			return false
		}
		prb, err := p.RowBytes(l.In)
		if err != nil {
			return false
		}
		dst, free := fileio.AllocHuge(prb * l.Out)
		if err := tensor.PackRows8(l.DType, dst, l.Data, l.Out, l.In); err != nil {
			free()
			return false // Q4_K rows not a multiple of eight: the matrix stays plain
		}
		m.frees = append(m.frees, free)
		release(l.Data)
		l.DType, l.Data = p, dst
		return true
	}
	n := 0
	for i := range m.Layers {
		for _, w := range m.Layers[i].Matrices() {
			if pack(*w) {
				n++
			}
		}
	}
	if pack(m.Output) {
		n++
	}
	return n
}
