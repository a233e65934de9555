package generate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/tensor"
	"github.com/herd-llm/herd/tokenizer"
)

// Finish reasons, as the OpenAI API names them.
const (
	FinishStop   = "stop"   // a stop token or stop string ended the text
	FinishLength = "length" // the token budget or the context ran out
)

// Stop says what ends a generation besides its token budget.
type Stop struct {
	IDs     []int    // tokens that end it (not part of the text)
	Strings []string // texts that end it (cut off, not part of the text)
}

// Request is one generation for a Scheduler.
type Request struct {
	Prompt    []int // token ids, BOS included when wanted
	MaxTokens int   // tokens to sample at most (the context may end it sooner)
	Sampler   SamplerConfig
	// PresencePenalty and FrequencyPenalty, when not 0, set the sampler's
	// (SamplerConfig's fields of the same names, which are the ones to use).
	PresencePenalty, FrequencyPenalty float32
	Stop                              Stop
	// Logprobs asks for the log-probability of each sampled token and of the
	// TopLogprobs most likely alternatives.
	Logprobs    bool
	TopLogprobs int
	// Standalone decodes the first token as the start of a text (no leading
	// space from SentencePiece's word boundary), as a chat reply is shown;
	// otherwise the text continues the prompt.
	Standalone bool
}

// TokenLogprob is a token with its log-probability under the model.
type TokenLogprob struct {
	ID      int
	Piece   []byte  // the token's bytes
	Logprob float32 // natural log of its probability
}

// Event is one step of a generation's stream. Every token sampled gives an
// event; the last event has Done set.
type Event struct {
	Text     string         // text released by this step (may be empty)
	Token    *TokenLogprob  // the sampled token (its Logprob when asked for)
	Top      []TokenLogprob // the most likely tokens at this step, best first
	Done     bool
	Finish   string // FinishStop or FinishLength when Done
	Err      error  // set when the generation failed (Done is then set too)
	Prompt   int    // prompt tokens (when Done)
	Tokens   int    // tokens sampled (when Done)
	Queued   time.Duration
	FirstTok time.Duration // time from submission to the first sampled token (when Done)
}

// SchedulerConfig sizes a Scheduler.
type SchedulerConfig struct {
	Parallel int // sequences decoded together; more requests wait in the queue (default 1)
	Context  int // positions of KV cache a sequence may use (default: the model's context length)
	// PrefillChunk caps the prompt tokens one step processes, so that a long
	// prompt does not stall the others' decoding for long (default 256).
	PrefillChunk int
	// MaxQueue caps waiting requests; beyond it Submit fails with ErrBusy
	// (default 1024).
	MaxQueue int
	// KVBudget caps the bytes of KV cache the sequences in flight may hold
	// together (default DefaultKVBudget). Each request reserves what its
	// prompt and token budget can fill; a request that does not fit waits
	// in the queue until enough is released, and Context is lowered to what
	// the budget holds for one sequence, so no request can need more.
	KVBudget int64
	// Log receives a record when a step fails or panics (default: slog's
	// default logger).
	Log *slog.Logger
	// ContextByBudget is set by NewScheduler (in Config's answer) when the
	// budget lowered Context.
	ContextByBudget bool
}

// DefaultKVBudget is the KV cache memory a Scheduler allows its sequences
// when SchedulerConfig.KVBudget is 0: 4 GiB.
const DefaultKVBudget = 4 << 30

// ErrBusy is returned by Submit when the queue is full.
var ErrBusy = errors.New("too many requests waiting")

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("the scheduler is closed")

// Scheduler runs the generations of one model with continuous batching:
// the sequences in flight share every forward pass (each with its own KV
// cache and position), and between passes finished or cancelled sequences
// leave and queued ones join. A sequence whose context is cancelled leaves
// at the next step.
type Scheduler struct {
	m   *llama.Model
	tok tokenizer.Tokenizer
	cfg SchedulerConfig

	mu       sync.Mutex
	queue    []*job
	active   int
	reserved int64 // a copy of held, for Reserved
	closed   bool
	wake     chan struct{}
	done     chan struct{}

	batch  []llama.Seq // the loop's scratch: a step's rows
	in     []*seq      // and the sequences they belong to
	perPos int64       // KV cache bytes of one position
	held   int64       // KV cache bytes reserved by the sequences in flight (the loop's own)
}

