package journal

import (
	"context"
	"encoding/json"
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

// Unit is one unit of work: its requests and what it kept and dropped.
type Unit struct {
	Key      string // stable across runs: the journal knows a unit by it
	seed     int64
	client   *oai.Client
	n        int // requests sent
	requests int
	usage    oai.Usage
	ids      []string
	items    []json.RawMessage
	drops    map[string]int
}

// Chat sends a request with a seed drawn from the run's seed, the unit and
// the request's place in the unit.
func (u *Unit) Chat(ctx context.Context, r oai.Request) (*oai.Response, error) {
	if u.client == nil {
		return nil, fmt.Errorf("unit %s: no endpoint client", u.Key)
	}
	r.Seed = u.NextSeed()
	resp, err := u.client.Chat(ctx, r)
	if resp != nil {
		u.requests++
		u.usage.Add(resp.Usage)
	}
	return resp, err
}

// Keep adds an item; v must marshal to a JSON object holding the id.
func (u *Unit) Keep(id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("item %s: %w", id, err)
	}
	u.ids = append(u.ids, id)
	u.items = append(u.items, b)
	return nil
}

// NextSeed is the seed of the unit's next request: DeriveSeed of the
// run's seed, the unit's key and the request's place in the unit.
func (u *Unit) NextSeed() int64 {
	s := DeriveSeed(u.seed, u.Key, u.n)
	u.n++
	return s
}

// Count adds a request made without Chat (a local model's generation) to
// the unit's counts.
func (u *Unit) Count(usage oai.Usage) {
	u.requests++
	u.usage.Add(usage)
}

// Kept is the number of items kept so far.
func (u *Unit) Kept() int { return len(u.ids) }

// Drop counts an item dropped for reason.
func (u *Unit) Drop(reason string) {
	if u.drops == nil {
		u.drops = map[string]int{}
	}
	u.drops[reason]++
}

// DeriveSeed mixes the run's seed with a key and a counter (FNV-1a): the
// seed of request n of a unit.
func DeriveSeed(seed int64, key string, n int) int64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d\x00%s\x00%d", seed, key, n)
	return int64(h.Sum64() >> 1)
}

// Config says where a Runner writes and how it sends.
type Config struct {
	Client *oai.Client // may be nil when the units do not send requests through Unit.Chat
	// Concurrency is the number of units in flight (default: the client's
	// concurrency, else 1).
	Concurrency int
	Out         string // the output JSON Lines file; its journal is Path(Out)
	Resume      bool
	Seed        int64 // the run's seed: DeriveSeed makes each request's from it
	Header      Header
	// OnProgress is called after each unit is written.
	OnProgress func(Stats)
}

// Runner runs units of work and writes what they keep.
type Runner struct {
	o     Config
	st    *store
	start time.Time
}

// Open opens the output for a new run or, with Resume, for continuing one.
func Open(o Config) (*Runner, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 1
		if o.Client != nil {
			o.Concurrency = o.Client.Concurrency()
		}
	}
	if o.Out == "" {
		return nil, fmt.Errorf("%s: no output file", o.Header.Pipeline)
	}
	st, err := openStore(o.Out, o.Resume, o.Header)
	if err != nil {
		return nil, err
	}
	st.stats.Pipeline = o.Header.Pipeline
	st.stats.Resumed = st.stats.Units
	return &Runner{o: o, st: st, start: time.Now()}, nil
}

// Stats is the live report; a pipeline sets Total and Target on it. It
// may be read inside a commit function.
func (r *Runner) Stats() *Stats { return &r.st.stats }

// Resumed lists the ids of the items a resumed run found, in file order.
func (r *Runner) Resumed() []string { return r.st.order }

// Item returns a resumed item by id.
func (r *Runner) Item(id string) (json.RawMessage, bool) {
	b, ok := r.st.items[id]
	return b, ok
}

// Finish closes the output and returns the report, and err.
func (r *Runner) Finish(err error) (*Stats, error) {
	if cerr := r.st.close(); err == nil {
		err = cerr
	}
	s := r.st.stats.clone()
	s.Elapsed = time.Since(r.start)
	return &s, err
}

// Units runs fetch for every key not done yet, as many at once as the
// client has requests in flight, and commit (which may be nil) followed
// by the write in key order: the file is the same whatever the timing.
// The first error in key order ends the run; the units before it are
// written.
func (r *Runner) Units(ctx context.Context, keys []string, fetch func(context.Context, *Unit, int) error, commit func(*Unit, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	next := 0
	var first error
	var claim atomic.Int64
	var wg sync.WaitGroup
	for range r.o.Concurrency {
		wg.Go(func() {
			for {
				i := int(claim.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				var u *Unit
				var err error
				if !r.st.done[keys[i]] {
					u = &Unit{Key: keys[i], seed: r.o.Seed, client: r.o.Client}
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
