package tasks

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/herd-llm/herd/tokenizer"
)

// encodePair tokenizes a context and its continuation as the harness's
// _encode_pair does for a causal model: trailing whitespace of the context
// moves to the continuation, the two are encoded together (with BOS when
// the vocabulary has one), and the continuation is the tokens past the
// context's own encoding. An empty context is the BOS (or EOS) token
// alone. It returns the whole sequence and the continuation's length.
func encodePair(tok tokenizer.Tokenizer, ctx, cont string) ([]int, int, error) {
	bos := tok.BOS() >= 0
	if ctx == "" {
		prefix := tok.BOS()
		if prefix < 0 {
			prefix = tok.EOS()
		}
		if prefix < 0 {
			return nil, 0, fmt.Errorf("an empty context needs a BOS or EOS token, and the vocabulary has neither")
		}
		c := tok.Encode(cont, false, false)
		if len(c) == 0 {
			return nil, 0, fmt.Errorf("the continuation %q encodes to no tokens", cont)
		}
		if c[0] == prefix {
			return c, len(c) - 1, checkCont(c, len(c)-1, cont)
		}
		return append([]int{prefix}, c...), len(c), nil
	}
	trimmed := strings.TrimRightFunc(ctx, unicode.IsSpace)
	cont = ctx[len(trimmed):] + cont
	ctx = trimmed
	whole := tok.Encode(ctx+cont, bos, false)
	n := len(whole) - len(tok.Encode(ctx, bos, false))
	return whole, n, checkCont(whole, n, cont)
}

func checkCont(whole []int, n int, cont string) error {
	if n < 1 {
		return fmt.Errorf("the continuation %q adds no tokens to its context", cont)
	}
	if n >= len(whole) {
		return fmt.Errorf("the continuation %q leaves no context token", cont)
	}
	return nil
}
