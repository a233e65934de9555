package main

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/herd-llm/herd/train"
)

// Issue 21, item 18: progress written to what is not a terminal is plain
// lines (no carriage returns, no redraws): the first step, each
// validation, the last step, and one every lineEvery in between.
func TestTrainBarPlainLines(t *testing.T) {
	var buf bytes.Buffer
	b := newTrainBar(&buf, true)
	b.every = time.Hour
	b.start(0, 50)
	for s := 1; s <= 50; s++ {
		p := train.Progress{Step: s, Steps: 50, Loss: 1, ValLoss: math.NaN()}
		if s == 20 {
			p.ValLoss = 0.5
		}
		b.step(p)
	}
	b.finish()
	out := buf.String()
	if strings.Contains(out, "\r") {
		t.Errorf("carriage returns in a log:\n%q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[1], "step 1/50:") || !strings.HasPrefix(lines[2], "step 20/50:") ||
		!strings.Contains(lines[2], "val 0.5000") || !strings.HasPrefix(lines[3], "step 50/50:") || !strings.Contains(lines[3], "val 0.5000") {
		t.Errorf("lines:\n%s", out)
	}
}
