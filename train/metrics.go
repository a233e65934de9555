package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"slices"

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
	// CommSeconds is the step's time in data-parallel communication
	// (absent on one process).
	CommSeconds float64 `json:"comm_seconds,omitempty"`
	// Extra are an objective's own metrics (Progress.Extra), written as
	// further keys of the line after the ones above, in name order.
	Extra map[string]float64 `json:"-"`
}

// metricFields are Metric's own keys, which Extra may not reuse.
var metricFields = []string{"step", "loss", "lr", "grad_norm", "tokens_per_sec", "mfu", "val_loss", "seconds", "comm_seconds"}

// MarshalJSON writes m's fields, then its Extra keys in order.
func (m Metric) MarshalJSON() ([]byte, error) {
	type plain Metric
	b, err := json.Marshal(plain(m))
	if err != nil || len(m.Extra) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(m.Extra))
	for k := range m.Extra {
		if slices.Contains(metricFields, k) {
			return nil, fmt.Errorf("metric %q: the name of one of the line's own fields", k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = b[:len(b)-1]
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		v := m.Extra[k]
		if math.IsNaN(v) || math.IsInf(v, 0) {
			b = fmt.Appendf(b, ",%s:null", kb) // JSON has no NaN
			continue
		}
		vb, _ := json.Marshal(v)
		b = fmt.Appendf(b, ",%s:%s", kb, vb)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads m's fields and keeps every other numeric key in Extra.
func (m *Metric) UnmarshalJSON(b []byte) error {
	type plain Metric
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var all map[string]any
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	for k, v := range all {
		if f, ok := v.(float64); ok && !slices.Contains(metricFields, k) {
			if p.Extra == nil {
				p.Extra = map[string]float64{}
			}
			p.Extra[k] = f
		}
	}
	*m = Metric(p)
	return nil
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
	// start is the validation loss measured before the first step of
	// this invocation, at step startStep (NaN: none).
	start     float64
	startStep int
}

// StartVal records the validation loss measured before step+1, drawn
// on the plot (metrics.jsonl has lines for steps run only).
func (l *MetricsLog) StartVal(step int, v float64) {
	l.start, l.startStep = v, step
}

// OpenMetrics opens path for appending, first dropping the lines past step
// start (a resumed run repeats the steps after its checkpoint) and a last
// line cut short by a kill. The lines kept are part of the plot.
func OpenMetrics(path string, start int) (*MetricsLog, error) {
	l := &MetricsLog{Title: "herd pretrain", start: math.NaN()}
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
		Seconds: p.Elapsed.Seconds(), CommSeconds: p.Comm.Seconds(), Extra: p.Extra}
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

// curves are the plot's training and validation points (the latter from
// the validation before the first step on) and their legend labels, which
// give each curve's last value.
func (l *MetricsLog) curves() (tr, va plotter.XYs, trLabel, vaLabel string) {
	if !math.IsNaN(l.start) {
		va = append(va, plotter.XY{X: float64(l.startStep), Y: l.start})
	}
	for _, m := range l.rows {
		tr = append(tr, plotter.XY{X: float64(m.Step), Y: m.Loss})
		if m.ValLoss != nil {
			va = append(va, plotter.XY{X: float64(m.Step), Y: *m.ValLoss})
		}
	}
	slices.SortStableFunc(va, func(a, b plotter.XY) int { return cmpFloat(a.X, b.X) })
	if len(tr) > 0 {
		trLabel = fmt.Sprintf("train (step %g: %.4f)", tr[len(tr)-1].X, tr[len(tr)-1].Y)
	}
	if len(va) > 0 {
		vaLabel = fmt.Sprintf("val (step %g: %.4f)", va[len(va)-1].X, va[len(va)-1].Y)
	}
	return tr, va, trLabel, vaLabel
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Plot draws the training loss of every step and the validation loss where
// it was measured (before the first step too), as a PNG, atomically;
// nothing before the first step. The y axis is the loss in nats per
// token, and the legend gives each curve's last value.
func (l *MetricsLog) Plot(path string) error {
	p := plot.New()
	p.Title.Text = l.Title
	p.X.Label.Text = "step"
	p.Y.Label.Text = "loss (nats per token)"
	tr, va, trLabel, vaLabel := l.curves()
	if len(tr) == 0 {
		return nil
	}
	line, err := plotter.NewLine(tr)
	if err != nil {
		return err
	}
	p.Add(line, plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Add(trLabel, line)
	if len(va) > 0 {
		vl, pts, err := plotter.NewLinePoints(va)
		if err != nil {
			return err
		}
		vl.Color = color.RGBA{R: 200, A: 255}
		pts.Color = vl.Color
		p.Add(vl, pts)
		p.Legend.Add(vaLabel, vl)
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
