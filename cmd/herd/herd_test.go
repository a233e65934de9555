package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/kernels"
)

// herd runs the CLI in-process and returns stdout and stderr.
func herd(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errb.String(), err
}

func golden(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/stories260K-greedy-200.txt")
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n" // llama2.c ends the text with a newline
}

const (
	assetModel = "../../assets/stories260K.bin"
	assetTok   = "../../assets/tok512.bin"
	llamacpp   = "../../format/gguf/testdata/stories260K-llamacpp.gguf"
	tinyRandom = "../../format/gguf/testdata/llama-2-tiny-random.gguf"
	q80v2      = "../../format/llama2c/testdata/stories260K_q80_v2.bin"
)

func TestRunGolden(t *testing.T) {
	want := golden(t)
	dir := t.TempDir()
	converted := filepath.Join(dir, "stories260K.gguf")
	if _, _, err := herd(t, "", "convert", assetModel, "--tokenizer", assetTok, "-o", converted); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"embedded default", nil},
		{"llama2.c checkpoint", []string{assetModel, "--tokenizer", assetTok}},
		// llama.cpp's converter wrote context_length 128: like llama.cpp's -c, -c raises it
		{"GGUF written by llama.cpp", []string{llamacpp, "-c", "256"}},
		{"GGUF written by herd convert", []string{converted}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run"}, tc.args...)
			args = append(args, "--temp", "0", "-n", "200")
			out, stderr, err := herd(t, "", args...)
			if err != nil {
				t.Fatal(err)
			}
			if out != want {
				t.Errorf("output differs from llama2.c's:\n got: %q\nwant: %q", out, want)
			}
			if !strings.Contains(stderr, "generation: 200 tokens") {
				t.Errorf("stderr lacks the timings: %q", stderr)
			}
		})
	}
}

func TestRunQ80(t *testing.T) {
	out, _, err := herd(t, "", "run", q80v2, "--tokenizer", assetTok, "--temp", "0", "-n", "60")
	if err != nil {
		t.Fatal(err)
	}
	// Q8_0 weights change the logits slightly; the story must still start as the F32 model's does
	if want := "Once upon a time, there was a little girl named Lily."; !strings.HasPrefix(out, want) {
		t.Errorf("Q8_0 output %q does not start with %q", out, want)
	}
}

func TestRunPromptAndSeed(t *testing.T) {
	a, _, err := herd(t, "", "run", "-p", "Once upon a time", "-n", "40", "--seed", "42", "--temp", "0.9")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a, "Once upon a time") {
		t.Errorf("the prompt is not echoed first: %q", a)
	}
	b, _, _ := herd(t, "", "run", "-p", "Once upon a time", "-n", "40", "--seed", "42", "--temp", "0.9")
	if a != b {
		t.Errorf("the same seed gave different text:\n%q\n%q", a, b)
	}
	c, _, _ := herd(t, "", "run", "-p", "Once upon a time", "-n", "40", "--seed", "43", "--temp", "0.9")
	if a == c {
		t.Errorf("seeds 42 and 43 gave the same text %q", a)
	}
}

func TestTinyRandomGGUF(t *testing.T) {
	out, _, err := herd(t, "", "run", tinyRandom, "-p", "Hello world", "-n", "16", "--seed", "1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "Hello world") || len(out) <= len("Hello world\n") {
		t.Errorf("output %q", out)
	}
}

func TestInitBenchChat(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "r.gguf")
	if _, _, err := herd(t, "", "init", "--preset", "stories260k", "--random", "--dtype", "f16", "--seed", "5", "-o", model); err != nil {
		t.Fatal(err)
	}
	out, _, err := herd(t, "", "bench", model, "-p", "16", "-n", "8", "-r", "2", "-t", "1", "--json")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want two JSON lines, got %q", out)
	}
	for i, l := range lines {
		var r struct {
			Test    string    `json:"test"`
			Samples []float64 `json:"samples_ts"`
			Avg     float64   `json:"avg_ts"`
			Type    string    `json:"model_type"`
			Kernels string    `json:"kernels"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r.Kernels != kernels.CPUPath() {
			t.Errorf("line %d: kernels %q, want %q", i, r.Kernels, kernels.CPUPath())
		}
		if want := []string{"pp16", "tg8"}[i]; r.Test != want || len(r.Samples) != 2 || !(r.Avg > 0) {
			t.Errorf("line %d: %+v", i, r)
		}
	}
	out, _, err = herd(t, "", "bench", model, "-p", "8", "-n", "4", "-r", "1")
	if err != nil || !strings.Contains(out, "pp8") || !strings.Contains(out, "tg4") {
		t.Errorf("table output %q, %v", out, err)
	}
	// --no-mmap: the weights copied at load, the same tests
	out, _, err = herd(t, "", "bench", model, "-p", "8", "-n", "4", "-r", "1", "--no-mmap")
	if err != nil || !strings.Contains(out, "pp8") || !strings.Contains(out, "tg4") {
		t.Errorf("--no-mmap table output %q, %v", out, err)
	}
	if _, _, err := herd(t, "", "bench", model, "-n", "4", "--no-mmap", "--plain-layout"); err == nil || !strings.Contains(err.Error(), "cannot be combined") {
		t.Errorf("--no-mmap with --plain-layout: %v, want a refusal", err)
	}
	// chat: two turns through one KV cache, ending at end of input
	out, _, err = herd(t, "Once upon a time\nThe end\n", "chat", "-n", "10", "--seed", "3")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "> ") != 3 {
		t.Errorf("chat transcript %q: want three prompts", out)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.gguf")
	os.WriteFile(bad, []byte("GGUF\x03\x00\x00\x00garbage"), 0o644)
	for _, args := range [][]string{
		{"run", bad},
		{"run", filepath.Join(dir, "missing.bin")},
		{"run", assetModel},                            // a llama2.c file without --tokenizer
		{"run", assetModel, "--tokenizer", tinyRandom}, // 32000 tokens for a 512 vocabulary
		{"init", "--preset", "nope", "--random", "-o", filepath.Join(dir, "x.gguf")},
		{"init", "--preset", "tinyllama-1.1b", "--random", "-o", filepath.Join(dir, "x.gguf")}, // no tokenizer
	} {
		if _, _, err := herd(t, "", args...); err == nil {
			t.Errorf("herd %v: no error", args)
		} else if strings.Contains(err.Error(), "panic") {
			t.Errorf("herd %v: %v", args, err)
		}
	}
}
