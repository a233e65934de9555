package train

import (
	"fmt"
	"io"
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
		for _, w := range l.Matrices() {
			ls = append(ls, *w)
		}
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

// minMemoryLimit is the smallest limit MemoryLimit puts on the Go runtime:
// below it the bound is dominated by the program itself and is not held.
const minMemoryLimit = 64 << 20

// MemoryLimit is the limit to hold the Go runtime to (Config.MemoryLimit)
// so that the process stays within bound bytes: the bound less the
// resident memory the runtime does not manage (the program's code and the
// mapped weights of m, made resident first; weights bytes where /proc
// cannot tell). It is 0, no limit, when that leaves less than 64 MiB (a
// tiny model, whose bound is about what the program itself takes: a
// limit that small would only make the collector run without end). It
// logs what it chose.
func MemoryLimit(bound int64, m *llama.Model, weights int64, log io.Writer) int64 {
	touchWeights(m)
	outside, ok := residentOutsideGo()
	if !ok {
		outside = weights
	}
	limit := bound - outside
	if limit < minMemoryLimit {
		fmt.Fprintf(log, "memory: no limit on the Go runtime (the bound leaves %.1f MiB beside %.1f MiB resident outside it)\n", float64(limit)/(1<<20), float64(outside)/(1<<20))
		return 0
	}
	fmt.Fprintf(log, "memory: the Go runtime held to %.1f MiB (%.1f MiB resident outside it)\n", float64(limit)/(1<<20), float64(outside)/(1<<20))
	return limit
}
