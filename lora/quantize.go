package lora

import (
	"fmt"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// QuantizeBase stores the block matrices of m (attention and feed-forward;
// the embedding and output head keep their dtype, as QLoRA keeps them) as
// dt in new memory, for a frozen base: QLoRA's NF4, or any dtype tensor
// writes. A matrix whose rows are not a whole number of dt's blocks keeps
// its dtype. It returns the number of matrices converted and kept.
func QuantizeBase(m *llama.Model, dt tensor.DType) (converted, kept int, err error) {
	if !tensor.CanQuantize(dt) {
		return 0, 0, fmt.Errorf("lora: cannot quantize to %s", dt)
	}
	buf := []float32{}
	for li := range m.Layers {
		l := &m.Layers[li]
		for _, p := range l.Matrices() {
			w := *p
			rb, rerr := dt.RowBytes(w.In)
			if rerr != nil || w.DType == dt {
				kept++
				continue
			}
			buf = append(buf[:0], make([]float32, w.In)...)
			src, _ := w.DType.RowBytes(w.In)
			out := make([]byte, rb*w.Out)
			for r := range w.Out {
				if err := tensor.Dequantize(w.DType, buf, w.Data[r*src:(r+1)*src]); err != nil {
					return converted, kept, fmt.Errorf("lora: %s: %w", w.Name, err)
				}
				if err := tensor.Quantize(dt, out[r*rb:(r+1)*rb], buf); err != nil {
					return converted, kept, fmt.Errorf("lora: %s: %w", w.Name, err)
				}
			}
			nl, err := nn.NewLinear(w.Name, dt, w.Out, w.In, out)
			if err != nil {
				return converted, kept, err
			}
			nl.LoRA = w.LoRA
			*p = nl
			converted++
		}
	}
	return converted, kept, nil
}
