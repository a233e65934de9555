package tokenizer

import "fmt"

// Extend merges two SentencePiece vocabularies as Chinese-LLaMA-Alpaca's
// merge_tokenizers.py does: the result is base with every piece of add
// that base lacks appended after it, in add's order, with score 0. Base's
// ids, scores, types and options stay as they are, so a model trained on
// base keeps its meaning for the old ids. Normal and user-defined pieces
// are appended (keeping their type); add's control, unknown and byte
// pieces are not, since they are meta pieces of add's own. added is the
// number of pieces appended.
func Extend(base, add *SPM) (merged *SPM, added int, err error) {
	n := base.VocabSize()
	pieces, scores, types := make([]string, n), make([]float32, n), make([]Type, n)
	have := make(map[string]bool, n+add.VocabSize())
	for i := range n {
		pieces[i], scores[i], types[i] = base.Piece(i), base.Score(i), base.Type(i)
		have[pieces[i]] = true
	}
	for i := range add.VocabSize() {
		p, ty := add.Piece(i), add.Type(i)
		if have[p] || ty != TypeNormal && ty != TypeUserDefined {
			continue
		}
		have[p] = true
		pieces, scores, types = append(pieces, p), append(scores, 0), append(types, ty)
		added++
	}
	merged, err = NewSPM(pieces, scores, types, base.Options())
	if err != nil {
		return nil, 0, fmt.Errorf("extend: %w", err)
	}
	merged.unkSurface = base.unkSurface
	return merged, added, nil
}
