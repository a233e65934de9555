package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-llm/herd/format/gguf"
)

const storiesText = "../../data/testdata/tinystories.txt"

// prepareData runs herd data prepare on the TinyStories excerpt (tok512,
// paragraph documents, one in eight for validation).
func prepareData(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	_, stderr, err := herd(t, "", "data", "prepare", storiesText, "--split", "paragraph", "--val-fraction", "0.125",
		"--near-dedup", "0.8", "-o", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kept", "near_duplicate", "MB/s", "wrote 1 train shards"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("data prepare output lacks %q:\n%s", want, stderr)
		}
	}
	return dir
}

func lossesOf(t *testing.T, path string) []float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []float64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m struct {
			Step int     `json:"step"`
			Loss float64 `json:"loss"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if m.Step != len(out)+1 {
			t.Fatalf("%s: step %d on line %d", path, m.Step, len(out)+1)
		}
		out = append(out, m.Loss)
	}
	return out
}

// A pretraining run killed with SIGKILL and resumed reaches the same loss
// at every step, and the same weights, as a run that was never stopped. The
// real binary runs in a subprocess.
func TestPretrainKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the herd binary and trains three times")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "herd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := prepareData(t)
	args := func(out string) []string {
		return []string{"pretrain", "--preset", "stories260k", "--data", data, "-o", out, "--steps", "40", "--batch", "8",
			"--seq", "64", "--lr", "2e-3", "--warmup", "5", "--save-every", "10", "--eval-every", "20", "--eval-batches", "2",
			"-t", "1", "--no-progress"}
	}
	full := filepath.Join(dir, "full")
	if out, err := exec.Command(bin, args(full)...).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}
	want := lossesOf(t, filepath.Join(full, "metrics.jsonl"))

	killed := filepath.Join(dir, "killed")
	cmd := exec.Command(bin, args(killed)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// kill once step 25 is logged: past the checkpoint of step 20
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, _ := os.ReadFile(filepath.Join(killed, "metrics.jsonl"))
		if bytes.Count(b, []byte("\n")) >= 25 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the run ended before it could be killed (%v):\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no progress:\n%s", stderr.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("the run finished before the kill arrived")
	}
	b, _ := os.ReadFile(filepath.Join(killed, "latest"))
	t.Logf("killed after %d logged steps; latest checkpoint %s", len(lossesOf(t, filepath.Join(killed, "metrics.jsonl"))), strings.TrimSpace(string(b)))

	out, err := exec.Command(bin, append(args(killed), "--resume")...).CombinedOutput()
	if err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "resuming from") {
		t.Errorf("the resumed run did not say where it resumed:\n%s", out)
	}
	got := lossesOf(t, filepath.Join(killed, "metrics.jsonl"))
	if len(got) != len(want) {
		t.Fatalf("%d steps logged after resuming, %d uninterrupted", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d: loss %v after kill and resume, %v uninterrupted", i+1, got[i], want[i])
		}
	}
	a, err := gguf.Open(filepath.Join(full, "model.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	k, err := gguf.Open(filepath.Join(killed, "model.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	for _, ta := range a.Tensors {
		tk, ok := k.Tensor(ta.Name)
		if !ok || !bytes.Equal(ta.Data, tk.Data) {
			t.Errorf("tensor %s differs", ta.Name)
		}
	}
}

// herd pretrain takes a YAML recipe, flags override it, the checkpoint runs
// with herd run and exports to llama2.c, which runs too.
func TestPretrainRecipeRunExport(t *testing.T) {
	data := prepareData(t)
	dir := t.TempDir()
	recipe := filepath.Join(dir, "r.yaml")
	os.WriteFile(recipe, []byte("preset: stories260k\nsteps: 50\nbatch: 2\nseq: 32\nlr: 0.003\nwarmup: 2\neval_every: 0\neval_batches: 1\nsave_every: 0\n"), 0o644)
	out := filepath.Join(dir, "run")
	_, stderr, err := herd(t, "", "pretrain", "--config", recipe, "--steps", "6", "--data", data, "-o", out, "-t", "1", "--no-progress")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{"steps: 6", "batch: 2", "lr: 0.003", "val loss"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the run's output lacks %q:\n%s", want, stderr)
		}
	}
	model := filepath.Join(out, "model.gguf")
	a, _, err := herd(t, "", "run", model, "--temp", "0", "-n", "20")
	if err != nil {
		t.Fatal(err)
	}
	if out, _, err := herd(t, "", "bench", model, "-p", "8", "-n", "4", "-r", "1", "-t", "1"); err != nil || !strings.Contains(out, "tg4") {
		t.Errorf("herd bench on the checkpoint: %q, %v", out, err)
	}
	bin, tok := filepath.Join(dir, "m.bin"), filepath.Join(dir, "tok.bin")
	if _, _, err := herd(t, "", "export", model, "--format", "llama2c", "-o", bin, "--tokenizer-out", tok); err != nil {
		t.Fatal(err)
	}
	b, _, err := herd(t, "", "run", bin, "--tokenizer", tok, "--temp", "0", "-n", "20")
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("the exported model generates %q, the checkpoint %q", b, a)
	}
	if _, _, err := herd(t, "", "export", model, "--format", "safetensors", "-o", bin); err == nil {
		t.Error("an unknown export format was accepted")
	}
}

// Exporting stories260K back to llama2.c reproduces llama2.c's greedy text.
func TestExportGolden(t *testing.T) {
	dir := t.TempDir()
	bin, tok := filepath.Join(dir, "s.bin"), filepath.Join(dir, "tok.bin")
	for _, version := range []string{"0", "1"} {
		if _, _, err := herd(t, "", "export", assetModel, "--tokenizer", assetTok, "--version", version, "-o", bin, "--tokenizer-out", tok); err != nil {
			t.Fatal(err)
		}
		out, _, err := herd(t, "", "run", bin, "--tokenizer", tok, "--temp", "0", "-n", "200")
		if err != nil {
			t.Fatal(err)
		}
		if out != golden(t) {
			t.Errorf("version %s: output differs from llama2.c's:\n%q", version, out)
		}
	}
	want, _ := os.ReadFile(assetTok)
	got, _ := os.ReadFile(tok)
	if !bytes.Equal(want, got) {
		t.Error("the exported tokenizer.bin differs from tok512.bin")
	}
}

func TestPretrainAndDataErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"pretrain", "--data", dir, "-o", filepath.Join(dir, "o")},                                       // no preset or init
		{"pretrain", "--preset", "stories260k", "--data", dir, "-o", filepath.Join(dir, "o")},            // no manifest
		{"pretrain", "--preset", "nope", "--data", dir, "-o", filepath.Join(dir, "o")},                   // unknown preset
		{"pretrain", "--config", filepath.Join(dir, "missing.yaml")},                                     // missing recipe
		{"data", "prepare", "-o", filepath.Join(dir, "d")},                                               // no inputs
		{"data", "prepare", filepath.Join(dir, "none.txt"), "-o", filepath.Join(dir, "d")},               // missing input
		{"data", "prepare", storiesText, "--split", "words", "-o", filepath.Join(dir, "d")},              // bad split
		{"data", "prepare", storiesText, "--tokenizer", tinyRandom, "--scripts", "Elvish", "-o", "x"},    // bad script
		{"export", assetModel, "--tokenizer", assetTok, "--version", "7", "-o", filepath.Join(dir, "x")}, // bad version
	} {
		if _, _, err := herd(t, "", args...); err == nil {
			t.Errorf("herd %v: no error", args)
		} else if strings.Contains(err.Error(), "panic") {
			t.Errorf("herd %v: %v", args, err)
		}
	}
}
