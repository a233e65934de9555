package synth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herd-llm/herd/oai"
)

// Options are the settings every pipeline shares.
type Options struct {
	Client *oai.Client `json:"-"`
	// Out is the output JSON Lines file; its journal is JournalPath(Out).
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

// Stats is a run's report: items kept, drops by reason, tokens and
// requests, over the whole output (a resumed run includes what the runs
// before it did).
type Stats struct {
	Pipeline string
	Kept     int
	Drops    map[string]int
	Units    int // units of work finished
	Total    int // units of work this run knows of so far (0: unknown)
	Target   int // items the run means to keep (0: as many as come)
	Requests int
	Usage    oai.Usage
	Resumed  int           // units found done when the run started
	Elapsed  time.Duration // this invocation's time
}

func (s *Stats) add(u *journalUnit) {
	s.Kept += len(u.Kept)
	for r, n := range u.Drops {
		s.Drops[r] += n
	}
	s.Units++
	s.Requests += u.Requests
	s.Usage.Add(u.Usage)
}

// Dropped is the number of items dropped, over every reason.
func (s *Stats) Dropped() int {
	n := 0
	for _, v := range s.Drops {
		n += v
	}
	return n
}

// DropSummary lists the drop reasons with their counts, most first.
func (s *Stats) DropSummary() string {
	keys := slices.Collect(maps.Keys(s.Drops))
	slices.SortFunc(keys, func(a, b string) int {
		if s.Drops[a] != s.Drops[b] {
			return s.Drops[b] - s.Drops[a]
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, s.Drops[k])
	}
	return b.String()
}

// Report is the final report's text.
func (s *Stats) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d kept, %d dropped", s.Pipeline, s.Kept, s.Dropped())
	if len(s.Drops) > 0 {
		fmt.Fprintf(&b, " (%s)", s.DropSummary())
	}
	fmt.Fprintf(&b, "\n%d units of work", s.Units)
	if s.Resumed > 0 {
		fmt.Fprintf(&b, " (%d done before this run)", s.Resumed)
	}
	fmt.Fprintf(&b, ", %d requests, %d prompt + %d completion tokens, %s\n", s.Requests, s.Usage.Prompt, s.Usage.Completion, s.Elapsed.Round(time.Millisecond))
	return b.String()
}

// clone is a copy safe to hand out.
func (s *Stats) clone() Stats {
	c := *s
	c.Drops = maps.Clone(s.Drops)
	return c
}

// unit is one unit of work: its requests and what it kept and dropped.
type unit struct {
	key      string
	seed     int64
	client   *oai.Client
	n        int // requests sent
	requests int
	usage    oai.Usage
	ids      []string
	items    []json.RawMessage
	drops    map[string]int
}

// chat sends a request with a seed drawn from the run's seed, the unit and
// the request's place in the unit.
func (u *unit) chat(ctx context.Context, r oai.Request) (*oai.Response, error) {
	r.Seed = deriveSeed(u.seed, u.key, u.n)
	u.n++
	resp, err := u.client.Chat(ctx, r)
	if resp != nil {
		u.requests++
		u.usage.Add(resp.Usage)
	}
	return resp, err
}

// keep adds an item; v must marshal to a JSON object, given the id.
func (u *unit) keep(id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("item %s: %w", id, err)
	}
	u.ids = append(u.ids, id)
	u.items = append(u.items, b)
	return nil
}

func (u *unit) drop(reason string) {
	if u.drops == nil {
		u.drops = map[string]int{}
	}
	u.drops[reason]++
}

// deriveSeed mixes the run's seed with a key and a counter (FNV-1a).
func deriveSeed(seed int64, key string, n int) int64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d\x00%s\x00%d", seed, key, n)
	return int64(h.Sum64() >> 1)
}

// runner runs units of work against a store.
type runner struct {
	o     Options
	st    *store
	start time.Time
}

func newRunner(o Options, pipeline, settings string) (*runner, error) {
	if o.Client == nil {
		return nil, fmt.Errorf("%s: no endpoint client", pipeline)
	}
	if o.Out == "" {
		return nil, fmt.Errorf("%s: no output file", pipeline)
	}
	st, err := openStore(o.Out, o.Resume, journalHeader{Pipeline: pipeline, Settings: settings})
	if err != nil {
		return nil, err
	}
	st.stats.Pipeline = pipeline
	st.stats.Resumed = st.stats.Units
	return &runner{o: o, st: st, start: time.Now()}, nil
}

// finish closes the store and returns the report.
func (r *runner) finish(err error) (*Stats, error) {
	if cerr := r.st.close(); err == nil {
		err = cerr
	}
	s := r.st.stats.clone()
	s.Elapsed = time.Since(r.start)
	return &s, err
}

// errEmpty tells whether err is an empty completion (counted as a drop).
func errEmpty(err error) bool { return errors.Is(err, oai.ErrEmpty) }

// units runs fetch for every key not done yet, as many at once as the
// client has requests in flight, and commit (which may be nil) followed
// by the write in key order: the file is the same whatever the timing.
// The first error in key order ends the run; the units before it are
// written.
func (r *runner) units(ctx context.Context, keys []string, fetch func(context.Context, *unit, int) error, commit func(*unit, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	next := 0
	var first error
	var claim atomic.Int64
	var wg sync.WaitGroup
	for range r.o.Client.Concurrency() {
		wg.Go(func() {
			for {
				i := int(claim.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				var u *unit
				var err error
				if !r.st.done[keys[i]] {
					u = &unit{key: keys[i], seed: r.o.Seed, client: r.o.Client}
					err = fetch(ctx, u, i)
				}
				mu.Lock()
				for next != i && first == nil {
					cond.Wait()
				}
				if first == nil && u != nil {
					if err == nil && commit != nil {
						err = commit(u, i)
					}
					if err == nil {
						err = r.st.commit(u)
					}
					if err != nil {
						first = fmt.Errorf("%s: unit %s: %w", r.st.stats.Pipeline, keys[i], err)
						cancel()
					} else if r.o.OnProgress != nil {
						s := r.st.stats.clone()
						s.Elapsed = time.Since(r.start)
						r.o.OnProgress(s)
					}
				}
				next++
				stop := first != nil
				cond.Broadcast()
				mu.Unlock()
				if stop {
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}
