package data

import (
	"fmt"
	"path/filepath"
	"testing"
)

// counting builds shards whose token i (across all shards) is start+i, so
// a window's first token says where it was taken from.
func counting(t *testing.T, sizes ...int) []*Shard {
	t.Helper()
	dir := t.TempDir()
	var shards []*Shard
	next := int32(0)
	for i, n := range sizes {
		doc := make([]int32, n)
		for j := range doc {
			doc[j] = next
			next++
		}
		path := filepath.Join(dir, fmt.Sprintf("s%d.bin", i))
		writeShard(t, path, 4, doc)
		s, err := OpenShard(path)
		if err != nil {
			t.Fatal(err)
		}
		shards = append(shards, s)
	}
	return shards
}

func TestLoaderNoShuffleIsTheTokenStream(t *testing.T) {
	// B=2, T=4: a step takes 8 tokens plus one. Shard 0 (30 tokens) holds
	// (30-1)/8 = 3 steps, shard 1 (20 tokens, starting at 30) holds 2.
	l, err := NewLoader(counting(t, 30, 20), 2, 4, LoaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.StepsPerEpoch() != 5 {
		t.Fatalf("%d steps per epoch, want 5", l.StepsPerEpoch())
	}
	dst := make([]int, 2*5)
	for k, start := range []int{0, 8, 16, 30, 38, 0, 8} { // then wraps
		l.Batch(int64(k), dst)
		for r := range 2 {
			for i := range 5 {
				if want := start + r*4 + i; dst[r*5+i] != want {
					t.Fatalf("batch %d row %d token %d = %d, want %d", k, r, i, dst[r*5+i], want)
				}
			}
		}
	}
}

func TestLoaderRanksFollowLLMC(t *testing.T) {
	// Two ranks, B=1, T=4: rank r reads from B·T·r and both advance by 8;
	// (40-1)/8 = 4 steps.
	shards := counting(t, 40)
	seen := map[int]int{}
	for rank := range 2 {
		l, err := NewLoader(shards, 1, 4, LoaderOptions{Rank: rank, Ranks: 2})
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]int, 5)
		for k := range 4 {
			l.Batch(int64(k), dst)
			if want := 8*k + 4*rank; dst[0] != want {
				t.Errorf("rank %d batch %d starts at %d, want %d", rank, k, dst[0], want)
			}
			seen[dst[0]]++
		}
	}
	for s, n := range seen {
		if n != 1 {
			t.Errorf("window at %d read %d times", s, n)
		}
	}
	if _, err := NewLoader(shards, 1, 4, LoaderOptions{Rank: 2, Ranks: 2}); err == nil {
		t.Error("rank 2 of 2 accepted")
	}
	if _, err := NewLoader(shards, 8, 8, LoaderOptions{}); err == nil {
		t.Error("a step larger than the data accepted")
	}
}

func TestLoaderShuffle(t *testing.T) {
	shards := counting(t, 101, 57) // windows of T+1=5 at multiples of 4: 25 + 14 = 39
	const b, tl = 3, 4
	open := func(seed uint64, rank, ranks int) *Loader {
		l, err := NewLoader(shards, b, tl, LoaderOptions{Shuffle: true, Seed: seed, Rank: rank, Ranks: ranks})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open(1, 0, 1)
	per := l.StepsPerEpoch()
	if per != 13 { // 39 windows, 39/3 = 13 steps
		t.Fatalf("%d steps per epoch, want 13", per)
	}
	dst := make([]int, b*(tl+1))
	epoch := func(l *Loader, e int64) map[int]int {
		seen := map[int]int{}
		for k := e * per; k < (e+1)*per; k++ {
			l.Batch(k, dst)
			for r := range b {
				w := dst[r*(tl+1):]
				for i := 1; i < tl+1; i++ {
					if w[i] != w[0]+i {
						t.Fatalf("window %v crosses a shard or is not contiguous", w[:tl+1])
					}
				}
				seen[w[0]]++
			}
		}
		return seen
	}
	e0, e1 := epoch(l, 0), epoch(l, 1)
	for _, e := range []map[int]int{e0, e1} {
		if len(e) != 39 {
			t.Errorf("an epoch visits %d windows, want all 39", len(e))
		}
		for s, n := range e {
			if n != 1 {
				t.Errorf("window at %d visited %d times in an epoch", s, n)
			}
		}
	}
	// deterministic, resumable (a pure function of the step), seed-dependent
	a, c := make([]int, len(dst)), make([]int, len(dst))
	l.Batch(5, a)
	fresh := open(1, 0, 1)
	fresh.Batch(5, c)
	if fmt.Sprint(a) != fmt.Sprint(c) {
		t.Error("batch 5 differs between loaders with the same seed")
	}
	l.Batch(per+5, c)
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Error("epochs 0 and 1 share an order")
	}
	open(2, 0, 1).Batch(5, c)
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Error("seeds 1 and 2 give the same batch")
	}
	// two ranks split each step's windows
	r0, r1 := open(1, 0, 2), open(1, 1, 2)
	if r0.StepsPerEpoch() != 6 { // 39 windows, 6 per step
		t.Fatalf("two ranks: %d steps per epoch, want 6", r0.StepsPerEpoch())
	}
	seen := map[int]bool{}
	for k := range int64(6) {
		for _, rl := range []*Loader{r0, r1} {
			rl.Batch(k, dst)
			for r := range b {
				if seen[dst[r*(tl+1)]] {
					t.Fatalf("window at %d given to both ranks", dst[r*(tl+1)])
				}
				seen[dst[r*(tl+1)]] = true
			}
		}
	}
}
