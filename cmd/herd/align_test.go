package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/train"
)

const (
	prefPairs = "../../align/testdata/pairs.jsonl"
	prefKTO   = "../../align/testdata/kto.jsonl"
)

// metricKeys reads metrics.jsonl's lines as maps.
func metricLines(t *testing.T, dir string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, train.MetricsName))
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// Every loss runs as herd dpo on the embedded model and writes herd sft's
// layouts, with TRL's metric names; herd run --lora takes the adapter.
func TestDPOCommand(t *testing.T) {
	for _, c := range []struct{ loss, method, data string }{
		{"sigmoid", "lora", prefPairs}, {"robust", "lora", prefPairs}, {"ipo", "lora", prefPairs}, {"hinge", "lora", prefPairs},
		{"simpo", "lora", prefPairs}, {"orpo", "full", prefPairs}, {"kto", "lora", prefKTO}, {"sigmoid", "full", prefPairs},
		{"sigmoid", "qlora", prefPairs},
	} {
		out := filepath.Join(t.TempDir(), "dpo")
		args := []string{"dpo", "--loss", c.loss, "--method", c.method, "--data", c.data, "--val-data", c.data, "--steps", "2", "--batch", "2", "--quiet", "-o", out, "--label-smoothing", "0.1"}
		if c.loss == "ipo" || c.loss == "hinge" || c.loss == "kto" || c.loss == "orpo" {
			args = args[:len(args)-2]
		}
		if c.method == "qlora" {
			args = append(args, "--base-type", "q4_0", "--precompute")
		}
		_, se, err := herd(t, "", args...)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", c.loss, c.method, err, se)
		}
		ms := metricLines(t, out)
		if len(ms) != 2 {
			t.Fatalf("%s: %d metric lines", c.loss, len(ms))
		}
		keys := []string{"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"}
		if c.loss == "kto" {
			keys = []string{"kl", "rewards/mean", "rewards/accuracies", "logps/mean"}
		}
		for _, k := range keys {
			if _, ok := ms[1][k]; !ok {
				t.Errorf("%s: metrics.jsonl lacks %s: %v", c.loss, k, ms[1])
			}
		}
		if !strings.Contains(se, "validation after") {
			t.Errorf("%s: no validation report:\n%s", c.loss, se)
		}
		want := "adapter.gguf"
		if c.method == "full" {
			want = "model.gguf"
		}
		if _, err := os.Stat(filepath.Join(out, want)); err != nil {
			t.Errorf("%s %s: %v", c.loss, c.method, err)
		}
		if c.loss == "sigmoid" && c.method == "lora" {
			if _, se, err := herd(t, "", "run", "--lora", out, "-p", "Once upon a time", "--temp", "0", "-n", "8"); err != nil {
				t.Errorf("herd run --lora: %v\n%s", err, se)
			}
		}
	}
}

