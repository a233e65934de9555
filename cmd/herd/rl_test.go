package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	rlPrompts = "../../rl/testdata/stories_train.txt"
	rlVal     = "../../rl/testdata/stories_val.txt"
)

// rlArgs is a short run on the embedded stories260K.
func rlArgs(algo, out string, extra ...string) []string {
	a := []string{"rl", "--algo", algo, "--prompts", rlPrompts, "--reward", "contains:dog", "--reward", "eos:40", "--steps", "2",
		"--prompts-per-batch", "2", "--group", "2", "--max-new", "12", "--quiet", "-t", "1", "-o", out}
	return append(a, extra...)
}

// Every algorithm runs as herd rl (lora, full, qlora on Q4_0) and writes
// herd sft's layouts with TRL's metric names.
func TestRLCommand(t *testing.T) {
	for _, c := range []struct {
		algo, method string
		files        []string
		metrics      []string
	}{
		{"ppo", "lora", []string{"adapter_model.safetensors", "adapter.gguf", "value_head.safetensors", "loss.png"}, []string{"val/vpred", "val/clipfrac"}},
		{"ppo", "full", []string{"model.gguf", "value_head.safetensors"}, nil},
		{"grpo", "lora", []string{"adapter_model.safetensors", "adapter.gguf"}, []string{"policy/kl_k3"}},
		{"grpo", "qlora", []string{"adapter_model.safetensors"}, nil},
		{"rloo", "lora", []string{"adapter_model.safetensors"}, nil},
		{"ppo", "value-lora", []string{"adapter_model.safetensors", "value/adapter_model.safetensors", "value_head.safetensors"}, []string{"val/vpred"}},
	} {
		method := c.method
		if c.method == "value-lora" {
			c.method = "lora"
		}
		out := filepath.Join(t.TempDir(), "rl")
		args := rlArgs(c.algo, out, "--method", c.method, "--val-prompts", rlVal, "--epochs", "2", "--mini-batch", "2")
		if c.method == "qlora" {
			args = append(args, "--base-type", "q4_0")
		}
		if c.algo == "ppo" {
			args = append(args, "--group", "1", "--target-kl", "2", "--horizon", "100")
		}
		if method == "value-lora" {
			args = append(args, "--value-lora")
		}
		_, se, err := herd(t, "", args...)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", c.algo, c.method, err, se)
		}
		for _, f := range c.files {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Errorf("%s %s: %v", c.algo, c.method, err)
			}
		}
		ms := metricLines(t, out)
		if len(ms) == 0 {
			t.Fatalf("%s: no metrics", c.algo)
		}
		names := append([]string{"objective/kl", "objective/entropy", "objective/rlhf_reward", "policy/clipfrac", "policy/approxkl",
			"env/reward_mean", "env/reward_std", "objective/kl_coef", "eval/reward_mean"}, c.metrics...)
		for _, k := range names {
			if _, ok := ms[len(ms)-1][k]; !ok {
				t.Errorf("%s %s: metric %s missing: %v", c.algo, c.method, k, ms[len(ms)-1])
			}
		}
		if !strings.Contains(se, "held-out (24 prompts)") || !strings.Contains(se, "rollouts:") {
			t.Errorf("%s: report:\n%s", c.algo, se)
		}
	}
}

// A PPO run with the adaptive KL controller stopped after its batch-2
// checkpoint and resumed gives the uninterrupted run's metrics bit for bit.
func TestRLResume(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	extra := []string{"--value-lora", "--steps", "4", "--save-every", "2", "--val-prompts", rlVal, "--eval-every", "3", "--missing-eos-penalty", "0.5", "--group", "1", "--target-kl", "0.5", "--horizon", "50", "--epochs", "2", "--mini-batch", "1"}
	for _, o := range []string{a, b} {
		if _, se, err := herd(t, "", rlArgs("ppo", o, extra...)...); err != nil {
			t.Fatalf("%v\n%s", err, se)
		}
	}
	os.RemoveAll(filepath.Join(b, "step-16"))
	_, se, err := herd(t, "", rlArgs("ppo", b, append(extra, "--resume")...)...)
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, se)
	}
	if !strings.Contains(se, "resuming from") {
		t.Errorf("no resume message:\n%s", se)
	}
	sameRuns(t, a, b)
}

