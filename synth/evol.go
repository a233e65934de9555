package synth

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/herd-llm/herd/internal/journal"
	"github.com/herd-llm/herd/oai"
)

// Evol-Instruct operations (Xu et al. 2023, WizardLM): five in depth, one
// in breadth.
const (
	OpConstraints = "add_constraints"
	OpDeepen      = "deepen"
	OpConcretize  = "concretize"
	OpReasoning   = "increase_reasoning"
	OpComplicate  = "complicate_input"
	OpBreadth     = "breadth"
)

// EvolOps is every operation, in a fixed order.
var EvolOps = []string{OpConstraints, OpDeepen, OpConcretize, OpReasoning, OpComplicate, OpBreadth}

// Drop reasons of evol-instruct.
const (
	DropLeak          = "leak"
	DropNoGain        = "no_gain"
	DropJudgeUnparsed = "judge_unparsed"
	DropSorry         = "sorry"
	DropShortResponse = "short_response"
	DropCopiesPrompt  = "copies_prompt"
)

// The prompt texts were written for herd from the paper's description of
// each operation.
const depthPrompt = `You rewrite prompts for an AI assistant. Rewrite the prompt in #Given Prompt# into a harder version, one that strong assistants find more demanding, while it stays sensible, clear and answerable by a person. Keep every part of it that is not plain text, such as tables or code, and keep its input if it has one. %s The rewrite may be 10 to 20 words longer than the original, not more. Write only the new prompt, without any heading or label, and do not mention the given prompt or the rewriting.

#Given Prompt#:
%s
`

var depthMethods = map[string]string{
	OpConstraints: "Do it by adding one further constraint or requirement.",
	OpDeepen:      "Do it by asking about the matter in more depth and breadth where the prompt asks about something.",
	OpConcretize:  "Do it by replacing general concepts with more specific ones.",
	OpReasoning:   "Do it so that a prompt solvable in a few simple thoughts asks explicitly for reasoning over several steps.",
	OpComplicate:  "Do it by adding input data the prompt must work on, in a fitting format (a table, code, JSON or a list of figures).",
}

const breadthPrompt = `You create prompts for an AI assistant. Take the prompt in #Given Prompt# as inspiration and write a new prompt in the same domain, on a rarer topic, of about the same length and difficulty. It must be sensible and answerable by a person. Write only the new prompt, without any heading or label.

#Given Prompt#:
%s
`

const equalPrompt = `Here are two instructions for an AI assistant. Do they ask for the same thing, with the same constraints and requirements and the same depth and breadth of inquiry? Answer "Equal" or "Not Equal" and nothing else.

First instruction:
%s

Second instruction:
%s
`

// leakWords are phrases of the evolving prompt that must not survive in
// the evolved instruction.
var leakWords = []string{"#given prompt#", "#rewritten prompt#", "#created prompt#", "given prompt", "rewritten prompt", "created prompt"}

// stopWords are English function words: a response made of these and the
// prompt's own words says nothing.
var stopWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`a an the and or but if then so of to in on at by for with from as is are was were be been
		being am do does did have has had i you he she it we they me him her us them my your his its our their this that these
		those there here what which who whom whose when where why how not no yes can could will would shall should may might
		must just also very too than all any some each such only own same into over under about again once up down out off`) {
		stopWords[w] = true
	}
}

// EvolItem is an evolved instruction with its response and ancestry.
type EvolItem struct {
	ID          string `json:"id"`
	Instruction string `json:"instruction"`
	Input       string `json:"input"`
	Output      string `json:"output"`
	Round       int    `json:"round"`
	Operation   string `json:"operation"`
	Parent      string `json:"parent"` // the item (or input prompt, "p…") it was evolved from
}

// EvolInstruct evolves the prompts of a file for Rounds rounds: in each,
// every instruction of the pool is rewritten by an operation drawn from
// Ops; an evolution that passes the elimination rules is answered by the
// teacher, written, and takes its parent's place in the pool; one that
// fails leaves the parent there.
type EvolInstruct struct {
	Options
	Input  string   // prompts (ReadPrompts layouts); the first user turn evolves
	Rounds int      // M (default 4, as WizardLM)
	Ops    []string // default EvolOps
	// SorryWords: a response that says "sorry" and has fewer words than
	// this is dropped (default 80, as in the paper). MinResponseWords
	// drops shorter responses (default 1).
	SorryWords, MinResponseWords int
	// LenientJudge keeps an evolution whose equality verdict cannot be
	// read (a teacher too small to answer "Equal" or "Not Equal") instead
	// of dropping it as judge_unparsed.
	LenientJudge bool
}

func (e *EvolInstruct) defaults() error {
	if e.Rounds <= 0 {
		e.Rounds = 4
	}
	if len(e.Ops) == 0 {
		e.Ops = EvolOps
	}
	for _, op := range e.Ops {
		if !slices.Contains(EvolOps, op) {
			return fmt.Errorf("evol-instruct: unknown operation %q (have %s)", op, strings.Join(EvolOps, ", "))
		}
	}
	if e.SorryWords <= 0 {
		e.SorryWords = 80
	}
	if e.MinResponseWords <= 0 {
		e.MinResponseWords = 1
	}
	return nil
}