type job struct {
	ctx     context.Context
	req     Request
	box     *mailbox // the generation's events
	reserve int64    // KV cache bytes the generation may fill
	t0      time.Time
	embed   []int          // an embedding job: these tokens
	embedTo chan embedDone // its answer
}

type embedDone struct {
	v   []float32
	err error
}

// NewScheduler starts a scheduler for m; Close stops it.
func NewScheduler(m *llama.Model, tok tokenizer.Tokenizer, cfg SchedulerConfig) *Scheduler {
	if cfg.Parallel <= 0 {
		cfg.Parallel = 1
	}
	if cfg.Context <= 0 {
		cfg.Context = m.Config.ContextLen
	}
	if cfg.PrefillChunk <= 0 {
		cfg.PrefillChunk = 256
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 1024
	}
	if cfg.KVBudget <= 0 {
		cfg.KVBudget = DefaultKVBudget
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	dt := tensor.F16
	if m.KVF32 {
		dt = tensor.F32
	}
	perPos := max(1, m.Config.KVCacheBytes(1, dt))
	if fit := cfg.KVBudget / perPos; int64(cfg.Context) > fit {
		cfg.Log.Warn("the KV cache budget holds fewer positions than the context; the context of a sequence is lowered",
			"context", cfg.Context, "budget_bytes", cfg.KVBudget, "positions", fit)
		cfg.Context = int(max(2, fit))
		cfg.ContextByBudget = true
	}
	s := &Scheduler{m: m, tok: tok, cfg: cfg, wake: make(chan struct{}, 1), done: make(chan struct{}), perPos: perPos}
	go s.loop()
	return s
}

// Config returns the scheduler's settings, defaults filled in.
func (s *Scheduler) Config() SchedulerConfig { return s.cfg }

// Load reports the requests waiting and the sequences being generated.
func (s *Scheduler) Load() (queued, active int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue), s.active
}

// Close stops the scheduler: queued and running generations end with an
// error event.
func (s *Scheduler) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.poke()
	<-s.done
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Submit queues a generation. Its events arrive on the returned channel,
// which is closed after the Done event. Cancelling ctx abandons the
// generation: its slot is freed at the next step and no more events come.
// The scheduler never waits on a slow reader (events queue for it), so a
// caller reads the channel to its end or cancels ctx.
func (s *Scheduler) Submit(ctx context.Context, r Request) (<-chan Event, error) {
	if len(r.Prompt) == 0 {
		return nil, fmt.Errorf("empty prompt")
	}
	if len(r.Prompt) >= s.cfg.Context {
		return nil, fmt.Errorf("the prompt has %d tokens; the context holds %d (with room for at least one new token)", len(r.Prompt), s.cfg.Context)
	}
	for _, t := range r.Prompt {
		if t < 0 || t >= s.m.Config.VocabSize {
			return nil, fmt.Errorf("token id %d outside the vocabulary of %d", t, s.m.Config.VocabSize)
		}
	}
	if r.MaxTokens <= 0 {
		return nil, fmt.Errorf("max tokens %d must be positive", r.MaxTokens)
	}
	if err := r.Sampler.Validate(); err != nil {
		return nil, err
	}
	r.MaxTokens = min(r.MaxTokens, s.cfg.Context-len(r.Prompt))
	j := &job{ctx: ctx, req: r, box: newMailbox(ctx), t0: time.Now(),
		reserve: s.perPos * int64(len(r.Prompt)+r.MaxTokens)}
	if err := s.enqueue(j); err != nil {
		j.box.abandon()
		return nil, err
	}
	return j.box.out, nil
}

func (s *Scheduler) enqueue(j *job) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if len(s.queue) >= s.cfg.MaxQueue {
		return ErrBusy
	}
	s.queue = append(s.queue, j)
	s.poke()
	return nil
}