// sameRuns compares two runs' metrics and outputs bit for bit.
func sameRuns(t *testing.T, a, b string) {
	t.Helper()
	ma, mb := metricLines(t, a), metricLines(t, b)
	if len(ma) != len(mb) {
		t.Fatalf("%d metric lines uninterrupted, %d resumed", len(ma), len(mb))
	}
	for i := range ma {
		for _, k := range []string{"loss", "grad_norm", "env/reward_mean", "objective/kl", "objective/kl_coef", "val/vpred", "eval/reward_mean", "eval/kl"} {
			if fmt.Sprint(ma[i][k]) != fmt.Sprint(mb[i][k]) {
				t.Errorf("step %d %s: %v uninterrupted, %v resumed", i+1, k, ma[i][k], mb[i][k])
			}
		}
	}
	if ma[len(ma)-1]["objective/kl_coef"] == ma[0]["objective/kl_coef"] {
		t.Errorf("the KL controller never moved: the test does not cover its state")
	}
	for _, f := range []string{"adapter_model.safetensors", "value_head.safetensors", "value/adapter_model.safetensors"} {
		if _, err := os.Stat(filepath.Join(a, f)); err != nil && f == "value/adapter_model.safetensors" {
			continue // not a --value-lora run
		}
		x, err1 := os.ReadFile(filepath.Join(a, f))
		y, err2 := os.ReadFile(filepath.Join(b, f))
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs after resuming (%v %v)", f, err1, err2)
		}
	}
}

// A herd rl run killed with SIGKILL at several moments and resumed each
// time continues bit for bit: killed in its first rollout batch (before
// any checkpoint: the resumed run starts afresh), in the middle of a
// rollout batch (its steps after the last checkpoint are run again: the
// rollouts are sampled from the batch's seed and the checkpoint holds the
// KL controller's β) and just after a checkpoint.
func TestRLKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the herd binary and trains twice")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "herd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// 6 rollout batches of 2 × 2 epochs of mini-batches of 1: 4 steps a
	// batch, checkpoints after every second batch (steps 8, 16, 24)
	extra := []string{"--steps", "6", "--save-every", "2", "--group", "1", "--epochs", "2", "--mini-batch", "1", "--target-kl", "0.5", "--horizon", "20",
		"--max-new", "24", "--val-prompts", rlVal, "--eval-every", "3"}
	full, killed := filepath.Join(dir, "full"), filepath.Join(dir, "killed")
	if out, err := exec.Command(bin, rlArgs("ppo", full, extra...)...).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted: %v\n%s", err, out)
	}
	resume := []string(nil)
	for _, lines := range []int{2, 11, 17} {
		killAfter(t, bin, rlArgs("ppo", killed, append(extra, resume...)...), filepath.Join(killed, "metrics.jsonl"), lines)
		resume = []string{"--resume"}
	}
	if out, err := exec.Command(bin, rlArgs("ppo", killed, append(extra, "--resume")...)...).CombinedOutput(); err != nil {
		t.Fatalf("resumed: %v\n%s", err, out)
	}
	sameRuns(t, full, killed)
}

