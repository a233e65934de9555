// Package train is herd's training loop: micro-batches with gradient
// accumulation, clipping by global norm, learning-rate schedules, AdamW,
// validation, metrics, checkpoints with exact resume. Stage 1 of the LLaMA
// road, pretraining a causal language model on token shards, is Pretrain.
package train

import (
	"fmt"

	"github.com/herd-llm/herd/internal/recipe"
	"gopkg.in/yaml.v3"
)

// Recipe is everything a pretraining run is set by. Every field can live in
// a YAML recipe file under the name of its herd pretrain flag (with _ for
// -); the command line overrides it.
type Recipe struct {
	Preset string `yaml:"preset,omitempty"` // a llama preset for a random start
	Init   string `yaml:"init,omitempty"`   // a checkpoint (GGUF or llama2.c) to continue from
	Data   string `yaml:"data"`             // a directory made by herd data prepare
	Out    string `yaml:"output"`           // the output directory (-o; "out" read as an alias)

	Steps       int     `yaml:"steps"`        // optimizer steps
	Batch       int     `yaml:"batch"`        // sequences per micro-batch
	Seq         int     `yaml:"ctx"`          // tokens per sequence (--ctx; "seq" read as an alias)
	Accum       int     `yaml:"accum"`        // micro-batches per step
	LR          float64 `yaml:"lr"`           // peak learning rate
	MinLR       float64 `yaml:"min_lr"`       // floor of the cosine schedule
	Warmup      int     `yaml:"warmup"`       // warm-up steps
	Schedule    string  `yaml:"schedule"`     // constant or cosine
	WeightDecay float64 `yaml:"weight_decay"` // AdamW's decoupled decay
	DecayNorms  bool    `yaml:"decay_norms"`  // also decay norm gains (excluded by default)
	Beta1       float64 `yaml:"beta1"`
	Beta2       float64 `yaml:"beta2"`
	Eps         float64 `yaml:"eps"`
	GradClip    float64 `yaml:"grad_clip"` // clip the global gradient norm to this (0: off)
	Seed        uint64  `yaml:"seed"`      // initialisation and data order
	NoShuffle   bool    `yaml:"no_shuffle"`
	EvalEvery   int     `yaml:"eval_every"`   // validate every N steps (0: only at the end)
	EvalBatches int     `yaml:"eval_batches"` // validation batches per evaluation (the last covers the whole split)
	SaveEvery   int     `yaml:"save_every"`   // checkpoint every N steps (0: only at the end)
	Keep        int     `yaml:"keep"`         // checkpoints kept in the output directory
	Threads     int     `yaml:"threads"`      // 0: all cores
	Recompute   bool    `yaml:"recompute"`    // recompute block activations in backward
	PeakGFLOPS  float64 `yaml:"peak_gflops"`  // the machine's F32 peak, for the MFU estimate (0: DefaultPeakGFLOPSPerThread per thread)
	Resume      bool    `yaml:"resume"`       // continue the run in Out
	// ZeRO shards the optimizer's moments over the data-parallel ranks
	// (--zero; ZeRO stage 1).
	ZeRO bool `yaml:"zero,omitempty"`
	// Overlap starts the gradients' all-reduce during the backward pass
	// (--overlap; train.Config.Overlap).
	Overlap bool `yaml:"overlap,omitempty"`
}

// Defaults are the values a recipe starts from: llama2.c's TinyStories
// settings where they apply.
func Defaults() Recipe {
	return Recipe{
		Steps: 1000, Batch: 8, Seq: 256, Accum: 1, LR: 5e-4, MinLR: 5e-5, Warmup: 100, Schedule: "cosine",
		WeightDecay: 0.1, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, GradClip: 1, Seed: 1337,
		EvalEvery: 100, EvalBatches: 20, SaveEvery: 500, Keep: 2,
	}
}

// LoadRecipe reads a YAML recipe over the defaults. Unknown keys are an
// error, so a misspelt setting does not pass silently.
func LoadRecipe(path string) (Recipe, error) {
	r := Defaults()
	err := recipe.Load(path, &r, map[string]string{"seq": "ctx", "out": "output"})
	return r, err
}

// YAML is the recipe as a YAML document.
func (r Recipe) YAML() string {
	b, err := yaml.Marshal(r)
	if err != nil {
		return fmt.Sprintf("# unprintable recipe: %v\n", err)
	}
	return string(b)
}

// Check reports the first unusable setting.
func (r Recipe) Check() error {
	switch {
	case r.Preset == "" && r.Init == "":
		return fmt.Errorf("give a preset for a random start or an init checkpoint to continue from")
	case r.Preset != "" && r.Init != "":
		return fmt.Errorf("give a preset or an init checkpoint, not both")
	case r.Data == "":
		return fmt.Errorf("give the data directory (herd data prepare makes one)")
	case r.Out == "":
		return fmt.Errorf("give the output directory")
	case r.Steps <= 0 || r.Batch <= 0 || r.Seq <= 0 || r.Accum <= 0:
		return fmt.Errorf("steps %d, batch %d, seq %d and accum %d must be positive", r.Steps, r.Batch, r.Seq, r.Accum)
	case !(r.GradClip >= 0):
		return fmt.Errorf("grad clip %g must not be negative", r.GradClip)
	case r.EvalEvery < 0 || r.SaveEvery < 0 || r.EvalBatches < 0 || r.Keep < 1:
		return fmt.Errorf("eval_every %d, save_every %d, eval_batches %d must not be negative, keep %d must be at least 1",
			r.EvalEvery, r.SaveEvery, r.EvalBatches, r.Keep)
	}
	if err := r.optim().Check(); err != nil {
		return err
	}
	return r.schedule().Check()
}

func (r Recipe) optim() Optim {
	return Optim{Beta1: r.Beta1, Beta2: r.Beta2, Eps: r.Eps, WeightDecay: r.WeightDecay, DecayNorms: r.DecayNorms}
}

func (r Recipe) schedule() Schedule {
	return Schedule{Kind: r.Schedule, LR: r.LR, MinLR: r.MinLR, Warmup: r.Warmup, Steps: r.Steps}
}
