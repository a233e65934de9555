package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestQuantizePerplexityKLD converts the embedded stories260K to GGUF,
// quantizes it to Q4_K_M (its 64- and 172-wide rows take llama.cpp's
// fallbacks), and measures both files on a text with perplexity and kld.
func TestQuantizePerplexityKLD(t *testing.T) {
	dir := t.TempDir()
	f32 := filepath.Join(dir, "s.gguf")
	q := filepath.Join(dir, "q.gguf")
	if _, stderr, err := herd(t, "", "convert", "../../assets/stories260K.bin", "--tokenizer", "../../assets/tok512.bin", "-o", f32); err != nil {
		t.Fatal(err, stderr)
	}
	_, stderr, err := herd(t, "", "quantize", f32, q, "q4_k_m", "-t", "2")
	if err != nil {
		t.Fatal(err, stderr)
	}
	for _, want := range []string{"tensors: F32: 11, Q8_0: 3, Q5_0: 28, F16: 5", "35 of 47 tensors needed a fallback", "model size = 0.99 MiB"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("quantize: %q missing in\n%s", want, stderr)
		}
	}
	text := filepath.Join(dir, "text.txt")
	story := strings.Repeat(golden(t)+"\n", 6)
	if err := os.WriteFile(text, []byte(story), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := herd(t, "", "perplexity", q, "-f", text, "-c", "64")
	if err != nil {
		t.Fatal(err, stderr)
	}
	if !regexp.MustCompile(`^\[1\]\d+\.\d{4},\[2\]\d+\.\d{4},.*\nFinal estimate: PPL = \d+\.\d{4} \+/- \d+\.\d{5}\n$`).MatchString(out) {
		t.Errorf("perplexity output:\n%s", out)
	}
	out, _, err = herd(t, "", "perplexity", f32, "-f", text, "-c", "64", "--chunks", "3", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Chunks int     `json:"chunks"`
		Count  int     `json:"scored_tokens"`
		PPL    float64 `json:"ppl"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Chunks != 3 || res.Count != 3*31 || res.PPL < 1 {
		t.Errorf("perplexity --json: %v %+v\n%s", err, res, out)
	}
	out, stderr, err = herd(t, "", "kld", f32, q, "-f", text, "-c", "64")
	if err != nil {
		t.Fatal(err, stderr)
	}
	for _, want := range []string{"KL Divergence", "====== KL divergence statistics ======", "Mean    KLD:", "Same top p:"} {
		if !strings.Contains(out, want) {
			t.Errorf("kld: %q missing in\n%s", want, out)
		}
	}
}

func TestQuantizeErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"quantize", "../../assets/stories260K.bin", filepath.Join(dir, "x.gguf"), "q4_0"}, "not a GGUF file"},
		{[]string{"quantize", "x.gguf", "y.gguf", "q1_x"}, "unknown quantization type"},
		{[]string{"perplexity", "../../assets/stories260K.bin", "--tokenizer", "../../assets/tok512.bin"}, "give the text to evaluate with -f FILE"},
		{[]string{"perplexity", "../../assets/stories260K.bin", "--tokenizer", "../../assets/tok512.bin", "-f", "testdata/stories260K-greedy-200.txt"}, "you need at least 1024 tokens"},
	} {
		if _, _, err := herd(t, "", c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