// Run evolves the pool.
func (e *EvolInstruct) Run(ctx context.Context) (*Stats, error) {
	if err := e.defaults(); err != nil {
		return nil, err
	}
	prompts, err := ReadPrompts(e.Input)
	if err != nil {
		return nil, err
	}
	settings := *e
	if settings.Input, err = fileHash(e.Input); err != nil {
		return nil, err
	}
	r, err := newRunner(e.Options, "evol-instruct", fingerprint(settings)+" model "+e.Client.Model())
	if err != nil {
		return nil, err
	}
	pool := make([]EvolItem, len(prompts))
	for i, p := range prompts {
		pool[i] = EvolItem{ID: p.ID, Instruction: p.User[0]}
	}
	r.Stats().Total = e.Rounds * len(pool)
	for round := 1; round <= e.Rounds; round++ {
		keys := make([]string, len(pool))
		for i := range keys {
			keys[i] = fmt.Sprintf("r%d.%d", round, i)
		}
		evolved := make([]*EvolItem, len(pool))
		err := r.Units(ctx, keys, func(ctx context.Context, u *journal.Unit, i int) error {
			it, err := e.evolve(ctx, u, pool[i], round)
			if it != nil {
				evolved[i] = it
				return u.Keep(it.ID, it)
			}
			return err
		}, nil)
		if err != nil {
			return r.Finish(err)
		}
		for i, k := range keys {
			if evolved[i] != nil {
				pool[i] = *evolved[i]
			} else if raw, ok := r.Item(k); ok { // kept by the run resumed
				if err := json.Unmarshal(raw, &pool[i]); err != nil {
					return r.Finish(fmt.Errorf("resume %s: item %s: %w", e.Out, k, err))
				}
			}
		}
	}
	return r.Finish(nil)
}

// evolve runs one evolution and the elimination rules; nil, nil is a drop.
func (e *EvolInstruct) evolve(ctx context.Context, u *journal.Unit, parent EvolItem, round int) (*EvolItem, error) {
	rng := rand.New(rand.NewPCG(uint64(journal.DeriveSeed(e.Seed, u.Key, -1)), 2))
	op := e.Ops[rng.IntN(len(e.Ops))]
	var prompt string
	if op == OpBreadth {
		prompt = fmt.Sprintf(breadthPrompt, parent.Instruction)
	} else {
		prompt = fmt.Sprintf(depthPrompt, depthMethods[op], parent.Instruction)
	}
	gen := func(content string, temp float64) (string, bool, error) {
		resp, err := u.Chat(ctx, oai.Request{Messages: []oai.Message{{Role: "user", Content: content}}, Temperature: temp, MaxTokens: e.MaxTokens, Stop: e.Stop})
		if errEmpty(err) {
			u.Drop(DropEmpty)
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		return strings.TrimSpace(resp.Content), true, nil
	}
	instr, ok, err := gen(prompt, e.Temperature)
	if !ok {
		return nil, err
	}
	if leaks(instr) {
		u.Drop(DropLeak)
		return nil, nil
	}
	verdict, ok, err := gen(fmt.Sprintf(equalPrompt, parent.Instruction, instr), 0)
	if !ok {
		return nil, err
	}
	switch v := strings.ToLower(verdict); {
	case strings.Contains(v, "not equal"):
	case strings.Contains(v, "equal"):
		u.Drop(DropNoGain)
		return nil, nil
	case !e.LenientJudge:
		u.Drop(DropJudgeUnparsed)
		return nil, nil
	}
	answer, ok, err := gen(instr, e.Temperature)
	if !ok {
		return nil, err
	}
	if reason := e.checkResponse(instr, answer); reason != "" {
		u.Drop(reason)
		return nil, nil
	}
	return &EvolItem{ID: u.Key, Instruction: instr, Output: answer, Round: round, Operation: op, Parent: parent.ID}, nil
}

// leaks tells whether an evolved instruction kept the evolving prompt's
// own wording.
func leaks(instr string) bool {
	l := strings.ToLower(instr)
	for _, w := range leakWords {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

// checkResponse applies the rules on the teacher's response: "sorry" in a
// short response, a response below the word bound, a response made only
// of the instruction's words, stop words and punctuation.
func (e *EvolInstruct) checkResponse(instr, answer string) string {
	words := len(strings.Fields(answer))
	switch {
	case strings.Contains(strings.ToLower(answer), "sorry") && words < e.SorryWords:
		return DropSorry
	case words < e.MinResponseWords:
		return DropShortResponse
	}
	own := map[string]bool{}
	for _, t := range RougeTokens(instr) {
		own[t] = true
	}
	for _, t := range RougeTokens(answer) {
		if !own[t] && !stopWords[t] {
			return ""
		}
	}
	return DropCopiesPrompt
}
