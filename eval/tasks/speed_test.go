//go:build unix

package tasks

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tokenizer"
)

// TestSpeedup measures the batched multiple-choice path against the
// one-at-a-time path on the model HERD_EVAL_BENCH names (a TinyLlama-shaped
// `herd init --preset tinyllama-1.1b --random` file; skipped without it):
// HellaSwag-shaped documents (the shipped six, each under two activity
// labels), 0-shot and 10-shot (the Open LLM Leaderboard's setting), ARC-shaped ones 1-shot, the shipped TruthfulQA (its
// primer shared by every question) and MMLU 2-shot (the examples shared by
// a subject's questions), after one warm-up pass. The
// issue asks for at least 3× the examples/s; the figures go to
// BENCHMARKS.md.
func TestSpeedup(t *testing.T) {
	path := os.Getenv("HERD_EVAL_BENCH")
	if path == "" {
		t.Skip("set HERD_EVAL_BENCH=MODEL.gguf to measure")
	}
	m, tok, err := checkpoint.Load(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var s llama.State
	if _, err := m.Forward(&s, m.NewKVCache(8), []int{1, 2, 3, 4}, 0, false); err != nil { // map the weights in
		t.Fatal(err)
	}
	hs := loadTask(t, "testdata/hellaswag.yaml")
	base := append(append([]Doc(nil), hs.Docs...), hs.Pool...)
	hs.Docs = nil
	for _, label := range []string{"", "Outside: "} {
		for _, d := range base {
			d.Text = label + d.Text
			hs.Docs = append(hs.Docs, d)
		}
	}
	// HellaSwag as the Open LLM Leaderboard runs it, 10-shot: the shipped
	// six documents, the examples from a pool of twelve more written for
	// this measurement (testdata/hellaswag_bench_train.jsonl).
	hs10, err := LoadBuiltin("hellaswag", "hellaswag_tiny_10shot", "testdata/hellaswag.jsonl", "testdata/hellaswag_bench_train.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	hs10.Docs = base
	arc := loadTask(t, "testdata/arc_easy.yaml")
	arc.Docs = append(append([]Doc(nil), arc.Docs...), arc.Pool...)
	for _, c := range []struct {
		tk    *Task
		shots int
	}{{hs, 0}, {hs10, 10}, {arc, 1}, {loadTask(t, "testdata/truthfulqa_mc2.yaml"), 0}, {loadTask(t, "testdata/mmlu.yaml"), 2}} {
		t.Run(c.tk.Name, func(t *testing.T) { speedup(t, m, tok, c.tk, c.shots) })
	}
}

// speedup runs tk batched and one at a time and compares the rates, in
// examples per second of wall time and per second of this process's CPU
// time (user + system, all threads): on a machine shared with other jobs
// the wall time of two runs taken one after the other differs with the
// load, the CPU time they need much less.
func speedup(t *testing.T, m *llama.Model, tok tokenizer.Tokenizer, tk *Task, shots int) {
	var wall, cpu [2]float64
	for i, one := range []bool{false, true} {
		c0 := cpuSeconds(t)
		rs, err := Run(m, tok, []*Task{tk}, Options{Shots: shots, OneAtATime: one})
		if err != nil {
			t.Fatal(err)
		}
		c := cpuSeconds(t) - c0
		wall[i], cpu[i] = rs[0].Rate, float64(rs[0].Scored)/c
		fmt.Printf("%s %d-shot one-at-a-time=%v: %d documents in %.1f s (%.1f CPU s): %.3f examples/s, %.3f per CPU second\n",
			tk.Name, shots, one, rs[0].Scored, rs[0].Seconds, c, wall[i], cpu[i])
	}
	fmt.Printf("%s: batched %.2f× the one-at-a-time examples per CPU second (%.2f× per wall second)\n", tk.Name, cpu[0]/cpu[1], wall[0]/wall[1])
	if cpu[0] < 3*cpu[1] {
		t.Errorf("%s: batched %.3f examples per CPU second, one at a time %.3f: under 3×", tk.Name, cpu[0], cpu[1])
	}
}

// cpuSeconds is the CPU time this process has used.
func cpuSeconds(t *testing.T) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}