// Bad input names its file and line; --skip-bad counts it; a loss that
// needs pairs refuses unpaired rows.
func TestDPOBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"prompt": "a", "chosen": "b", "rejected": "c"}`+"\n"+`{"prompt": "a", "chosen": "b"}`+"\n"), 0o644)
	_, _, err := herd(t, "", "dpo", "--data", bad, "--steps", "1", "--quiet", "-o", filepath.Join(dir, "o1"))
	if err == nil || !strings.Contains(err.Error(), "bad.jsonl:2: field rejected: missing") {
		t.Errorf("missing rejected: %v", err)
	}
	_, se, err := herd(t, "", "dpo", "--data", bad, "--skip-bad", "--steps", "1", "--quiet", "-o", filepath.Join(dir, "o2"))
	if err != nil || !strings.Contains(se, "1 malformed rows skipped") {
		t.Errorf("--skip-bad: %v\n%s", err, se)
	}
	_, _, err = herd(t, "", "dpo", "--data", prefKTO, "--steps", "1", "--quiet", "-o", filepath.Join(dir, "o3"))
	if err == nil || !strings.Contains(err.Error(), "kto.jsonl:1: an unpaired") {
		t.Errorf("unpaired rows for sigmoid: %v", err)
	}
}

// herd rm train (full and LoRA) and herd rm score: one JSON line per
// example, the rewards batched.
func TestRMCommands(t *testing.T) {
	for _, method := range []string{"full", "lora", "qlora"} {
		out := filepath.Join(t.TempDir(), "rm")
		if _, se, err := herd(t, "", "rm", "train", "--method", method, "--data", prefPairs, "--val-data", prefPairs, "--steps", "3", "--batch", "2", "--quiet", "-o", out); err != nil {
			t.Fatalf("%s: %v\n%s", method, err, se)
		}
		ms := metricLines(t, out)
		if _, ok := ms[len(ms)-1]["accuracy"]; !ok || len(ms) != 3 {
			t.Errorf("%s: metrics %v", method, ms)
		}
		so, se, err := herd(t, "", "rm", "score", out, "--data", prefPairs+","+prefKTO, "--batch", "3")
		if err != nil {
			t.Fatalf("%s score: %v\n%s", method, err, se)
		}
		n := 0
		sc := bufio.NewScanner(strings.NewReader(so))
		for sc.Scan() {
			var l map[string]any
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatal(err)
			}
			_, paired := l["chosen"]
			_, single := l["reward"]
			if !paired && !single {
				t.Errorf("line %q", sc.Text())
			}
			n++
		}
		if n != 10 {
			t.Errorf("%s: %d scored lines, want 10", method, n)
		}
	}
}

// A DPO run stopped after its step-2 checkpoint and resumed gives the
// uninterrupted run's metrics bit for bit.
func TestDPOResume(t *testing.T) {
	for _, cmd := range [][]string{{"dpo"}, {"dpo", "--loss", "kto"}, {"rm", "train"}} {
		resumeSame(t, cmd)
	}
}

func resumeSame(t *testing.T, cmd []string) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	args := append(cmd, "--data", prefPairs, "--steps", "4", "--batch", "2", "--save-every", "2", "--keep", "0", "--dropout", "0.1", "--quiet")
	for _, o := range []string{a, b} {
		if _, se, err := herd(t, "", append(args, "-o", o)...); err != nil {
			t.Fatalf("%v\n%s", err, se)
		}
	}
	os.RemoveAll(filepath.Join(b, "step-4"))
	if _, se, err := herd(t, "", append(args, "-o", b, "--resume")...); err != nil {
		t.Fatalf("resume: %v\n%s", err, se)
	}
	ma, mb := metricLines(t, a), metricLines(t, b)
	for i := range ma {
		for _, k := range []string{"loss", "grad_norm", "rewards/margins", "rewards/mean", "accuracy"} {
			if ma[i][k] != mb[i][k] {
				t.Errorf("%v step %d %s: %v uninterrupted, %v resumed", cmd, i+1, k, ma[i][k], mb[i][k])
			}
		}
	}
}

// Every recipe in align/recipes runs for a step on the test data.
func TestAlignRecipes(t *testing.T) {
	recipes, _ := filepath.Glob("../../align/recipes/*.yaml")
	if len(recipes) == 0 {
		t.Fatal("no recipes")
	}
	for _, r := range recipes {
		cmd := []string{"dpo"}
		if strings.Contains(filepath.Base(r), "rm-") {
			cmd = []string{"rm", "train"}
		}
		out := filepath.Join(t.TempDir(), "out")
		if _, se, err := herd(t, "", append(cmd, "--config", r, "--data", prefPairs, "--steps", "1", "--batch", "2", "--quiet", "-o", out)...); err != nil {
			t.Errorf("%s: %v\n%s", r, err, se)
		}
	}
}

// LLaMA-Factory's English and Chinese preference demos train (two steps
// on the embedded model, truncated to 256 tokens).
func TestDPODemosTrain(t *testing.T) {
	for _, f := range []string{"dpo_en_demo.json", "dpo_zh_demo.json"} {
		p := filepath.Join("../../../shared/data/prefs", f)
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not present (shared data)", p)
		}
		out := filepath.Join(t.TempDir(), "o")
		_, se, err := herd(t, "", "dpo", "--data", p, "--max-len", "256", "--steps", "2", "--batch", "2", "--quiet", "-o", out)
		if err != nil || !strings.Contains(se, "300 examples → 300 samples") {
			t.Errorf("%s: %v\n%s", f, err, se)
		}
		if ms := metricLines(t, out); len(ms) != 2 {
			t.Errorf("%s: %d metric lines", f, len(ms))
		}
	}
}
