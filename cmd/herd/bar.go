package main

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/herd-llm/herd/train"
	"github.com/schollz/progressbar/v3"
)

// trainBar is the progress bar herd pretrain and herd sft draw: steps done,
// loss, learning rate, tokens/s, MFU and the validation loss.
type trainBar struct {
	w       io.Writer
	keepVal bool // show the last validation loss on every step, not only on the steps that measured it
	pb      *progressbar.ProgressBar
	lastVal float64
}

func newTrainBar(w io.Writer, keepVal bool) *trainBar {
	return &trainBar{w: w, keepVal: keepVal, lastVal: math.NaN()}
}

// start draws the bar for a run of steps, first of them already done.
func (b *trainBar) start(first, steps int) {
	b.pb = progressbar.NewOptions(steps, progressbar.OptionSetWriter(b.w), progressbar.OptionSetWidth(25),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true), progressbar.OptionFullWidth())
	_ = b.pb.Set(first)
}

// step moves the bar to a finished step.
func (b *trainBar) step(p train.Progress) {
	desc := fmt.Sprintf("loss %.4f lr %.2e %.0f tok/s MFU %.1f%%", p.Loss, p.LR, p.TokensPerSec, 100*p.MFU)
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
