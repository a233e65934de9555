package synth

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/herd-llm/herd/internal/journal"
	"github.com/herd-llm/herd/oai"
)

// pipeline is what every pipeline's Run looks like.
type pipeline interface {
	Run(ctx context.Context) (*Stats, error)
}

// checkResume runs a pipeline uninterrupted, then stopped in several ways
// and resumed, and wants the same file and the same counts every time:
// the endpoint closing every connection after n requests (for each n up
// to the whole run), the run's context cancelled after its first unit,
// and a half-written last line in the output and in the journal.
func checkResume(t *testing.T, script func(*scripted), mk func(out string, c *oai.Client, o func(*Options)) pipeline) {
	t.Helper()
	dir := t.TempDir()
	s := newScripted(t)
	script(s)
	c, _ := s.serve(2)
	ref := filepath.Join(dir, "ref.jsonl")
	want, err := mk(ref, c, nil).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantFile := readFile(t, ref)
	total := s.requests.Load()
	if want.Kept == 0 {
		t.Fatal("the reference run kept nothing")
	}
	check := func(name, out string, got *Stats) {
		t.Helper()
		if f := readFile(t, out); f != wantFile {
			t.Errorf("%s: resumed file differs:\n%s\nwant:\n%s", name, f, wantFile)
		}
		if got.Kept != want.Kept || !reflect.DeepEqual(got.Drops, want.Drops) || got.Usage != want.Usage || got.Requests != want.Requests {
			t.Errorf("%s: resumed counts %d %v %+v %d, want %d %v %+v %d", name, got.Kept, got.Drops, got.Usage, got.Requests, want.Kept, want.Drops, want.Usage, want.Requests)
		}
	}
	for cutAt := int64(1); cutAt < total; cutAt++ {
		s2 := newScripted(t)
		script(s2)
		s2.dropAfter.Store(cutAt)
		c2, _ := s2.serve(2)
		out := filepath.Join(dir, "cut.jsonl")
		os.Remove(out)
		os.Remove(journal.Path(out))
		if _, err := mk(out, c2, nil).Run(context.Background()); err == nil {
			t.Fatalf("cut after %d requests: no error", cutAt)
		}
		partial := len(readItems[map[string]any](t, out))
		s2.dropAfter.Store(0)
		got, err := mk(out, c2, func(o *Options) { o.Resume = true }).Run(context.Background())
		if err != nil {
			t.Fatalf("cut after %d: resume: %v", cutAt, err)
		}
		check(fmt.Sprintf("connections closed after %d requests (%d items written)", cutAt, partial), out, got)
		t.Logf("connections closed after %d of %d requests: %d of %d items written before the resume", cutAt, total, partial, want.Kept)
	}
	// a cancelled context, then torn last lines
	out := filepath.Join(dir, "cancel.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	_, err = mk(out, c, func(o *Options) { o.OnProgress = func(Stats) { cancel() } }).Run(ctx)
	if err == nil {
		t.Fatal("cancelled run: no error")
	}
	appendTo(t, out, `{"id": "torn", "instruct`)
	appendTo(t, journal.Path(out), `{"unit": "w9`)
	got, err := mk(out, c, func(o *Options) { o.Resume = true }).Run(context.Background())
	if err != nil {
		t.Fatalf("resume after cancel: %v", err)
	}
	check("cancelled", out, got)
}

func appendTo(t *testing.T, path, s string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(s)
	f.Close()
}

func TestSelfInstructResume(t *testing.T) {
	checkResume(t, func(s *scripted) { scriptSelfInstruct(s, 42) }, func(out string, c *oai.Client, o func(*Options)) pipeline {
		r := selfInstructRun(out, 42)
		r.Client = c
		if o != nil {
			o(&r.Options)
		}
		return r
	})
}

// TestSelfInstructResumeTarget: the target is reached in the first unit of
// a wave and the run is cut before the wave's second unit is written; the
// resume still does that unit (its tasks counted over_target), so file and
// counts equal the uninterrupted run's.
func TestSelfInstructResumeTarget(t *testing.T) {
	dir := t.TempDir()
	run := func(out string, cut int64, resume bool) (*Stats, error) {
		s := newScripted(t)
		scriptSelfInstruct(s, 42)
		s.dropAfter.Store(cut)
		c, _ := s.serve(1) // one request at a time: w0.0's two, then w0.1's
		r := selfInstructRun(out, 42)
		r.Client, r.Target, r.Resume = c, 2, resume
		return r.Run(context.Background())
	}
	ref := filepath.Join(dir, "ref.jsonl")
	want, err := run(ref, 0, false)
	if err != nil || want.Kept != 2 || want.Drops[DropOverTarget] == 0 {
		t.Fatalf("reference: %v %+v", err, want)
	}
	out := filepath.Join(dir, "cut.jsonl")
	if _, err := run(out, 2, false); err == nil {
		t.Fatal("the cut run did not fail")
	}
	if n := len(readItems[Task](t, out)); n != 2 {
		t.Fatalf("%d items before the resume, want the target's 2", n)
	}
	got, err := run(out, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if readFile(t, out) != readFile(t, ref) || !reflect.DeepEqual(got.Drops, want.Drops) || got.Requests != want.Requests {
		t.Errorf("resumed %v %d requests, want %v %d", got.Drops, got.Requests, want.Drops, want.Requests)
	}
}
