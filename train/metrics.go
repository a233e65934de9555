package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"image/color"
	"io"
	"math"
	"os"

	"github.com/herd-llm/herd/internal/fileio"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Metric is one line of metrics.jsonl.
type Metric struct {
	Step         int      `json:"step"`
	Loss         float64  `json:"loss"`
	LR           float64  `json:"lr"`
	GradNorm     float64  `json:"grad_norm"`
	TokensPerSec float64  `json:"tokens_per_sec"`
	MFU          float64  `json:"mfu"`
	ValLoss      *float64 `json:"val_loss,omitempty"`
	Seconds      float64  `json:"seconds"` // since this invocation started
}

// MetricsLog appends to a metrics.jsonl file, one Metric per step, and
// remembers the curve for the loss plot. Pretraining and fine-tuning
// (package sft) both keep one in their output directory.
type MetricsLog struct {
	// Title heads the loss plot ("herd pretrain" unless set).
	Title string
	f     *os.File
	w     *bufio.Writer
	rows  []Metric
}

// OpenMetrics opens path for appending, first dropping the lines past step
// start (a resumed run repeats the steps after its checkpoint) and a last
// line cut short by a kill. The lines kept are part of the plot.
func OpenMetrics(path string, start int) (*MetricsLog, error) {
	l := &MetricsLog{Title: "herd pretrain"}
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var kept bytes.Buffer
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m Metric
		if err := json.Unmarshal(line, &m); err != nil {
			break // a line cut short by a kill: drop it and what follows
		}
		if m.Step > start {
			break
		}
		l.rows = append(l.rows, m)
		kept.Write(line)
		kept.WriteByte('\n')
	}
	if err := fileio.WriteAtomic(path, func(w io.Writer) error {
		_, err := w.Write(kept.Bytes())
		return err
	}); err != nil {
		return nil, err
	}
	if l.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, err
	}
	l.w = bufio.NewWriter(l.f)
	return l, nil
}

// Add appends one step's metrics (p.ValLoss NaN: none) and flushes the line.
func (l *MetricsLog) Add(p Progress) error {
	m := Metric{Step: p.Step, Loss: p.Loss, LR: p.LR, GradNorm: p.GradNorm, TokensPerSec: p.TokensPerSec, MFU: p.MFU,
		Seconds: p.Elapsed.Seconds()}
	if !math.IsNaN(p.ValLoss) {
		v := p.ValLoss
		m.ValLoss = &v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	l.rows = append(l.rows, m)
	if _, err := l.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return l.w.Flush()
}

// Close closes the file.
func (l *MetricsLog) Close() error {
	l.w.Flush()
	return l.f.Close()
}

// Plot draws the training loss of every step and the validation loss where
// it was measured, as a PNG, atomically; nothing before the first step.
func (l *MetricsLog) Plot(path string) error {
	p := plot.New()
	p.Title.Text = l.Title
	p.X.Label.Text = "step"
	p.Y.Label.Text = "loss (nats per token)"
	var tr, va plotter.XYs
	for _, m := range l.rows {
		tr = append(tr, plotter.XY{X: float64(m.Step), Y: m.Loss})
		if m.ValLoss != nil {
			va = append(va, plotter.XY{X: float64(m.Step), Y: *m.ValLoss})
		}
	}
	if len(tr) == 0 {
		return nil
	}
	line, err := plotter.NewLine(tr)
	if err != nil {
		return err
	}
	p.Add(line, plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Add("train", line)
	if len(va) > 0 {
		vl, pts, err := plotter.NewLinePoints(va)
		if err != nil {
			return err
		}
		vl.Color = color.RGBA{R: 200, A: 255}
		pts.Color = vl.Color
		p.Add(vl)
		p.Legend.Add("val", vl)
	}
	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return err
	}
	return fileio.WriteAtomic(path, func(w io.Writer) error {
		_, err := wt.WriteTo(w)
		return err
	})
}