// Embed returns the mean over tokens of the model's final hidden state
// (after the last RMSNorm), L2-normalised. It runs between decode steps.
func (s *Scheduler) Embed(ctx context.Context, tokens []int) ([]float32, error) {
	if len(tokens) == 0 {
		return nil, fmt.Errorf("no tokens to embed")
	}
	if len(tokens) > s.cfg.Context {
		return nil, fmt.Errorf("the input has %d tokens; the context holds %d", len(tokens), s.cfg.Context)
	}
	j := &job{ctx: ctx, embed: tokens, embedTo: make(chan embedDone, 1), t0: time.Now()}
	if err := s.enqueue(j); err != nil {
		return nil, err
	}
	select {
	case r := <-j.embedTo:
		return r.v, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// seq is a generation in flight.
type seq struct {
	*job
	cache   *llama.KVCache
	toks    []int // prompt, then sampled tokens
	fed     int   // tokens in the cache
	gen     int
	smp     *Sampler
	stopper *Stopper
	first   time.Duration
	lp      []float32 // scratch for log-probabilities
	done    bool      // finished: leaves after this step
}

func (s *Scheduler) loop() {
	defer close(s.done)
	var state llama.State
	var active []*seq
	for !s.iteration(&state, &active) {
	}
}

// iteration admits waiting requests, runs the embeddings among them and
// one step of the sequences in flight; it reports whether the scheduler
// has closed. A panic anywhere in it fails the sequences in flight and is
// logged; the loop goes on (the step and the embeddings have their own,
// narrower recovery).
func (s *Scheduler) iteration(state *llama.State, active *[]*seq) (closed bool) {
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Log.Error("scheduler loop panicked; its sequences fail", "panic", p, "stack", string(debug.Stack()))
			for _, q := range *active {
				q.fail(fmt.Errorf("generation failed: internal error: %v", p))
				s.release(q)
			}
			*active, *state = nil, llama.State{}
			s.setActive(0)
		}
	}()
	embeds, closed := s.admit(active)
	if closed {
		return true
	}
	for _, j := range embeds {
		v, err := s.safeEmbed(state, j.embed)
		j.embedTo <- embedDone{v, err}
	}
	*active = slices.DeleteFunc(*active, func(q *seq) bool {
		if q.ctx.Err() != nil {
			s.release(q)
			return true
		}
		return false
	})
	s.setActive(len(*active))
	if len(*active) == 0 {
		if len(embeds) == 0 {
			<-s.wake
		}
		return false
	}
	*active = s.safeStep(state, *active)
	s.setActive(len(*active))
	return false
}

// admit moves waiting requests into active (embeddings are returned, to
// run at once) and drops those whose clients left; after Close it fails
// everything and reports closed.
func (s *Scheduler) admit(active *[]*seq) (embeds []*job, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		for _, j := range s.queue {
			j.fail(ErrClosed)
		}
		s.queue = nil
		for _, q := range *active {
			q.fail(ErrClosed)
			s.release(q)
		}
		return nil, true
	}
	for len(s.queue) > 0 && s.admits(s.queue[0], len(*active)) {
		j := s.queue[0]
		s.queue = s.queue[1:]
		switch {
		case j.ctx.Err() != nil:
			j.fail(j.ctx.Err())
		case j.embed != nil:
			embeds = append(embeds, j)
		default:
			s.held += j.reserve
			*active = append(*active, s.start(j))
		}
	}
	s.queue = slices.DeleteFunc(s.queue, func(j *job) bool {
		if j.ctx.Err() != nil {
			j.fail(j.ctx.Err())
			return true
		}
		return false
	})
	s.active = len(*active)
	return embeds, false
}

// admits reports whether the queue's head j may start now: an embedding
// always; a generation when a slot is free and its KV cache reservation
// fits in the budget beside those in flight (alone it always fits, as
// Context was lowered to the budget).
func (s *Scheduler) admits(j *job, active int) bool {
	if j.embed != nil || j.ctx.Err() != nil {
		return true
	}
	return active < s.cfg.Parallel && (active == 0 || s.held+j.reserve <= s.cfg.KVBudget)
}

