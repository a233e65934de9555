package tasks

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/herd-llm/herd/internal/fileio"
)

// Config records how an evaluation was run, for results.json.
type Config struct {
	Model       string   `json:"model"`
	Adapters    []string `json:"adapters,omitempty"`
	Shots       int      `json:"num_fewshot"` // -1: each task's default
	Limit       int      `json:"limit"`
	Ctx         int      `json:"n_ctx"`
	BatchTokens int      `json:"batch_tokens"`
	OneAtATime  bool     `json:"one_at_a_time"`
	Seed        int      `json:"fewshot_seed"`
	Date        string   `json:"date"`
}

// herdStats are herd's own figures per task.
type herdStats struct {
	Seconds float64  `json:"seconds"`
	Rate    float64  `json:"examples_per_sec"`
	Skipped int      `json:"skipped"`
	Sources []string `json:"skipped_sources,omitempty"`
}

// report is the layout of results.json.
type report struct {
	Results        map[string]map[string]any  `json:"results"`
	Groups         map[string]map[string]any  `json:"groups,omitempty"`
	NShot          map[string]int             `json:"n-shot"`
	NSamples       map[string]map[string]int  `json:"n-samples"`
	HigherIsBetter map[string]map[string]bool `json:"higher_is_better"`
	Herd           map[string]herdStats       `json:"herd"`
	Config         Config                     `json:"config"`
	Samples        map[string][]Sample        `json:"samples,omitempty"`
}

// number is a value for JSON: NaN (a standard error of one document)
// becomes "N/A", as the harness writes it.
func number(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "N/A"
	}
	return v
}

func metricMap(alias string, ms []Metric) map[string]any {
	m := map[string]any{"alias": alias}
	for _, x := range ms {
		m[x.Name+","+x.Filter] = number(x.Value)
		m[x.Name+"_stderr,"+x.Filter] = number(x.Stderr)
	}
	return m
}

// buildReport lays the results out as results.json holds them.
func buildReport(rs []*Result, cfg Config, samples bool) report {
	rep := report{Results: map[string]map[string]any{}, NShot: map[string]int{}, NSamples: map[string]map[string]int{},
		HigherIsBetter: map[string]map[string]bool{}, Herd: map[string]herdStats{}, Config: cfg}
	for _, r := range rs {
		rep.Results[r.Task] = metricMap(r.Task, r.Metrics)
		rep.NShot[r.Task] = r.Shots
		rep.NSamples[r.Task] = map[string]int{"original": r.Docs, "effective": r.Scored}
		hib := map[string]bool{}
		for _, m := range r.Metrics {
			hib[m.Name] = true
		}
		rep.HigherIsBetter[r.Task] = hib
		rep.Herd[r.Task] = herdStats{Seconds: r.Seconds, Rate: r.Rate, Skipped: len(r.Skipped), Sources: r.Skipped}
		for _, s := range r.Subjects {
			rep.Results[s.Task] = metricMap(" - "+strings.TrimPrefix(s.Task, r.Task+"_"), s.Metrics)
			rep.NShot[s.Task] = s.Shots
			rep.NSamples[s.Task] = map[string]int{"original": s.Scored, "effective": s.Scored}
		}
		if len(r.Group) > 0 {
			if rep.Groups == nil {
				rep.Groups = map[string]map[string]any{}
			}
			rep.Groups[r.Task] = metricMap(r.Task, r.Group)
		}
		if samples {
			if rep.Samples == nil {
				rep.Samples = map[string][]Sample{}
			}
			rep.Samples[r.Task] = r.Samples
		}
	}
	return rep
}

// WriteJSON writes results.json atomically (the layout is in the package
// documentation); samples adds every document's details.
func WriteJSON(path string, rs []*Result, cfg Config, samples bool) error {
	b, err := json.MarshalIndent(buildReport(rs, cfg, samples), "", "  ")
	if err != nil {
		return err
	}
	return fileio.WriteAtomic(path, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// WriteTable prints the results as the harness's make_table does: one row
// per metric with its value and standard error; a grouped task's subjects
// follow it, indented, and its averages come last.
func WriteTable(w io.Writer, rs []*Result) error {
	rows := [][]string{{"Tasks", "Filter", "n-shot", "Metric", "", "Value", "", "Stderr"}}
	add := func(name string, shots int, ms []Metric) {
		for i, m := range ms {
			n := name
			if i > 0 {
				n = ""
			}
			rows = append(rows, []string{n, m.Filter, fmt.Sprint(shots), m.Name, "↑", fmt4(m.Value), "±", fmt4(m.Stderr)})
		}
	}
	for _, r := range rs {
		add(r.Task, r.Shots, r.Metrics)
		for _, s := range r.Subjects {
			add(" - "+strings.TrimPrefix(s.Task, r.Task+"_"), s.Shots, s.Metrics)
		}
		if len(r.Group) > 0 {
			add(r.Task+" (group)", r.Shots, r.Group)
		}
	}
	return writeMarkdown(w, rows, []bool{false, false, true, false, false, true, false, true})
}

func fmt4(v float64) string {
	if math.IsNaN(v) {
		return "N/A"
	}
	return fmt.Sprintf("%.4f", v)
}

// writeMarkdown prints a table with columns padded, right-aligned where
// right says.
func writeMarkdown(w io.Writer, rows [][]string, right []bool) error {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(r []string) string {
		var b strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if right[i] {
				c = pad + c
			} else {
				c += pad
			}
			b.WriteString("|" + c)
		}
		return b.String() + "|\n"
	}
	var b strings.Builder
	b.WriteString(line(rows[0]))
	for i := range width {
		d := strings.Repeat("-", max(width[i], 1))
		if right[i] {
			d = d[1:] + ":"
		}
		b.WriteString("|" + d)
	}
	b.WriteString("|\n")
	for _, r := range rows[1:] {
		b.WriteString(line(r))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
