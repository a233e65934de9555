package gptq

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/eval"
	"github.com/herd-llm/herd/quant"
)

// TestLlamaPerplexityMatches writes a GPTQ GGUF (Q4_0 and the Q4_K_M mix)
// and checks that llama.cpp's llama-perplexity reads it and measures the
// perplexity herd measures, within 0.1%, when the llama.cpp build is
// present.
func TestLlamaPerplexityMatches(t *testing.T) {
	peer := "/work/shared/peers/llama"
	if _, err := os.Stat(peer); err != nil {
		t.Skip("no llama.cpp build in /work/shared/peers")
	}
	if testing.Short() {
		t.Skip("runs llama-perplexity")
	}
	path, win := f16Model(t)
	text := filepath.Join(t.TempDir(), "eval.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat(story, 12)), 0o644); err != nil {
		t.Fatal(err)
	}
	final := regexp.MustCompile(`Final estimate: PPL = ([0-9.]+)`)
	for _, ft := range []quant.FileType{quant.MostlyQ4_0, quant.MostlyQ4KM} {
		_, f := runModel(t, path, win, ModelOptions{Type: ft, Damp: 0.01, ActOrder: true})
		m, tok, err := checkpoint.Load(f.Path, "")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(text)
		res, err := eval.Perplexity(m, tok.Encode(string(b), true, false), tok.BOS(), eval.Options{Ctx: 128, Chunks: 8})
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(peer, "perplexity", "-m", f.Path, "-f", text, "-c", "128", "--chunks", "8", "-t", "2").CombinedOutput()
		if err != nil {
			t.Fatalf("llama perplexity: %v\n%s", err, out)
		}
		mt := final.FindSubmatch(out)
		if mt == nil {
			t.Fatalf("no final estimate in llama-perplexity's output:\n%s", out)
		}
		theirs, _ := strconv.ParseFloat(string(mt[1]), 64)
		if d := math.Abs(res.PPL-theirs) / theirs; d > 1e-3 {
			t.Errorf("%s: herd PPL %.4f, llama.cpp %.4f (%.3f%% apart)", ft, res.PPL, theirs, 100*d)
		}
		t.Logf("%s: herd PPL %.4f, llama.cpp %.4f", ft, res.PPL, theirs)
	}
}