// release returns a finished or abandoned sequence's reservation.
func (s *Scheduler) release(q *seq) {
	s.held -= q.reserve
	q.reserve = 0
}

// safeStep is step behind the scheduler's boundary: a panic in the forward
// pass or in sampling fails the sequences of the step (each gets an error
// event), is logged, and the scheduler goes on serving the others and the
// queue.
func (s *Scheduler) safeStep(state *llama.State, active []*seq) (left []*seq) {
	defer func() {
		if p := recover(); p != nil {
			err := fmt.Errorf("generation failed: internal error: %v", p)
			s.cfg.Log.Error("scheduler step panicked; its sequences fail", "panic", p, "sequences", len(active), "stack", string(debug.Stack()))
			for _, q := range active {
				if !q.done {
					q.fail(err)
				}
				s.release(q)
			}
			*state = llama.State{} // its buffers may be half-written
			clear(s.batch)
			clear(s.in)
			left = nil
		}
	}()
	return s.step(state, active)
}

// safeEmbed is embed behind the scheduler's boundary (see safeStep).
func (s *Scheduler) safeEmbed(state *llama.State, tokens []int) (v []float32, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Log.Error("embedding panicked; the request fails", "panic", p, "stack", string(debug.Stack()))
			*state = llama.State{}
			v, err = nil, fmt.Errorf("embedding failed: internal error: %v", p)
		}
	}()
	return s.embed(state, tokens)
}

func (s *Scheduler) setActive(n int) {
	s.mu.Lock()
	s.active = n
	s.reserved = s.held
	s.mu.Unlock()
}

// Reserved reports the KV cache bytes the sequences in flight have
// reserved and the budget they share.
func (s *Scheduler) Reserved() (held, budget int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reserved, s.cfg.KVBudget
}

func (j *job) fail(err error) {
	if j.embedTo != nil {
		j.embedTo <- embedDone{nil, err}
		return
	}
	j.box.send(Event{Done: true, Err: err})
}

func (s *Scheduler) start(j *job) *seq {
	r := j.req
	cfg := r.Sampler
	if r.PresencePenalty != 0 || r.FrequencyPenalty != 0 {
		cfg.PresencePenalty, cfg.FrequencyPenalty = r.PresencePenalty, r.FrequencyPenalty
	}
	q := &seq{job: j, toks: slices.Clip(append([]int(nil), r.Prompt...)), smp: NewSampler(cfg),
		stopper: NewStopper(r.Stop.Strings)}
	q.cache = s.m.NewKVCache(min(s.cfg.Context, len(r.Prompt)+r.MaxTokens))
	return q
}

// step runs one forward pass over the active sequences (a chunk of prompt
// for those still reading theirs, the last sampled token for the others),
// samples where a sequence has read everything, and returns the sequences
// still running.
func (s *Scheduler) step(state *llama.State, active []*seq) []*seq {
	batch, in := s.batch[:0], s.in[:0]
	budget := s.cfg.PrefillChunk
	for _, q := range active {
		n := len(q.toks) - q.fed
		if n > 1 { // reading the prompt
			if budget <= 0 {
				continue
			}
			n = min(n, budget)
			budget -= n
		}
		batch = append(batch, llama.Seq{Tokens: q.toks[q.fed : q.fed+n], Cache: q.cache})
		in = append(in, q)
	}
	s.batch, s.in = batch, in
	logits, err := s.m.ForwardBatch(state, batch)
	// the scratch keeps no finished sequence alive
	defer func() { clear(batch); clear(in) }()
	if err != nil {
		s.cfg.Log.Error("forward pass failed; its sequences fail", "err", err, "sequences", len(active))
		for _, q := range active {
			q.fail(err)
			s.release(q)
		}
		return nil
	}
	for i, q := range in {
		q.fed += len(batch[i].Tokens)
		if q.fed < len(q.toks) {
			continue // more prompt to read
		}
		q.done = s.sample(q, logits[i])
	}
	return slices.DeleteFunc(active, func(q *seq) bool {
		if q.done {
			s.release(q)
		}
		return q.done
	})
}

