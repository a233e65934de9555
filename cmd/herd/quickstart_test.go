package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestQuickstartFlags checks the command's wiring to road.Run: the step
// names --from accepts and a bad --minutes (the road itself is tested in
// package road).
func TestQuickstartFlags(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"quickstart", "-o", dir, "--from", "nope"}, "steps: data, pretrain, sft, rm, dpo, rl, quantize, gptq, eval, report"},
		{[]string{"quickstart", "-o", dir, "--from", "eval"}, "--from data"},
		{[]string{"quickstart", "-o", dir, "--minutes", "-1"}, "minutes"},
		{[]string{"quickstart", "-o", dir, "--to", "sft", "--serve"}, "whole road"},
	} {
		root := newRoot()
		root.SetArgs(c.args)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

// TestQuickstartKilledThenServed runs the built binary on the shortest
// road, SIGKILLs it in the middle of the sft step, checks that the
// finished steps' outputs are intact and the killed one is not marked
// done, resumes with --from sft --serve, and asks the served result for
// the web chat page and a chat completion before stopping it.
func TestQuickstartKilledThenServed(t *testing.T) {
	if testing.Short() {
		t.Skip("the whole road, twice in part (about a minute of CPU)")
	}
	bin := herdBinary(t)
	dir := t.TempDir()
	args := []string{"quickstart", "-o", dir, "--minutes", "0.01", "-t", "2"}

	// 1. killed while in sft
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			// sft has started training once its LoRA summary is printed
			if strings.HasPrefix(sc.Text(), "sft lora:") {
				in <- sc.Text()
			}
		}
		close(in)
	}()
	select {
	case _, ok := <-in:
		if !ok {
			cmd.Wait()
			t.Fatal("herd quickstart ended before the sft step trained")
		}
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("herd quickstart did not reach the sft step in 5 minutes")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("herd quickstart was not killed: %v", err)
	}
	for _, f := range []string{"data/step.json", "pretrain/step.json", "pretrain/model.gguf", "data/base.gguf"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("after the kill, %s: missing or empty (%v)", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sft", "step.json")); err == nil {
		t.Fatal("the killed sft step is marked done")
	}
	pre, err := os.Stat(filepath.Join(dir, "pretrain", "model.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	// a run from a later step says which step is unfinished
	out, err := exec.Command(bin, append(args, "--from", "rm")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--from sft") {
		t.Errorf("--from rm after the kill: %v\n%s\nwant it to name --from sft", err, out)
	}

	// 2. resumed from sft, then served
	cmd = exec.Command(bin, append(args, "--from", "sft", "--serve", "--addr", "127.0.0.1:0")...)
	if stderr, err = cmd.StderrPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	addr := make(chan string, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if _, rest, ok := strings.Cut(sc.Text(), "listening on "); ok {
				addr <- strings.TrimSuffix(strings.Fields(rest)[0], ";")
			}
		}
		close(addr)
	}()
	var base string
	select {
	case a, ok := <-addr:
		if !ok {
			cmd.Wait()
			t.Fatalf("herd quickstart --from sft --serve ended without serving:\n%s", log.String())
		}
		base = a
	case <-time.After(8 * time.Minute):
		t.Fatal("herd quickstart --from sft --serve did not serve in 8 minutes")
	}
	after, err := os.Stat(filepath.Join(dir, "pretrain", "model.gguf"))
	if err != nil || !after.ModTime().Equal(pre.ModTime()) {
		t.Errorf("the resumed run rewrote pretrain/model.gguf (%v)", err)
	}
	for _, f := range []string{"sft/step.json", "report.html", "quantize/model-Q4_K_M.gguf"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after the resumed run: %v", err)
		}
	}
	var page []byte
	for i := 0; ; i++ {
		r, err := http.Get(base + "/")
		if err == nil {
			page, _ = io.ReadAll(r.Body)
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		if i > 100 {
			t.Fatalf("GET /: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(string(page), "<title>herd chat</title>") || !strings.Contains(string(page), "<textarea") {
		t.Errorf("GET / is not the web chat page:\n%.400s", page)
	}
	r, err := http.Get(base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(b), `"quickstart"`) {
		t.Errorf("/v1/models does not list the road's result: %s", b)
	}
	body := `{"model":"quickstart","messages":[{"role":"user","content":"Continue the story: Once upon a time, there was a little dog named Max."}],"max_tokens":24,"temperature":0}`
	r, err = http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.Contains(string(b), `"chat.completion"`) || !strings.Contains(string(b), `"assistant"`) {
		t.Errorf("/v1/chat/completions: %d %s", r.StatusCode, b)
	}
}
