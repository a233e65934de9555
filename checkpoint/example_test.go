package checkpoint_test

import (
	"fmt"
	"strings"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
)

// Load a model with its tokenizer (here the embedded stories260K; a path
// to a GGUF or llama2.c file loads that) and generate greedily.
func ExampleLoad() {
	m, tok, err := checkpoint.Load("", "")
	if err != nil {
		panic(err)
	}
	defer m.Close()
	g := &generate.Generator{Model: m, Tok: tok}
	var out strings.Builder
	_, err = g.Generate("Once upon a time", generate.Options{MaxTokens: 14}, generate.NewSampler(generate.SamplerConfig{}),
		func(piece []byte) error { out.Write(piece); return nil })
	if err != nil {
		panic(err)
	}
	fmt.Println(out.String())
	// Output: Once upon a time, there was a little girl named Lily. She loved
}
