package generate_test

import (
	"fmt"
	"strings"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
)

// Load a model and generate: the embedded stories260K, greedy, 20 tokens.
func Example() {
	m, tok, err := checkpoint.Default() // or checkpoint.Load("model.gguf", "")
	if err != nil {
		panic(err)
	}
	defer m.Close()
	g := generate.Generator{Model: m, Tok: tok}
	var out strings.Builder
	smp := generate.NewSampler(generate.SamplerConfig{Temperature: 0}) // greedy; see SamplerConfig for the rest
	st, err := g.Generate("Once upon a time", generate.Options{MaxTokens: 20}, smp, func(p []byte) error {
		out.Write(p)
		return nil
	})
	if err != nil {
		panic(err) // a model that produced NaN, say: a *generate.NonFiniteError
	}
	fmt.Println(st.GenTokens, "tokens")
	fmt.Println(strings.HasPrefix(out.String(), "Once upon a time"))
	// Output:
	// 20 tokens
	// true
}
