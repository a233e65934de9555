package data

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"
)

// LoaderOptions choose the order of a Loader's windows.
type LoaderOptions struct {
	// Shuffle visits the windows in a random order per epoch (derived from
	// Seed and the epoch); without it batches follow the token stream.
	Shuffle bool
	Seed    uint64
	// Rank and Ranks give data-parallel rank Rank of Ranks a disjoint share
	// of every step's windows; Ranks 0 means 1.
	Rank, Ranks int
}

// Loader yields batches of B windows of T+1 tokens (inputs are a window's
// first T tokens, targets its last T) from memory-mapped shards. Batch k is
// a pure function of k, the shards and the options, so a run is
// deterministic for a seed and resumes from any step.
//
// Without shuffling it follows llm.c's convention: rank r's batch starts at
// token B·T·r of the current position, the position advances by B·T·Ranks a
// step, row b is tokens [p+b·T, p+b·T+T+1), and a shard is left for the next
// one when the next step would not fit in it (so with one rank, batch k is
// the k-th consecutive run of B·T tokens plus one). With shuffling the
// windows are the runs of T+1 tokens starting at multiples of T in each
// shard, permuted per epoch; each step takes B·Ranks of them, B per rank.
// Both wrap around to a new epoch at the end of the data.
type Loader struct {
	shards []*Shard
	b, t   int
	opt    LoaderOptions
	// without shuffle: steps per shard and their running sum
	steps, stepStart []int64
	// with shuffle: windows per shard and their running sum
	wins, winStart []int64
	perEpoch       int64 // windows used per epoch (a multiple of B·Ranks)
	epoch          int64
	perm           []int64
}

// OpenLoader opens the shards of split ("train" or "val") of the prepared
// data directory dir for batches of b windows of t+1 tokens.
func OpenLoader(dir, split string, b, t int, opt LoaderOptions) (*Loader, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	var infos []ShardInfo
	switch split {
	case "train":
		infos = m.Train
	case "val":
		infos = m.Val
	default:
		return nil, fmt.Errorf("data: split %q: want train or val", split)
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("data directory %s has no %s shards", dir, split)
	}
	shards := make([]*Shard, 0, len(infos))
	for _, si := range infos {
		s, err := OpenShard(filepath.Join(dir, si.File))
		if err == nil && s.Count != si.Tokens {
			s.Close()
			err = fmt.Errorf("shard %s holds %d tokens, the manifest says %d", s.Path, s.Count, si.Tokens)
		}
		if err != nil {
			for _, o := range shards {
				o.Close()
			}
			return nil, err
		}
		shards = append(shards, s)
	}
	l, err := NewLoader(shards, b, t, opt)
	if err != nil {
		for _, o := range shards {
			o.Close()
		}
		return nil, fmt.Errorf("data directory %s, %s split: %w", dir, split, err)
	}
	return l, nil
}

// NewLoader makes a loader over open shards (it takes ownership: Close
// closes them).
func NewLoader(shards []*Shard, b, t int, opt LoaderOptions) (*Loader, error) {
	if opt.Ranks == 0 {
		opt.Ranks = 1
	}
	switch {
	case b <= 0 || t <= 0:
		return nil, fmt.Errorf("batch %d × sequence %d: both must be positive", b, t)
	case opt.Ranks < 0 || opt.Rank < 0 || opt.Rank >= opt.Ranks:
		return nil, fmt.Errorf("rank %d of %d", opt.Rank, opt.Ranks)
	}
	l := &Loader{shards: shards, b: b, t: t, opt: opt, epoch: -1}
	stride := int64(b) * int64(t) * int64(opt.Ranks)
	var total int64
	for _, s := range shards {
		if opt.Shuffle {
			n := max(0, (s.Count-1)/int64(t))
			l.winStart = append(l.winStart, total)
			l.wins = append(l.wins, n)
			total += n
		} else {
			n := max(0, (s.Count-1)/stride)
			l.stepStart = append(l.stepStart, total)
			l.steps = append(l.steps, n)
			total += n
		}
	}
	if opt.Shuffle {
		l.perEpoch = total / (int64(b) * int64(opt.Ranks)) * (int64(b) * int64(opt.Ranks))
		total = l.perEpoch
	}
	if total == 0 {
		var n int64
		for _, s := range shards {
			n = max(n, s.Count)
		}
		return nil, fmt.Errorf("no shard holds a full step: %d ranks × %d windows of %d tokens need %d tokens, the largest shard has %d",
			opt.Ranks, b, t+1, stride+1, n)
	}
	return l, nil
}

// BatchSize is the number of windows in a batch.
func (l *Loader) BatchSize() int { return l.b }

// SeqLen is the number of input tokens of a window (it holds one more).
func (l *Loader) SeqLen() int { return l.t }

// StepsPerEpoch is the number of batches before the data repeats.
func (l *Loader) StepsPerEpoch() int64 {
	if l.opt.Shuffle {
		return l.perEpoch / (int64(l.b) * int64(l.opt.Ranks))
	}
	n := len(l.steps)
	return l.stepStart[n-1] + l.steps[n-1]
}

// Batch fills dst (b·(t+1) tokens, row-major) with batch k of this rank.
func (l *Loader) Batch(k int64, dst []int) {
	w := l.t + 1
	dst = dst[:l.b*w]
	if !l.opt.Shuffle {
		k %= l.StepsPerEpoch()
		i := sort.Search(len(l.stepStart), func(i int) bool { return l.stepStart[i] > k }) - 1
		j := k - l.stepStart[i]
		bt := int64(l.b) * int64(l.t)
		p := j*bt*int64(l.opt.Ranks) + bt*int64(l.opt.Rank)
		for r := range l.b {
			l.shards[i].Read(dst[r*w:(r+1)*w], p+int64(r*l.t))
		}
		return
	}
	per := l.StepsPerEpoch()
	l.ensureEpoch(k / per)
	first := (k%per)*int64(l.b)*int64(l.opt.Ranks) + int64(l.opt.Rank)*int64(l.b)
	for r := range l.b {
		win := l.perm[first+int64(r)]
		i := sort.Search(len(l.winStart), func(i int) bool { return l.winStart[i] > win }) - 1
		l.shards[i].Read(dst[r*w:(r+1)*w], (win-l.winStart[i])*int64(l.t))
	}
}

// ensureEpoch builds the window order of epoch e: a permutation of all
// windows from a generator seeded by the seed and the epoch, of which the
// first perEpoch are used.
func (l *Loader) ensureEpoch(e int64) {
	if l.epoch == e {
		return
	}
	n := l.winStart[len(l.winStart)-1] + l.wins[len(l.wins)-1]
	if l.perm == nil {
		l.perm = make([]int64, n)
	}
	for i := range l.perm {
		l.perm[i] = int64(i)
	}
	rng := rand.New(rand.NewPCG(l.opt.Seed, uint64(e)))
	rng.Shuffle(len(l.perm), func(i, j int) { l.perm[i], l.perm[j] = l.perm[j], l.perm[i] })
	l.epoch = e
}

// Tokens is the number of tokens in the loader's shards.
func (l *Loader) Tokens() int64 {
	var n int64
	for _, s := range l.shards {
		n += s.Count
	}
	return n
}

// Close unmaps the shards.
func (l *Loader) Close() error {
	var first error
	for _, s := range l.shards {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
