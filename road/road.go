// Package road walks the whole LLaMA road in one run (herd quickstart):
// data preparation (clean, dedup, tokenize, pack) → continued pretraining
// → supervised fine-tuning with LoRA → a reward model → DPO → GRPO →
// k-quant and GPTQ quantization → evaluation of every stage → a report (report.html,
// report.json). It ships its own small data (package data files, licences
// in data/README.md) so it runs on a fresh machine.
//
// Every step writes under Options.Dir/<step>/ and, when it finishes,
// Dir/<step>/step.json (its figures); a later run with From re-runs from
// that step, reading the earlier steps' outputs as they are.
package road

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/herd-llm/herd/internal/fileio"
)

// Options set a run of the road.
type Options struct {
	Dir string // output directory (every step writes under Dir/<step>/)
	// Minutes scales every training step's length: about this many
	// minutes of training in all on 2 cores (0: DefaultMinutes).
	Minutes float64
	// From re-runs the road from this step on, keeping the earlier steps'
	// outputs ("": every step).
	From string
	// To stops the road after this step ("": run to the end, the report).
	To string
	// Base is the model to continue pretraining ("": the embedded
	// stories260K).
	Base string
	// Quant is the llama.cpp file type the quantize step writes ("":
	// Q4_K_M).
	Quant string
	// Threads for the kernels (0: all cores).
	Threads int
	Log     io.Writer // progress and messages (nil: discarded)
}

// DefaultMinutes is the road's length when Options.Minutes is 0.
const DefaultMinutes = 10

// A Step is one place on the road.
type Step struct {
	Name string
	What string // one line, shown in the diagram and the log
	run  func(r *Road, info *Info) error
}

// Steps are the road's steps in order: a step reads the outputs of the
// earlier ones from Dir.
// (Set in init: the report step walks Steps.)
var Steps []Step

func init() {
	Steps = []Step{
		{"data", "clean, dedup, tokenize, pack the corpus; instructions and preference pairs", runData},
		{"pretrain", "continue pretraining on the corpus (every weight)", runPretrain},
		{"sft", "supervised fine-tuning with LoRA, merged", runSFT},
		{"rm", "reward model (LLaMA + a scalar head, Bradley–Terry)", runRM},
		{"dpo", "DPO with LoRA on the preference pairs, merged", runDPO},
		{"rl", "GRPO with a LoRA policy against the reward model, merged", runRL},
		{"quantize", "k-quant quantization (llama.cpp's mixes)", runQuantize},
		{"gptq", "GPTQ quantization (Q4_0's grid) from calibration windows", runGPTQ},
		{"eval", "perplexity, KLD, multiple choice, reward, win rate of every stage", runEval},
		{"report", "report.html and report.json", runReport},
	}
}

// StepNames are the names --from accepts.
func StepNames() []string {
	var n []string
	for _, s := range Steps {
		n = append(n, s.Name)
	}
	return n
}

// Info is what a finished step records in Dir/<step>/step.json.
type Info struct {
	Step    string             `json:"step"`
	Seconds float64            `json:"seconds"`
	Outputs []string           `json:"outputs,omitempty"` // paths relative to Dir
	Figures map[string]float64 `json:"figures,omitempty"`
	Notes   []string           `json:"notes,omitempty"`
	// Loss and ValLoss are a training step's curve: one entry per step
	// (ValLoss NaN, written as null, where it did not validate).
	Loss    []float64  `json:"loss,omitempty"`
	ValLoss []*float64 `json:"val_loss,omitempty"`
	// Reward is an RL step's curve: each rollout batch's mean reward.
	Reward []float64 `json:"reward,omitempty"`
	Steps  int       `json:"steps,omitempty"`
}

func (in *Info) figure(k string, v float64) {
	if in.Figures == nil {
		in.Figures = map[string]float64{}
	}
	if !math.IsNaN(v) && !math.IsInf(v, 0) {
		in.Figures[k] = v
	}
}

// Road is a run in progress: its options and the steps' records.
type Road struct {
	Options
	infos map[string]*Info
	log   io.Writer
}

// Path is a path under the run's directory.
func (r *Road) Path(parts ...string) string {
	return filepath.Join(append([]string{r.Dir}, parts...)...)
}

