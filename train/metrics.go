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
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
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
	// Panels are drawn beside the loss (see Panel).
	Panels []Panel
	f      *os.File
	w      *bufio.Writer
	rows   []Metric
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

// Panel is one plot of loss.png beside the loss: named Extra metrics of
// metrics.jsonl over the steps. Lines are drawn at every step that has
// them; Points only where the value changes (a measurement the objective
// carries from one evaluation to the next); Refs are horizontal dashed
// lines (a target), labelled with RefLabel.
type Panel struct {
	Label         string // the y axis
	Lines, Points []string
	Refs          []float64
	RefLabel      string
}

// series is metric name's points over the logged steps (only where it
// changes with changes).
func (l *MetricsLog) series(name string, changes bool) plotter.XYs {
	var xy plotter.XYs
	for _, m := range l.rows {
		v, ok := m.Extra[name]
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		if changes && len(xy) > 0 && xy[len(xy)-1].Y == v {
			continue
		}
		xy = append(xy, plotter.XY{X: float64(m.Step), Y: v})
	}
	return xy
}

// panelColors tell a panel's curves apart.
var panelColors = []color.Color{color.RGBA{B: 200, A: 255}, color.RGBA{R: 200, A: 255}, color.RGBA{G: 140, A: 255}, color.RGBA{R: 140, B: 140, A: 255}}

// panel is pn drawn from the log (nil when none of its metrics was logged).
func (l *MetricsLog) panel(pn Panel) (*plot.Plot, error) {
	p := plot.New()
	p.X.Label.Text = "step"
	p.Y.Label.Text = pn.Label
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	n, last := 0, 0.0
	for i, name := range append(append([]string(nil), pn.Lines...), pn.Points...) {
		points := i >= len(pn.Lines)
		xy := l.series(name, points)
		if len(xy) == 0 {
			continue
		}
		c := panelColors[n%len(panelColors)]
		n++
		last = xy[len(xy)-1].X
		label := fmt.Sprintf("%s (step %g: %.4g)", name, xy[len(xy)-1].X, xy[len(xy)-1].Y)
		if points {
			ln, pts, err := plotter.NewLinePoints(xy)
			if err != nil {
				return nil, err
			}
			ln.Color, pts.Color = c, c
			ln.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
			p.Add(ln, pts)
			p.Legend.Add(label, ln, pts)
			continue
		}
		ln, err := plotter.NewLine(xy)
		if err != nil {
			return nil, err
		}
		ln.Color = c
		p.Add(ln)
		p.Legend.Add(label, ln)
	}
	if n == 0 {
		return nil, nil
	}
	for _, r := range pn.Refs {
		first := 0.0
		if len(l.rows) > 0 {
			first = float64(l.rows[0].Step)
		}
		ln, err := plotter.NewLine(plotter.XYs{{X: first, Y: r}, {X: last, Y: r}})
		if err != nil {
			return nil, err
		}
		ln.Color = color.Gray{Y: 90}
		ln.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		p.Add(ln)
		p.Legend.Add(fmt.Sprintf("%s %g", pn.RefLabel, r), ln)
	}
	return p, nil
}

// Plot draws the training loss of every step and the validation loss where
// it was measured (before the first step too), as a PNG, atomically;
// nothing before the first step. The y axis is the loss in nats per
// token, and the legend gives each curve's last value. With Panels the
// loss is the first plot of a grid two wide, each panel (that has a
// logged metric) one more.
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
	plots := []*plot.Plot{p}
	for _, pn := range l.Panels {
		q, err := l.panel(pn)
		if err != nil {
			return err
		}
		if q != nil {
			plots = append(plots, q)
		}
	}
	var wt io.WriterTo
	if len(plots) == 1 {
		if wt, err = p.WriterTo(8*vg.Inch, 5*vg.Inch, "png"); err != nil {
			return err
		}
	} else {
		wt = grid(plots)
	}
	return fileio.WriteAtomic(path, func(w io.Writer) error {
		_, err := wt.WriteTo(w)
		return err
	})
}

// grid draws plots two to a row, each 6.5 × 4 inches, as a PNG.
func grid(plots []*plot.Plot) io.WriterTo {
	cols := 2
	rows := (len(plots) + cols - 1) / cols
	img := vgimg.New(vg.Length(cols)*6.5*vg.Inch, vg.Length(rows)*4*vg.Inch)
	dc := draw.New(img)
	t := draw.Tiles{Rows: rows, Cols: cols, PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(8), PadX: vg.Points(16), PadY: vg.Points(16)}
	table := make([][]*plot.Plot, rows)
	for r := range table {
		table[r] = make([]*plot.Plot, cols)
		for c := range cols {
			if i := r*cols + c; i < len(plots) {
				table[r][c] = plots[i]
			}
		}
	}
	canvases := plot.Align(table, t, dc)
	for r := range table {
		for c, q := range table[r] {
			if q != nil {
				q.Draw(canvases[r][c])
			}
		}
	}
	return vgimg.PngCanvas{Canvas: img}
}
