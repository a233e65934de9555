package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/serve"
)

// teacher is a deterministic scripted endpoint: the answer is a function
// of the request's last message and seed; each answer takes a while, so a
// run can be killed in the middle.
func teacher(t *testing.T, delay time.Duration) *httptest.Server {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/models" {
			fmt.Fprint(w, `{"object":"list","data":[{"id":"teacher"}]}`)
			return
		}
		var req struct {
			Messages []struct{ Content string } `json:"messages"`
			Seed     int64                      `json:"seed"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(400)
			return
		}
		time.Sleep(delay)
		content := fmt.Sprintf("About %q: answer %d.", req.Messages[len(req.Messages)-1].Content, req.Seed%1000)
		b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"message": map[string]any{"role": "assistant", "content": content}, "finish_reason": "stop"}},
			"usage": map[string]any{"prompt_tokens": 3, "completion_tokens": 5}})
		w.Write(b)
	}))
	t.Cleanup(hs.Close)
	return hs
}

func countLines(path string) int {
	b, _ := os.ReadFile(path)
	return bytes.Count(b, []byte{'\n'})
}

// TestSynthKilled kills a herd synth process with SIGKILL in the middle of
// a run, resumes it, and wants the file of an uninterrupted run.
func TestSynthKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the herd binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "herd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var prompts strings.Builder
	for i := range 40 {
		fmt.Fprintf(&prompts, "Question number %d?\n", i)
	}
	in := filepath.Join(dir, "prompts.txt")
	os.WriteFile(in, []byte(prompts.String()), 0o644)
	hs := teacher(t, 25*time.Millisecond)
	args := func(out string, extra ...string) []string {
		return append([]string{"synth", "distill", "--endpoint", hs.URL, "--model", "teacher", "--input", in, "--samples", "2", "--seed", "3", "--concurrency", "2", "-q", "-o", out}, extra...)
	}
	ref := filepath.Join(dir, "ref.jsonl")
	if _, stderr, err := herd(t, "", args(ref)...); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(stderr, "distill: 80 kept, 0 dropped") || !strings.Contains(stderr, "80 requests, 240 prompt + 400 completion tokens") {
		t.Errorf("report: %q", stderr)
	}
	for _, killAt := range []int{3, 30, 61} {
		out := filepath.Join(dir, fmt.Sprintf("killed%d.jsonl", killAt))
		cmd := exec.Command(bin, args(out)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for countLines(out) < killAt && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		cmd.Process.Kill()
		cmd.Wait()
		n := countLines(out)
		if n >= 80 {
			t.Fatalf("the run finished before it was killed")
		}
		_, stderr, err := herd(t, "", args(out, "--resume")...)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := readText(t, out), readText(t, ref); got != want {
			t.Errorf("killed after %d lines, resumed: the file differs from the uninterrupted run's", n)
		}
		if !strings.Contains(stderr, "distill: 80 kept, 0 dropped") || !strings.Contains(stderr, "done before this run") {
			t.Errorf("resumed report: %q", stderr)
		}
		t.Logf("killed with %d of 80 items written; resumed to the same file", n)
	}
}

func readText(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSynthErrors(t *testing.T) {
	hs := teacher(t, 0)
	dir := t.TempDir()
	in := filepath.Join(dir, "p.jsonl")
	os.WriteFile(in, []byte(`{"instruction": "hi"}`+"\n"+`{"instruction": 5}`+"\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"synth", "distill", "--endpoint", hs.URL, "--model", "gpt-4", "--input", in, "-o", filepath.Join(dir, "o.jsonl")}, `"gpt-4" is not served (served: teacher)`},
		{[]string{"synth", "distill", "--endpoint", hs.URL, "--model", "teacher", "--input", in, "-o", filepath.Join(dir, "o.jsonl")}, "p.jsonl:2"},
		{[]string{"synth", "self-instruct", "--endpoint", hs.URL, "--model", "teacher", "--seeds", in, "-o", filepath.Join(dir, "o.jsonl")}, "field instances"},
		{[]string{"synth", "evol-instruct", "--endpoint", "localhost:1", "--model", "teacher", "--input", in, "-o", filepath.Join(dir, "o.jsonl")}, "http:// or https://"},
	} {
		_, _, err := herd(t, "", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args[1:2], err, c.want)
		}
	}
}

// TestSynthServeSFT: herd serve (stories260K) as the teacher, herd synth
// self-chat and distill against it, herd sft on what they wrote.
func TestSynthServeSFT(t *testing.T) {
	if testing.Short() {
		t.Skip("trains")
	}
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := chat.Lookup("raw")
	sched := generate.NewScheduler(m, tok, generate.SchedulerConfig{Parallel: 2, Context: 1024})
	defer sched.Close()
	srv, err := serve.New(serve.Config{}, &serve.Model{Name: "stories", Model: m, Tok: tok, Template: raw, Sched: sched})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	dir := t.TempDir()
	in := filepath.Join(dir, "q.txt")
	os.WriteFile(in, []byte("Lily saw a bird.\nTom lost his hat.\nThe sun was hot.\n"), 0o644)
	header := filepath.Join(dir, "header.txt")
	os.WriteFile(header, []byte("Tasks:\n"), 0o644)
	for _, c := range []struct {
		p    string
		args []string
		kept string
	}{
		{"self-chat", []string{"--input", in}, "3 kept"},
		{"distill", []string{"--input", in}, "3 kept"},
		{"evol-instruct", []string{"--input", in, "--rounds", "1", "--lenient-judge"}, " kept"},
		{"self-instruct", []string{"--seeds", "../../synth/testdata/seed_tasks.jsonl", "--target", "2", "--shown", "2", "--machine", "1", "--wave", "2", "--max-waves", "6", "--header", header}, "2 kept"},
	} {
		p := c.p
		out := filepath.Join(dir, p+".jsonl")
		args := append([]string{"synth", p, "--endpoint", hs.URL, "--model", "stories", "--stop", ".", "--max-tokens", "48", "-q", "-o", out}, c.args...)
		_, stderr, err := herd(t, "", args...)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if !strings.Contains(stderr, p+": ") || !strings.Contains(stderr, c.kept) || strings.Contains(stderr, ": 0 kept") {
			t.Errorf("%s report: %q", p, stderr)
		}
		t.Logf("%s", stderr)
		_, se, err := herd(t, "", "sft", "--method", "lora", "--data", out, "--steps", "2", "--batch", "2", "--quiet", "-o", filepath.Join(dir, p+"-lora"))
		if err != nil {
			t.Fatalf("sft on %s: %v\n%s", p, err, se)
		}
		if _, err := os.Stat(filepath.Join(dir, p+"-lora", "adapter_model.safetensors")); err != nil {
			t.Errorf("sft on %s wrote no adapter: %v", p, err)
		}
	}
}