// steps scales a step count given for DefaultMinutes to the run's length.
func (r *Road) steps(atDefault int) int {
	return max(2, int(math.Round(float64(atDefault)*r.Minutes/DefaultMinutes)))
}

// Run walks the road from opt.From (or the start) to opt.To (or the
// end). A failing step leaves the earlier steps' outputs intact and its
// error says how to resume. The Report is nil when the road stopped
// before its report step (To).
func Run(opt Options) (*Report, error) {
	if opt.Dir == "" {
		return nil, fmt.Errorf("road: give the output directory")
	}
	if opt.Minutes == 0 {
		opt.Minutes = DefaultMinutes
	}
	if !(opt.Minutes > 0) || opt.Minutes > 1e4 {
		return nil, fmt.Errorf("road: minutes %g must be positive", opt.Minutes)
	}
	r := &Road{Options: opt, infos: map[string]*Info{}, log: opt.Log}
	if r.log == nil {
		r.log = io.Discard
	}
	first := 0
	if opt.From != "" {
		first = slices.IndexFunc(Steps, func(s Step) bool { return s.Name == opt.From })
		if first < 0 {
			return nil, fmt.Errorf("road: no step %q (steps: %s)", opt.From, strings.Join(StepNames(), ", "))
		}
	}
	last := len(Steps) - 1
	if opt.To != "" {
		last = slices.IndexFunc(Steps, func(s Step) bool { return s.Name == opt.To })
		if last < 0 {
			return nil, fmt.Errorf("road: no step %q (steps: %s)", opt.To, strings.Join(StepNames(), ", "))
		}
		if last < first {
			return nil, fmt.Errorf("road: --to %s comes before --from %s", opt.To, opt.From)
		}
	}
	if err := os.MkdirAll(opt.Dir, 0o755); err != nil {
		return nil, err
	}
	for i, s := range Steps[:first] {
		in, err := readInfo(r.Path(s.Name, "step.json"))
		if err != nil {
			return nil, fmt.Errorf("road: step %d %s has not finished in %s (%v); run from it: --from %s", i+1, s.Name, opt.Dir, err, s.Name)
		}
		r.infos[s.Name] = in
	}
	for i := first; i <= last; i++ {
		if err := r.runStep(i); err != nil {
			return nil, err
		}
	}
	if last < len(Steps)-1 {
		fmt.Fprintf(r.log, "\nstopped after step %d/%d %s; continue with: herd quickstart -o %s --from %s\n", last+1, len(Steps), Steps[last].Name, r.Dir, Steps[last+1].Name)
		return nil, nil
	}
	return r.report()
}

// runStep runs step i in a fresh directory and records its Info.
func (r *Road) runStep(i int) error {
	s := Steps[i]
	fmt.Fprintf(r.log, "\n== road %d/%d: %s — %s\n   %s\n", i+1, len(Steps), s.Name, s.What, r.diagramLine(i))
	dir := r.Path(s.Name)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	in := &Info{Step: s.Name}
	start := time.Now()
	if err := s.run(r, in); err != nil {
		return fmt.Errorf("road step %d/%d %s failed: %w\nthe earlier steps' outputs are kept in %s; after fixing the cause resume with: herd quickstart -o %s --from %s",
			i+1, len(Steps), s.Name, err, r.Dir, r.Dir, s.Name)
	}
	in.Seconds = time.Since(start).Seconds()
	b, err := json.MarshalIndent(in, "", " ")
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "step.json"), b); err != nil {
		return err
	}
	r.infos[s.Name] = in
	fmt.Fprintf(r.log, "   %s done in %.1f s\n", s.Name, in.Seconds)
	return nil
}

// diagramLine is the road with step i marked: data → [pretrain] → sft …
func (r *Road) diagramLine(i int) string {
	var b strings.Builder
	for k, s := range Steps {
		if k > 0 {
			b.WriteString(" → ")
		}
		if k == i {
			fmt.Fprintf(&b, "[%s]", s.Name)
		} else {
			b.WriteString(s.Name)
		}
	}
	return b.String()
}

func readInfo(path string) (*Info, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var in Info
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &in, nil
}

// writeFile writes b to path atomically.
func writeFile(path string, b []byte) error {
	return fileio.WriteAtomic(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}
