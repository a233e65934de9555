package llama

import (
	"fmt"

	"github.com/herd-llm/herd/nn"
	"github.com/herd-llm/herd/tensor"
)

// ResizeVocab grows the vocabulary to n tokens, as after extending the
// tokenizer (Chinese-LLaMA): the token embedding and the output head get
// n-VocabSize new rows, each the mean of the old rows (stored in the
// weight's own dtype), and Config.VocabSize becomes n. The old rows are
// copied byte for byte, so the old tokens' embeddings and logits do not
// change. A tied head grows with the embedding. The resized weights live
// on the heap, no longer in the file mapping.
func (m *Model) ResizeVocab(n int) error {
	old := m.Config.VocabSize
	if n < old {
		return fmt.Errorf("resize vocabulary: %d tokens is fewer than the model's %d (shrinking is not supported)", n, old)
	}
	if n == old {
		return nil
	}
	embed, err := growRows(m.Embed, n)
	if err != nil {
		return err
	}
	out := embed
	if !m.Config.TiedEmbeddings {
		if out, err = growRows(m.Output, n); err != nil {
			return err
		}
	}
	m.Embed, m.Output = embed, out
	m.Config.VocabSize = n
	return nil
}

// growRows returns l with rows appended up to n, each the mean of l's rows.
func growRows(l *nn.Linear, n int) (*nn.Linear, error) {
	if !tensor.CanQuantize(l.DType) {
		return nil, fmt.Errorf("resize vocabulary: tensor %s: cannot write new rows of type %s", l.Name, l.DType)
	}
	rb, err := l.DType.RowBytes(l.In)
	if err != nil {
		return nil, fmt.Errorf("resize vocabulary: tensor %s: %w", l.Name, err)
	}
	sum := make([]float64, l.In)
	row := make([]float32, l.In)
	for r := range l.Out {
		l.Row(row, r)
		for i, v := range row {
			sum[i] += float64(v)
		}
	}
	for i := range row {
		row[i] = float32(sum[i] / float64(l.Out))
	}
	data := make([]byte, rb*n)
	copy(data, l.Data)
	if err := tensor.Quantize(l.DType, data[rb*l.Out:rb*(l.Out+1)], row); err != nil {
		return nil, fmt.Errorf("resize vocabulary: tensor %s: %w", l.Name, err)
	}
	for r := l.Out + 1; r < n; r++ {
		copy(data[rb*r:rb*(r+1)], data[rb*l.Out:rb*(l.Out+1)])
	}
	return nn.NewLinear(l.Name, l.DType, n, l.In, data)
}
