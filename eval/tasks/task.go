// Package tasks evaluates a model on benchmark tasks the way
// EleutherAI's lm-evaluation-harness does, so that the numbers compare:
// log-likelihood multiple choice (acc, acc_norm, TruthfulQA's MC2) and
// generation with answer extraction (GSM8K's strict and flexible matches),
// over data files the user supplies.
//
// A task is a list of documents (the evaluation split), an optional pool
// of few-shot examples (the training or dev split) and the harness's
// formatting: the prompt of a document is
//
//	description + Σ (example text + target delimiter + example answer + few-shot delimiter) + document text
//
// with the examples drawn by Python's random.Random(1234).sample from the
// pool, one draw after another in document order (MMLU takes the first K
// of its subject's dev split instead), as the harness's ContextSampler and
// FirstNSampler do. A multiple-choice document is scored by the
// log-probability of each choice (target delimiter + choice) after its
// prompt; a multiple-input document (Winogrande) has one prompt per choice
// and one shared continuation. Contexts and continuations are tokenized as
// the harness's _encode_pair does: the context's trailing whitespace moves
// to the continuation, the pair is encoded whole (with BOS) and the
// continuation's tokens are those past the context's own token count.
//
// Nothing is truncated: a document whose tokens do not fit in the context
// is skipped and counted (Result.Skipped), where the harness would cut its
// prompt from the left.
//
// results.json (WriteJSON) keeps the harness's layout, so tools that read
// the harness's output read herd's:
//
//	{
//	  "results": {                      // per task, and per MMLU subject ("mmlu_<subject>")
//	    "hellaswag": {"alias": "hellaswag", "acc,none": 0.33, "acc_stderr,none": 0.33,
//	                  "acc_norm,none": 0.67, "acc_norm_stderr,none": 0.33},
//	    "gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0, "exact_match_stderr,strict-match": 0,
//	              "exact_match,flexible-extract": 0, …}
//	  },
//	  "groups": {"mmlu": {"acc,none": …, "acc_stderr,none": …,   // size-weighted, pooled stderr (the harness's)
//	                      "acc_macro,none": …, "acc_macro_stderr,none": …}},  // mean over subjects
//	  "n-shot": {"hellaswag": 0, …},
//	  "n-samples": {"hellaswag": {"original": 10042, "effective": 100}, …},
//	  "higher_is_better": {"hellaswag": {"acc": true, "acc_norm": true}, …},
//	  "herd": {"hellaswag": {"seconds": 12.5, "examples_per_sec": 8.0, "skipped": 0,
//	                         "skipped_sources": ["file.jsonl:17", …]}},
//	  "config": {"model": …, "adapters": […], "num_fewshot": -1, "limit": 100, "n_ctx": 2048,
//	             "batch_tokens": 512, "one_at_a_time": false, "fewshot_seed": 1234, "date": …},
//	  "samples": {"hellaswag": [{"doc_id": 0, "source": "file.jsonl:1", "prompt": …, "choices": […],
//	              "gold": 2, "loglikelihoods": […], "is_greedy": […], "pred": 2,
//	              "scores": {"acc": 1, "acc_norm": 1}}, …]}   // with --log-samples
//	}
//
// A metric's key is "name,filter" ("none" for multiple choice); a standard
// error that cannot be computed (one document) is "N/A"; truthfulqa_mc2's
// acc is MC2. Generation samples carry "generated", "target" and
// "extracted" (per filter) instead of the log-likelihoods.
package tasks

import "fmt"

// Kind is how a task is scored.
type Kind int

const (
	// MultipleChoice scores each choice by its log-likelihood.
	MultipleChoice Kind = iota
	// Generate samples a continuation greedily and compares the answer
	// extracted from it with the document's.
	Generate
)

// Doc is one document of a task, formatted.
type Doc struct {
	Src string // file:line it came from
	// Text is the document's prompt text (doc_to_text) for a
	// single-context document.
	Text string
	// Contexts, for a multiple-input document (Winogrande), are the
	// prompt texts, one per choice; Target is then the continuation
	// shared by all of them.
	Contexts []string
	// Choices are the continuations of a multiple-choice document (without
	// the target delimiter); for a multiple-input one, the texts that tell
	// the choices apart (acc_norm divides by their lengths).
	Choices []string
	// Gold is the index of the right choice.
	Gold int
	// Labels, for MC2, marks the true choices with 1.
	Labels []int
	// Target is the answer text: of a generation document (its reference,
	// and the few-shot answer), or the shared continuation of a
	// multiple-input document.
	Target string
	// Subject groups documents (MMLU's subject); few-shot examples come
	// from the same subject.
	Subject string
	raw     map[string]any // the decoded line, for the harness's equality test
}

// answer is the text an example shows after its prompt.
func (d *Doc) answer() string {
	if len(d.Contexts) > 0 || len(d.Choices) == 0 {
		return d.Target
	}
	return d.Choices[d.Gold]
}

// prompt is the example's question text (the gold context of a
// multiple-input document).
func (d *Doc) prompt() string {
	if len(d.Contexts) > 0 {
		return d.Contexts[d.Gold]
	}
	return d.Text
}

// Sampler picks the few-shot examples.
type Sampler int

const (
	// SampleRandom draws them with random.Random(Seed).sample, as the
	// harness's default sampler.
	SampleRandom Sampler = iota
	// SampleFirstN takes the first K of the pool in order (MMLU).
	SampleFirstN
)

// Task is a benchmark: documents, few-shot pool and formatting.
type Task struct {
	Name string
	Kind Kind
	Docs []Doc // the documents evaluated
	// Pool holds the few-shot examples; SamePool says it is the evaluated
	// split itself (the document is then never its own example).
	Pool     []Doc
	SamePool bool
	Sampler  Sampler
	Shots    int // default number of few-shot examples
	// MaxShots caps the examples (-1: no cap); TruthfulQA takes none.
	MaxShots int
	// Description precedes the examples; for a grouped task, a function of
	// the subject.
	Description func(subject string) string
	// TargetDelim sits between a prompt and its answer (default " "),
	// FewshotDelim after each example (default "\n\n").
	TargetDelim, FewshotDelim string
	Metrics                   []string // acc, acc_norm, acc_bytes, mc2 (MultipleChoice); exact_match (Generate)
	Gen                       GenConfig
	// Group names the average over subjects ("mmlu"), when the documents
	// have subjects.
	Group string
}

// GenConfig says how a generation task generates and matches.
type GenConfig struct {
	Until     []string // stop strings (the model's EOS always stops)
	MaxTokens int      // tokens generated at most (default 256, the harness's max_gen_toks)
	Filters   []Filter // answer extraction, one score per filter
	Match     Match
}

// validate checks a task's settings.
func (t *Task) validate() error {
	if t.Name == "" {
		return fmt.Errorf("a task without a name")
	}
	if len(t.Docs) == 0 {
		return fmt.Errorf("task %s: no documents", t.Name)
	}
	if t.Kind == Generate && len(t.Gen.Filters) == 0 {
		t.Gen.Filters = []Filter{{Name: "none"}}
	}
	if t.Gen.MaxTokens <= 0 {
		t.Gen.MaxTokens = 256
	}
	return nil
}