// sample draws the next token of q from logits and streams it; it reports
// whether q is finished.
func (s *Scheduler) sample(q *seq, logits []float32) bool {
	r := q.req
	ev := Event{}
	if r.Logprobs {
		ev.Top = s.logprobs(q, logits, r.TopLogprobs)
	}
	next, err := q.smp.Next(logits, q.toks, len(q.toks)-1)
	if err != nil {
		s.cfg.Log.Warn("a generation fails", "err", err)
		q.fail(err)
		return true
	}
	if q.gen == 0 {
		q.first = time.Since(q.t0)
	}
	q.gen++
	prev := q.toks[len(q.toks)-1]
	if q.gen == 1 && r.Standalone && s.tok.BOS() >= 0 {
		prev = s.tok.BOS()
	}
	q.toks = append(q.toks, next)
	ev.Token = &TokenLogprob{ID: next, Piece: s.tok.DecodePiece(-1, next)}
	if r.Logprobs {
		ev.Token.Logprob = q.lp[next]
	}
	finish := ""
	if slices.Contains(r.Stop.IDs, next) {
		finish = FinishStop
		ev.Text = q.stopper.Flush()
	} else {
		text, hit := q.stopper.Push(s.tok.DecodePiece(prev, next))
		ev.Text = text
		switch {
		case hit:
			finish = FinishStop
		case q.gen >= r.MaxTokens || len(q.toks) >= q.cache.Cap:
			finish = FinishLength
			ev.Text += q.stopper.Flush()
		}
	}
	q.box.send(ev)
	if finish == "" {
		return false
	}
	q.box.send(Event{Done: true, Finish: finish, Prompt: len(r.Prompt), Tokens: q.gen, FirstTok: q.first})
	return true
}

// logprobs computes log-softmax of the raw logits into q.lp and returns the
// k most likely tokens.
func (s *Scheduler) logprobs(q *seq, logits []float32, k int) []TokenLogprob {
	if cap(q.lp) < len(logits) {
		q.lp = make([]float32, len(logits))
	}
	lp := q.lp[:len(logits)]
	mx := logits[0]
	for _, v := range logits {
		mx = max(mx, v)
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v - mx))
	}
	lse := float64(mx) + math.Log(sum)
	for i, v := range logits {
		lp[i] = float32(float64(v) - lse)
	}
	if k <= 0 {
		return nil
	}
	cand := make([]candidate, len(lp))
	for i, v := range lp {
		cand[i] = candidate{i, v}
	}
	top := topK(cand, min(k, len(cand)))
	out := make([]TokenLogprob, len(top))
	for i, c := range top {
		out[i] = TokenLogprob{ID: c.id, Piece: s.tok.DecodePiece(-1, c.id), Logprob: c.p}
	}
	return out
}

// embed runs tokens through the model and mean-pools the final hidden
// states (after the output norm), L2-normalised.
func (s *Scheduler) embed(state *llama.State, tokens []int) ([]float32, error) {
	dim := s.m.Config.Dim
	cache := s.m.NewKVCache(len(tokens))
	out := make([]float64, dim)
	for lo := 0; lo < len(tokens); lo += s.cfg.PrefillChunk {
		hi := min(len(tokens), lo+s.cfg.PrefillChunk)
		res, err := s.m.Hidden(state, []llama.Seq{{Tokens: tokens[lo:hi], Cache: cache, All: true}})
		if err != nil {
			return nil, err
		}
		h := res[0]
		for r := 0; r < hi-lo; r++ {
			for i, v := range h[r*dim : (r+1)*dim] {
				out[i] += float64(v)
			}
		}
	}
	var norm float64
	for _, v := range out {
		norm += v * v
	}
	norm = math.Sqrt(norm)
	v := make([]float32, dim)
	for i := range v {
		if norm > 0 {
			v[i] = float32(out[i] / norm)
		}
	}
	return v, nil
}