// killAfter runs bin with args and kills it (SIGKILL) once metrics has
// lines lines.
func killAfter(t *testing.T, bin string, args []string, metrics string, lines int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, _ := os.ReadFile(metrics)
		if bytes.Count(b, []byte("\n")) >= lines {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the run ended before it could be killed at line %d (%v)", lines, err)
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("no progress")
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Kill() // SIGKILL
	if err := <-done; err == nil {
		t.Fatalf("the run finished before the kill at line %d arrived", lines)
	}
}

// Bad input: an empty prompt file, prompts longer than the context
// (counted), a scorer that times out or answers garbage (an error, or
// with --scorer-skip a counted skip).
func TestRLBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, []byte("\n\n"), 0o644)
	if _, _, err := herd(t, "", "rl", "--prompts", empty, "--reward", "json", "-o", filepath.Join(dir, "o1"), "--quiet"); err == nil || !strings.Contains(err.Error(), "no prompts") {
		t.Errorf("empty prompt file: %v", err)
	}
	long := filepath.Join(dir, "long.txt")
	os.WriteFile(long, []byte("Once upon a time.\n"+strings.Repeat("dog ", 600)+"\nTom had a ball.\n"), 0o644)
	_, se, err := herd(t, "", "rl", "--prompts", long, "--reward", "json", "--steps", "1", "--prompts-per-batch", "2", "--max-new", "8", "-o", filepath.Join(dir, "o2"), "--quiet")
	if err != nil || !strings.Contains(se, "3 read, 2 kept, 1 longer than the context") {
		t.Errorf("a prompt longer than the context: %v\n%s", err, se)
	}
	if _, _, err := herd(t, "", "rl", "--prompts", rlPrompts, "--reward", "nope:1", "-o", filepath.Join(dir, "o3")); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("unknown rule: %v", err)
	}
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "1")
	}))
	defer slow.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>oops</html>") }))
	defer garbage.Close()
	scorer := func(url, out string, extra ...string) (string, error) {
		a := append([]string{"rl", "--prompts", rlPrompts, "--scorer", url, "--scorer-timeout", "50ms", "--steps", "1", "--prompts-per-batch", "2", "--group", "2",
			"--max-new", "6", "-o", filepath.Join(dir, out), "--quiet", "-t", "1"}, extra...)
		_, se, err := herd(t, "", a...)
		return se, err
	}
	if _, err := scorer(slow.URL, "o4"); err == nil || !strings.Contains(err.Error(), "deadline") || !strings.Contains(err.Error(), "--scorer-skip") {
		t.Errorf("scorer timeout: %v", err)
	}
	if _, err := scorer(garbage.URL, "o5"); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("scorer garbage: %v", err)
	}
	se, err = scorer(garbage.URL, "o6", "--scorer-skip")
	if err != nil || !strings.Contains(se, "4 rollouts skipped") {
		t.Errorf("scorer garbage skipped: %v\n%s", err, se)
	}
	if m := metricLines(t, filepath.Join(dir, "o6")); m[0]["rollout/skipped"] != 4.0 {
		t.Errorf("skipped rollouts in the metrics: %v", m[0]["rollout/skipped"])
	}
}

// PPO against a reward model from herd rm train (full and LoRA reward
// models), rendered through a chat template.
func TestRLRewardModel(t *testing.T) {
	for _, method := range []string{"full", "lora"} {
		dir := t.TempDir()
		rm := filepath.Join(dir, "rm")
		if _, se, err := herd(t, "", "rm", "train", "--method", method, "--data", prefPairs, "--steps", "2", "--batch", "2", "--quiet", "-o", rm); err != nil {
			t.Fatalf("rm train: %v\n%s", err, se)
		}
		out := filepath.Join(dir, "rl")
		_, se, err := herd(t, "", "rl", "--algo", "ppo", "--group", "1", "--prompts", rlPrompts, "--reward-model", rm, "--template", "vicuna",
			"--steps", "2", "--prompts-per-batch", "2", "--max-new", "8", "--target-kl", "1", "--quiet", "-t", "1", "-o", out)
		if err != nil {
			t.Fatalf("rl with a %s reward model: %v\n%s", method, err, se)
		}
		ms := metricLines(t, out)
		if r, ok := ms[0]["env/reward_mean"].(float64); !ok || r == 0 {
			t.Errorf("%s reward model: reward %v", method, ms[0]["env/reward_mean"])
		}
	}
}

// Every recipe in rl/recipes runs for a rollout batch.
func TestRLRecipes(t *testing.T) {
	recipes, _ := filepath.Glob("../../rl/recipes/*.yaml")
	if len(recipes) == 0 {
		t.Fatal("no recipes")
	}
	for _, r := range recipes {
		out := filepath.Join(t.TempDir(), "out")
		args := []string{"rl", "--config", r, "--prompts", rlPrompts, "--steps", "1", "--prompts-per-batch", "2", "--max-new", "8", "--quiet", "-t", "1", "-o", out}
		if strings.Contains(r, "ppo") {
			args = append(args, "--reward", "eos:8", "--mini-batch", "1")
		}
		if _, se, err := herd(t, "", args...); err != nil {
			t.Errorf("%s: %v\n%s", r, err, se)
		}
	}
}
