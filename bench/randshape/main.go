// Command randshape writes a random LLaMA of a shape no preset has (herd
// init takes presets only), initialised as herd pretrain initialises a
// preset (N(0, 0.02²), residual projections scaled by 1/sqrt(2·layers)),
// with the embedded tok512 tokenizer, so herd pretrain --init can train it.
// bench/gptq_table.sh's pretrained model starts from it:
//
//	go run ./bench/randshape -dim 256 -layers 4 -heads 8 -ffn 768 -o init.gguf
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
)

func main() {
	dim := flag.Int("dim", 256, "model width")
	layers := flag.Int("layers", 4, "blocks")
	heads := flag.Int("heads", 8, "attention heads")
	kv := flag.Int("kv", 0, "key/value heads (0: heads)")
	ffn := flag.Int("ffn", 768, "feed-forward width")
	ctx := flag.Int("ctx", 256, "context length")
	seed := flag.Uint64("seed", 1337, "seed")
	out := flag.String("o", "", "output GGUF")
	flag.Parse()
	if err := run(*dim, *layers, *heads, *kv, *ffn, *ctx, *seed, *out); err != nil {
		fmt.Fprintln(os.Stderr, "randshape:", err)
		os.Exit(1)
	}
}

func run(dim, layers, heads, kv, ffn, ctx int, seed uint64, out string) error {
	if out == "" {
		return fmt.Errorf("give -o OUT.gguf")
	}
	if kv == 0 {
		kv = heads
	}
	_, tok, err := checkpoint.Default()
	if err != nil {
		return err
	}
	c := llama.Config{Dim: dim, NLayers: layers, NHeads: heads, NKVHeads: kv, FFNDim: ffn,
		VocabSize: tok.VocabSize(), ContextLen: ctx, RopeTheta: 10000, NormEps: 1e-5, TiedEmbeddings: true}
	m, err := llama.RandomInit(c, tensor.F32, seed, llama.InitOptions{ScaleResidual: true})
	if err != nil {
		return err
	}
	name := fmt.Sprintf("random d%d l%d h%d f%d v%d", dim, layers, heads, ffn, c.VocabSize)
	if err := checkpoint.SaveGGUF(out, m, tok, checkpoint.SaveOptions{Name: name}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %s, %.2fM parameters\n", out, name, float64(c.Params())/1e6)
	return nil
}
