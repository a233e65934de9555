package sft

import (
	"os"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/nn"
)

// touched keeps touchWeights' reads from being optimized away.
var touched byte

// touchWeights reads a byte of every page of m's weight matrices, so that
// the pages of a mapped file are resident before the memory outside the Go
// runtime is measured (training reads them all anyway).
func touchWeights(m *llama.Model) {
	ls := []*nn.Linear{m.Embed, m.Output}
	for i := range m.Layers {
		l := &m.Layers[i]
		ls = append(ls, l.Wq, l.Wk, l.Wv, l.Wo, l.Gate, l.Up, l.Down)
	}
	page := os.Getpagesize()
	for _, l := range ls {
		for i := 0; i < len(l.Data); i += page {
			touched += l.Data[i]
		}
	}
}

// residentOutsideGo is the process's resident memory that the Go runtime
// does not manage: its file-backed pages (the mapped model file, the
// program's code), RssFile of /proc/self/status. ok is false where /proc
// cannot tell.
func residentOutsideGo() (n int64, ok bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "RssFile:"); found {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// minMemoryLimit is the smallest limit Tune puts on the Go runtime: below
// it the bound is dominated by the program itself and is not held.
const minMemoryLimit = 64 << 20
