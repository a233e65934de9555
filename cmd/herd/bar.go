package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/herd-llm/herd/train"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// trainBar is the progress herd pretrain and herd sft show: steps done,
// loss, learning rate, tokens/s, MFU and the validation loss. On a
// terminal it is a bar redrawn in place; otherwise (a log file, a pipe) it
// is a plain line at the first step, every lineEvery, at each validation
// and at the last step, so that a redirected log stays readable.
type trainBar struct {
	w       io.Writer
	keepVal bool // show the last validation loss on every step, not only on the steps that measured it
	tty     bool
	pb      *progressbar.ProgressBar
	lastVal float64
	last    time.Time // when the last plain line was written
	every   time.Duration
	// extra, when set, adds a command's own figures to each step's line
	// (herd rl: reward, KL, rollout and update throughput).
	extra func(train.Progress) string
}

// lineEvery is the time between plain progress lines.
const lineEvery = 30 * time.Second

func newTrainBar(w io.Writer, keepVal bool) *trainBar {
	f, ok := w.(*os.File)
	return &trainBar{w: w, keepVal: keepVal, lastVal: math.NaN(), tty: ok && term.IsTerminal(int(f.Fd())), every: lineEvery}
}

// start draws the bar for a run of steps, first of them already done.
func (b *trainBar) start(first, steps int) {
	if !b.tty {
		fmt.Fprintf(b.w, "training steps %d to %d\n", first+1, steps)
		return
	}
	b.pb = progressbar.NewOptions(steps, progressbar.OptionSetWriter(b.w), progressbar.OptionSetWidth(25),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true), progressbar.OptionFullWidth())
	_ = b.pb.Set(first)
}

// step moves the bar to a finished step, or writes its line.
func (b *trainBar) step(p train.Progress) {
	desc := fmt.Sprintf("loss %.4f lr %.2e %.0f tok/s MFU %.1f%%", p.Loss, p.LR, p.TokensPerSec, 100*p.MFU)
	if b.extra != nil {
		desc = b.extra(p)
	}
	val := p.ValLoss
	if b.keepVal {
		if !math.IsNaN(val) {
			b.lastVal = val
		}
		val = b.lastVal
	}
	if !math.IsNaN(val) {
		desc += fmt.Sprintf(" val %.4f", val)
	}
	if !b.tty {
		if b.last.IsZero() || time.Since(b.last) >= b.every || !math.IsNaN(p.ValLoss) || p.Step == p.Steps {
			fmt.Fprintf(b.w, "step %d/%d: %s (%s)\n", p.Step, p.Steps, desc, p.Elapsed.Round(time.Second))
			b.last = time.Now()
		}
		return
	}
	b.pb.Describe(desc)
	_ = b.pb.Set(p.Step)
}

// finish closes the bar, if one was drawn.
func (b *trainBar) finish() {
	if b.pb != nil {
		_ = b.pb.Finish()
		fmt.Fprintln(b.w)
	}
}
