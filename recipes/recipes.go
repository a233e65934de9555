// Package recipes holds herd's recipe book (herd recipe list | show |
// run): one YAML file per project of the LLaMA road (Alpaca, Vicuna,
// QLoRA, StackLLaMA, llama.cpp …), each saying what the original did (data,
// method, hyperparameters, hardware, source) and what its scaled-down
// default does here, as herd commands on the road's shipped data or the
// user's. A recipe's short variant is what the test suite runs; its claims
// (the loss falls, the reward model tells pairs apart …) are checked
// against the metrics its steps wrote.
package recipes

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/herd-llm/herd/internal/recipe"
)

//go:embed book/*.yaml
var book embed.FS

// Recipe is one project's recipe.
type Recipe struct {
	Name     string   `yaml:"name"`
	Stage    string   `yaml:"stage"`   // the road's stage: pretraining, SFT, PEFT, alignment, inference
	Summary  string   `yaml:"summary"` // one line for herd recipe list
	Original Original `yaml:"original"`
	Here     string   `yaml:"here"` // what the scaled-down default does
	Steps    []Step   `yaml:"steps"`
	Claims   []Claim  `yaml:"claims"`
	// Teacher, when set, is the model the steps reach at {endpoint} under
	// the name {teacher} (herd synth's --endpoint and --model): herd recipe
	// run serves it in-process unless given an endpoint of its own.
	Teacher *Teacher `yaml:"teacher"`
	Text    string   `yaml:"-"` // the file as written
}

// Teacher is the model a recipe's synth steps ask.
type Teacher struct {
	Model    string `yaml:"model"`    // a GGUF file ({data}, {out} expand); the step that writes it must come first
	Name     string `yaml:"name"`     // the name it is served under ({teacher})
	Template string `yaml:"template"` // its chat template ("": the model's own, else raw)
	Why      string `yaml:"why"`      // what the original asked instead
}

// Original is what the project did, with its source.
type Original struct {
	Source          string `yaml:"source"` // paper or repository
	Data            string `yaml:"data"`
	Method          string `yaml:"method"`
	Hyperparameters string `yaml:"hyperparameters"`
	Hardware        string `yaml:"hardware"`
}

// Step is one herd command of a recipe. Flags are the command's flags
// by name (lists joined by commas); Short overrides them in the short
// variant. Strings may hold {out} (the run's directory) and {data} (the
// shipped data, {out}/data). Unless Flags set output or NoOutput is
// true, the step gets -o {out}/{id}.
type Step struct {
	ID       string         `yaml:"id"`
	Run      []string       `yaml:"run"`  // the command words: [sft], [rm, train]
	Args     []string       `yaml:"args"` // positional arguments
	Flags    map[string]any `yaml:"flags"`
	Short    map[string]any `yaml:"short"`
	NoOutput bool           `yaml:"no_output"`
	// Stdout keeps what the command prints on stdout in {out}/{id}/stdout
	// as well (herd perplexity --json, herd eval's table), for the claims.
	Stdout bool `yaml:"stdout"`
}

// Claim is what a recipe's run must show. Metric is a key of the step's
// metrics.jsonl (or, with File, of that JSON or JSON Lines file; a dotted
// key walks into objects: results.task.acc,none): Falls (its last value
// below its first), Rises, Above (its last value at least that) or Below
// (at most that; JSON holds no infinity or NaN, so a value read is
// finite). File is a path under {out} that must exist.
type Claim struct {
	Step   string   `yaml:"step"`
	Metric string   `yaml:"metric"`
	Falls  bool     `yaml:"falls"`
	Rises  bool     `yaml:"rises"`
	Above  *float64 `yaml:"above"`
	Below  *float64 `yaml:"below"`
	File   string   `yaml:"file"`
	// Key and Equals, with File a GGUF file: its metadata string Key
	// holds Equals (general.architecture: falcon), or with Contains, holds
	// that text (tokenizer.chat_template).
	Key      string `yaml:"key"`
	Equals   string `yaml:"equals"`
	Contains string `yaml:"contains"`
	// MoreTokensThan, with File a GGUF file, is a GGUF file under {out}
	// whose vocabulary File's must outgrow (a vocabulary extension).
	MoreTokensThan string `yaml:"more_tokens_than"`
	// NotAbove, with Metric, is a file under {out} (read as File is) whose
	// Metric the last value must not exceed: GPTQ's perplexity against
	// round-to-nearest's.
	NotAbove string `yaml:"not_above"`
	// SmallerThan, with File, is a path under {out} File must be smaller
	// than (a quantized model than its input).
	SmallerThan string `yaml:"smaller_than"`
	// Full claims are checked after the default run only: what a few
	// steps cannot show reliably (PPO's reward rising).
	Full bool   `yaml:"full"`
	Why  string `yaml:"why"`
}

// All reads every recipe of the book, sorted by stage then name.
func All() ([]*Recipe, error) {
	names, err := fs.Glob(book, "book/*.yaml")
	if err != nil {
		return nil, err
	}
	var out []*Recipe
	for _, n := range names {
		r, err := parse(n)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Stage != out[j].Stage {
			return out[i].Stage < out[j].Stage
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Get is the recipe of that name.
func Get(name string) (*Recipe, error) {
	all, err := All()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range all {
		if r.Name == name {
			return r, nil
		}
		names = append(names, r.Name)
	}
	return nil, fmt.Errorf("recipe %q: no such recipe (herd recipe list: %s)", name, strings.Join(names, ", "))
}

func parse(name string) (*Recipe, error) {
	b, err := book.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var r Recipe
	if err := recipe.Decode(name, b, &r, nil); err != nil {
		return nil, err
	}
	r.Text = string(b)
	want := strings.TrimSuffix(path.Base(name), ".yaml")
	if r.Name != want {
		return nil, fmt.Errorf("%s: name %q, want the file's name %q", name, r.Name, want)
	}
	if r.Summary == "" || r.Original.Source == "" || r.Here == "" || len(r.Steps) == 0 || len(r.Claims) == 0 {
		return nil, fmt.Errorf("%s: a recipe needs summary, original.source, here, steps and claims", name)
	}
	for i, s := range r.Steps {
		if s.ID == "" || len(s.Run) == 0 {
			return nil, fmt.Errorf("%s: step %d needs an id and run", name, i+1)
		}
	}
	for _, c := range r.Claims {
		if !slices.ContainsFunc(r.Steps, func(s Step) bool { return s.ID == c.Step }) {
			return nil, fmt.Errorf("%s: claim on %q, which is no step", name, c.Step)
		}
		if (c.Key != "" || c.MoreTokensThan != "") && c.File == "" {
			return nil, fmt.Errorf("%s: claim on %s: key and more_tokens_than need file", name, c.Step)
		}
	}
	if t := r.Teacher; t != nil && (t.Model == "" || t.Name == "") {
		return nil, fmt.Errorf("%s: teacher needs model and name", name)
	}
	return &r, nil
}

// flagValues are a flag's values as the command line spells them: one
// per list element (the flag repeated), booleans as true/false.
func flagValues(v any) []string {
	if x, ok := v.([]any); ok {
		var s []string
		for _, e := range x {
			s = append(s, fmt.Sprint(e))
		}
		return s
	}
	return []string{fmt.Sprint(v)}
}
