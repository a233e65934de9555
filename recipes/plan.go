package recipes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/herd-llm/herd/format/gguf"
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

// Env is what a run fills in besides {out} and {data}: the teacher's
// endpoint URL and served name ({endpoint}, {teacher}); empty ones are
// left as written.
type Env struct {
	Endpoint, Teacher string
}

// Plan turns r into command lines writing under out. With short, each
// step's Short flags override its Flags. Overrides are STEP.FLAG=VALUE
// (one step) or FLAG=VALUE (every step that sets FLAG); an override that
// matches no step is an error.
func Plan(r *Recipe, out string, short bool, overrides []string) ([]Invocation, error) {
	return PlanEnv(r, out, short, overrides, Env{})
}

// Subst expands {out}, {data} and env's placeholders in s.
func Subst(s, out string, env Env) string {
	pairs := []string{"{out}", out, "{data}", filepath.Join(out, "data")}
	if env.Endpoint != "" {
		pairs = append(pairs, "{endpoint}", env.Endpoint)
	}
	if env.Teacher != "" {
		pairs = append(pairs, "{teacher}", env.Teacher)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// UsesTeacher reports whether a step's command line names the teacher's
// endpoint (so that the teacher must be up before it runs).
func (in Invocation) UsesTeacher(env Env) bool {
	for _, a := range in.Args {
		if env.Endpoint != "" && strings.Contains(a, env.Endpoint) || strings.Contains(a, "{endpoint}") {
			return true
		}
	}
	return false
}

// PlanEnv is Plan with the teacher's endpoint filled in.
func PlanEnv(r *Recipe, out string, short bool, overrides []string, env Env) ([]Invocation, error) {
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
	if env.Endpoint != "" || env.Teacher != "" {
		subst = strings.NewReplacer("{out}", out, "{data}", filepath.Join(out, "data"), "{endpoint}", env.Endpoint, "{teacher}", env.Teacher)
	}
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

// Check tests r's claims against what its run wrote under out (the short
// variant's run: the full claims left out); the error lists every claim
// that failed.
func Check(r *Recipe, out string, short bool) ([]string, error) {
	var held, failed []string
	for _, c := range r.Claims {
		if c.Full && short {
			continue
		}
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
		if c.Key != "" || c.MoreTokensThan != "" {
			return ggufClaim(c, out)
		}
		if c.Metric == "" {
			return c.File + " written", nil
		}
	}
	src := filepath.Join(out, c.Step, "metrics.jsonl")
	if c.File != "" {
		src = filepath.Join(out, c.File)
	}
	vals, err := metric(src, c.Metric)
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
	case c.Below != nil && !(last <= *c.Below):
		return "", fmt.Errorf("%s %.4f, want at most %g", c.Metric, last, *c.Below)
	}
	if c.NotAbove != "" {
		ref, err := metric(filepath.Join(out, c.NotAbove), c.Metric)
		if err != nil {
			return "", err
		}
		if r := ref[len(ref)-1]; !(last <= r) {
			return "", fmt.Errorf("%s %.4f is above %s's %.4f", c.Metric, last, c.NotAbove, r)
		}
		return fmt.Sprintf("%s %.4f, at most %s's %.4f", c.Metric, last, c.NotAbove, ref[len(ref)-1]), nil
	}
	if len(vals) == 1 {
		return fmt.Sprintf("%s %.4f", c.Metric, last), nil
	}
	return fmt.Sprintf("%s %.4f → %.4f", c.Metric, first, last), nil
}

// ggufClaim checks a GGUF file's metadata: Key's string value (Equals,
// Contains) or its vocabulary against MoreTokensThan's.
func ggufClaim(c Claim, out string) (string, error) {
	f, err := gguf.Open(filepath.Join(out, c.File))
	if err != nil {
		return "", err
	}
	defer f.Close()
	if c.MoreTokensThan != "" {
		g, err := gguf.Open(filepath.Join(out, c.MoreTokensThan))
		if err != nil {
			return "", err
		}
		defer g.Close()
		a, _ := f.GetStrings("tokenizer.ggml.tokens")
		b, _ := g.GetStrings("tokenizer.ggml.tokens")
		if len(b) == 0 || len(a) <= len(b) {
			return "", fmt.Errorf("%s has %d tokens, %s %d: want more", c.File, len(a), c.MoreTokensThan, len(b))
		}
		return fmt.Sprintf("%s: vocabulary %d → %d", c.File, len(b), len(a)), nil
	}
	v, ok := f.GetString(c.Key)
	switch {
	case !ok:
		return "", fmt.Errorf("%s: no string %s", c.File, c.Key)
	case c.Equals != "" && v != c.Equals:
		return "", fmt.Errorf("%s: %s is %q, want %q", c.File, c.Key, v, c.Equals)
	case c.Contains != "" && !strings.Contains(v, c.Contains):
		return "", fmt.Errorf("%s: %s (%q) lacks %q", c.File, c.Key, short(v), c.Contains)
	}
	return fmt.Sprintf("%s: %s = %q", c.File, c.Key, short(v)), nil
}

func short(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// metric is the values of key in a metrics.jsonl, in step order (lines
// without it skipped), or in a file holding one JSON object (eval's
// results.json, perplexity --json's output).
func metric(path, key string) ([]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rows []map[string]any
	var one map[string]any
	if json.Unmarshal(b, &one) == nil {
		rows = append(rows, one)
	} else {
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for line := 1; sc.Scan(); line++ {
			if len(bytes.TrimSpace(sc.Bytes())) == 0 {
				continue
			}
			var row map[string]any
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, line, err)
			}
			rows = append(rows, row)
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	var vals []float64
	for _, row := range rows {
		if v, ok := lookup(row, key).(float64); ok && !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return nil, fmt.Errorf("%s: no %s", path, key)
	}
	return vals, nil
}

// lookup is row[key], or with key dotted (a.b.c) and no such key, the
// path through nested objects.
func lookup(row map[string]any, key string) any {
	if v, ok := row[key]; ok {
		return v
	}
	head, rest, ok := strings.Cut(key, ".")
	if !ok {
		return nil
	}
	if sub, ok := row[head].(map[string]any); ok {
		return lookup(sub, rest)
	}
	return nil
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
