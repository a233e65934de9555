package synth

import (
	"errors"
	"fmt"

	"github.com/herd-llm/herd/internal/journal"
	"github.com/herd-llm/herd/oai"
)

// Options are the settings every pipeline shares.
type Options struct {
	Client *oai.Client `json:"-"`
	// Out is the output JSON Lines file; its journal is journal.Path(Out).
	Out string `json:"-"`
	// Resume continues a stopped run of the same pipeline and settings.
	Resume bool `json:"-"`
	// Seed decides every random choice and the seed sent with each
	// request, so a deterministic endpoint gives the same file twice.
	Seed int64
	// Temperature and MaxTokens are sent with the generation requests
	// (MaxTokens 0: the endpoint's default).
	Temperature float64
	MaxTokens   int
	// Stop strings are sent with the generation requests.
	Stop []string
	// OnProgress is called after each unit of work is written.
	OnProgress func(Stats) `json:"-"`
}

// Stats is a run's report (kept, drops by reason, tokens, requests).
type Stats = journal.Stats

// newRunner opens the output of a pipeline.
func newRunner(o Options, pipeline, settings string) (*journal.Runner, error) {
	if o.Client == nil {
		return nil, fmt.Errorf("%s: no endpoint client", pipeline)
	}
	return journal.Open(journal.Config{Client: o.Client, Out: o.Out, Resume: o.Resume, Seed: o.Seed,
		Header: journal.Header{Pipeline: pipeline, Settings: settings}, OnProgress: o.OnProgress})
}

// errEmpty tells whether err is an empty completion (counted as a drop).
func errEmpty(err error) bool { return errors.Is(err, oai.ErrEmpty) }
