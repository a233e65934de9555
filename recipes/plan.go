package recipes

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Invocation is one herd command line of a planned recipe.
type Invocation struct {
	ID   string
	Dir  string   // the step's directory, {out}/{id}, made before it runs
	Args []string // after "herd"
}

// String is the command line as a user would type it.
func (in Invocation) String() string {
	var b strings.Builder
	b.WriteString("herd")
	for _, a := range in.Args {
		b.WriteByte(' ')
		if strings.ContainsAny(a, " \t\"'") || a == "" {
			fmt.Fprintf(&b, "%q", a)
		} else {
			b.WriteString(a)
		}
	}
	return b.String()
}

// Plan turns r into command lines writing under out. With short, each
// step's Short flags override its Flags. Overrides are STEP.FLAG=VALUE
// (one step) or FLAG=VALUE (every step that sets FLAG); an override that
// matches no step is an error.
func Plan(r *Recipe, out string, short bool, overrides []string) ([]Invocation, error) {
	flags := make([]map[string]any, len(r.Steps))
	for i, s := range r.Steps {
		flags[i] = map[string]any{}
		for k, v := range s.Flags {
			flags[i][k] = v
		}
		if short {
			for k, v := range s.Short {
				flags[i][k] = v
			}
		}
	}
	for _, o := range overrides {
		if err := override(r, flags, o); err != nil {
			return nil, err
		}
	}
	subst := strings.NewReplacer("{out}", out, "{data}", filepath.Join(out, "data"))
	var plan []Invocation
	for i, s := range r.Steps {
		in := Invocation{ID: s.ID, Dir: filepath.Join(out, s.ID)}
		in.Args = append(in.Args, s.Run...)
		for _, a := range s.Args {
			in.Args = append(in.Args, subst.Replace(a))
		}
		keys := make([]string, 0, len(flags[i]))
		for k := range flags[i] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, v := range flagValues(flags[i][k]) {
				in.Args = append(in.Args, "--"+k+"="+subst.Replace(v))
			}
		}
		if _, ok := flags[i]["output"]; !ok && !s.NoOutput {
			in.Args = append(in.Args, "-o", in.Dir)
		}
		plan = append(plan, in)
	}
	return plan, nil
}

// override applies one STEP.FLAG=VALUE or FLAG=VALUE.
func override(r *Recipe, flags []map[string]any, o string) error {
	key, val, ok := strings.Cut(o, "=")
	if !ok || key == "" {
		return fmt.Errorf("recipe %s: override %q: want FLAG=VALUE or STEP.FLAG=VALUE", r.Name, o)
	}
	step, flag, scoped := strings.Cut(key, ".")
	hit := false
	for i, s := range r.Steps {
		if scoped && s.ID == step {
			flags[i][flag], hit = val, true
		} else if _, set := flags[i][key]; !scoped && set {
			flags[i][key], hit = val, true
		}
	}
	if !hit {
		return fmt.Errorf("recipe %s: override %q matches no step (steps: %s; unscoped overrides change flags a step sets)", r.Name, o, stepIDs(r))
	}
	return nil
}

func stepIDs(r *Recipe) string {
	var ids []string
	for _, s := range r.Steps {
		ids = append(ids, s.ID)
	}
	return strings.Join(ids, ", ")
}

// Check tests r's claims against what its run wrote under out; the error
// lists every claim that failed.
func Check(r *Recipe, out string) ([]string, error) {
	var held, failed []string
	for _, c := range r.Claims {
		msg, err := c.check(out)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", c.Step, err))
		} else {
			held = append(held, fmt.Sprintf("%s: %s", c.Step, msg))
		}
	}
	if len(failed) > 0 {
		return held, fmt.Errorf("recipe %s: claims not met:\n  %s", r.Name, strings.Join(failed, "\n  "))
	}
	return held, nil
}

func (c Claim) check(out string) (string, error) {
	if c.File != "" {
		p := filepath.Join(out, c.File)
		fi, err := os.Stat(p)
		if err != nil || fi.Size() == 0 {
			return "", fmt.Errorf("%s missing or empty", c.File)
		}
		if c.SmallerThan != "" {
			ref, err := os.Stat(filepath.Join(out, c.SmallerThan))
			if err != nil {
				return "", err
			}
			if fi.Size() >= ref.Size() {
				return "", fmt.Errorf("%s (%d bytes) is not smaller than %s (%d bytes)", c.File, fi.Size(), c.SmallerThan, ref.Size())
			}
		}
		if c.Metric == "" {
			return c.File + " written", nil
		}
	}
	vals, err := metric(filepath.Join(out, c.Step, "metrics.jsonl"), c.Metric)
	if err != nil {
		return "", err
	}
	first, last := vals[0], vals[len(vals)-1]
	switch {
	case c.Falls && !(last < first):
		return "", fmt.Errorf("%s did not fall: %.4f → %.4f", c.Metric, first, last)
	case c.Rises && !(last > first):
		return "", fmt.Errorf("%s did not rise: %.4f → %.4f", c.Metric, first, last)
	case c.Above != nil && !(last >= *c.Above):
		return "", fmt.Errorf("%s %.4f, want at least %g", c.Metric, last, *c.Above)
	}
	return fmt.Sprintf("%s %.4f → %.4f", c.Metric, first, last), nil
}

// metric is the values of key in a metrics.jsonl, in step order (lines
// without it skipped).
func metric(path, key string) ([]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var vals []float64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		var row map[string]any
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if v, ok := row[key].(float64); ok && !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(vals) == 0 {
		return nil, fmt.Errorf("%s: no %s", path, key)
	}
	return vals, nil
}

// Show is the recipe as herd recipe show prints it: its file, then the
// default and short command lines.
func Show(r *Recipe) string {
	var b strings.Builder
	b.WriteString(r.Text)
	for _, short := range []bool{false, true} {
		plan, err := Plan(r, "OUT", short, nil)
		if err != nil {
			fmt.Fprintf(&b, "# %v\n", err)
			continue
		}
		fmt.Fprintf(&b, "\n# the commands (%s):\n", map[bool]string{false: "default", true: "--short"}[short])
		for _, in := range plan {
			fmt.Fprintf(&b, "#   %s\n", in)
		}
	}
	return b.String()
}
