package synth_test

import (
	"context"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/oai"
	"github.com/herd-llm/herd/serve"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/synth"
)

// startServe serves the embedded stories260K as "stories" on 127.0.0.1
// through herd's own server, with a context long enough for the
// pipelines' prompts.
func startServe(t *testing.T) string {
	t.Helper()
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := chat.Lookup("raw")
	sched := generate.NewScheduler(m, tok, generate.SchedulerConfig{Parallel: 4, Context: 2048})
	t.Cleanup(sched.Close)
	srv, err := serve.New(serve.Config{}, &serve.Model{Name: "stories", Model: m, Tok: tok, Template: raw, Sched: sched})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String()
}

// trainOn fine-tunes stories260K for a few steps on a pipeline's output.
func trainOn(t *testing.T, path string) {
	t.Helper()
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := chat.Lookup("vicuna")
	e := &sft.Encoder{Tok: tok, Template: tmpl, Ctx: 256, Overflow: sft.Split}
	samples, bad, err := e.LoadAll([]string{path}, false)
	if err != nil || bad != 0 || len(samples) == 0 {
		t.Fatalf("sft reading %s: %d samples, %d bad, %v", path, len(samples), bad, err)
	}
	res, err := sft.Tune(m, samples, sft.Options{Method: sft.Full, Steps: 3, Batch: 2, LR: 1e-3, Seed: 1})
	if err != nil {
		t.Fatalf("sft on %s: %v", path, err)
	}
	for _, l := range res.Losses {
		if math.IsNaN(l) || math.IsInf(l, 0) {
			t.Fatalf("sft on %s: loss %v", path, res.Losses)
		}
	}
	t.Logf("%s: %d samples, loss %.3f → %.3f", filepath.Base(path), len(samples), res.Losses[0], res.Losses[len(res.Losses)-1])
}

// TestAgainstHerdServe runs every pipeline end to end against herd serve
// with stories260K as the teacher (its text is nonsense for the purpose;
// what is checked is that each pipeline runs, writes what herd sft reads,
// and that the output trains), twice each with the same seed for
// determinism.
func TestAgainstHerdServe(t *testing.T) {
	if testing.Short() {
		t.Skip("runs stories260K behind herd serve")
	}
	url := startServe(t)
	c, err := oai.New(oai.Config{Endpoint: url, Model: "stories", Concurrency: 4, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckModel(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad, _ := oai.New(oai.Config{Endpoint: url, Model: "gpt-4", Retries: -1})
	if err := bad.CheckModel(context.Background()); err == nil {
		t.Error("a wrong model name passed the check")
	}
	dir := t.TempDir()
	questions := filepath.Join(dir, "questions.txt")
	os.WriteFile(questions, []byte("Lily went to the park.\nTim had a red ball.\nThe cat was hungry.\nMom baked a cake.\n"), 0o644)
	opts := func(name string) synth.Options {
		return synth.Options{Client: c, Out: filepath.Join(dir, name), Seed: 7, Temperature: 1, Stop: []string{"."}, MaxTokens: 64}
	}
	runs := []struct {
		name string
		mk   func(o synth.Options) interface {
			Run(context.Context) (*synth.Stats, error)
		}
		train bool
	}{
		{"self-instruct", func(o synth.Options) interface {
			Run(context.Context) (*synth.Stats, error)
		} {
			return &synth.SelfInstruct{Options: o, Seeds: "testdata/seed_tasks.jsonl", Target: 3, Shown: 2, Machine: 1, Wave: 2, MaxWaves: 6, Header: "Tasks:\n"}
		}, true},
		{"evol-instruct", func(o synth.Options) interface {
			Run(context.Context) (*synth.Stats, error)
		} {
			return &synth.EvolInstruct{Options: o, Input: questions, Rounds: 2, LenientJudge: true}
		}, true},
		{"self-chat", func(o synth.Options) interface {
			Run(context.Context) (*synth.Stats, error)
		} {
			return &synth.SelfChat{Options: o, Input: questions, Turns: 2}
		}, true},
		{"distill", func(o synth.Options) interface {
			Run(context.Context) (*synth.Stats, error)
		} {
			return &synth.Distill{Options: o, Input: questions, Samples: 2}
		}, true},
		{"distill-pairs", func(o synth.Options) interface {
			Run(context.Context) (*synth.Stats, error)
		} {
			return &synth.Distill{Options: o, Input: questions, Pairs: true}
		}, false},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			st, err := r.mk(opts(r.name + ".jsonl")).Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Log(st.Report())
			if r.train && st.Kept == 0 {
				t.Fatalf("nothing kept")
			}
			st2, err := r.mk(opts(r.name + "-again.jsonl")).Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			a, _ := os.ReadFile(filepath.Join(dir, r.name+".jsonl"))
			b, _ := os.ReadFile(filepath.Join(dir, r.name+"-again.jsonl"))
			if string(a) != string(b) || st2.Kept != st.Kept {
				t.Errorf("the same seed gave another file:\n%s\n---\n%s", a, b)
			}
			if r.train {
				trainOn(t, filepath.Join(dir, r.name+".jsonl"))
			}
		})
	}
}
