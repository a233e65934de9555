package sft

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Source is one dataset of a mixture (TÜLU's recipe): a file and how many
// of its samples to take; Count 0 takes all, fewer than it has samples a
// random subset, more repeats them (upsampling).
type Source struct {
	Path  string
	Count int
}

// ParseSources reads FILE[:COUNT],… as the --data flag gives it.
func ParseSources(spec string) ([]Source, error) {
	var out []Source
	for _, s := range strings.Split(spec, ",") {
		src := Source{Path: s}
		if i := strings.LastIndexByte(s, ':'); i > 0 {
			if n, err := strconv.Atoi(s[i+1:]); err == nil {
				if n <= 0 {
					return nil, fmt.Errorf("sft data %q: count %d must be positive", s, n)
				}
				src = Source{Path: s[:i], Count: n}
			}
		}
		if src.Path == "" {
			return nil, fmt.Errorf("sft data: empty file name in %q", spec)
		}
		out = append(out, src)
	}
	return out, nil
}

// Mix loads every source and takes its share of samples (see Source),
// drawn with seed; the result is in source order. It also returns the
// malformed rows skipped (with skipBad).
func (e *Encoder) Mix(sources []Source, skipBad bool, seed uint64) ([]Sample, int, error) {
	train, _, bad, err := e.MixSplit(sources, skipBad, seed, 0)
	return train, bad, err
}

// MixSplit is Mix that first holds out the fraction holdOut (0 ≤ holdOut
// < 1) of every source's examples as validation samples: examples chosen
// with seed, every sample of an example (the windows of a split one) on
// the same side, each held-out example once and in file order. The
// fraction is rounded to whole examples, at least one of every source of
// two or more, and every source keeps at least one to train on. The shares of the
// mixture are then drawn from the examples left, so no example is both
// trained on and validated on. Stats.Held and Stats.HeldSamples count
// what was held out.
func (e *Encoder) MixSplit(sources []Source, skipBad bool, seed uint64, holdOut float64) (train, val []Sample, bad int, err error) {
	if !(holdOut >= 0 && holdOut < 1) {
		return nil, nil, 0, fmt.Errorf("sft: validation split %g: want a fraction in [0, 1)", holdOut)
	}
	rng := rand.New(rand.NewPCG(seed, 0x7157))
	split := rand.New(rand.NewPCG(seed, 0x7a1))
	for _, src := range sources {
		exs, b, err := e.loadFile(src.Path, skipBad)
		bad += b
		if err != nil {
			return nil, nil, bad, err
		}
		if holdOut > 0 && len(exs) > 1 {
			held := make([]bool, len(exs))
			k := min(len(exs)-1, max(1, int(math.Round(holdOut*float64(len(exs))))))
			for _, i := range split.Perm(len(exs))[:k] {
				held[i] = true
			}
			kept := exs[:0]
			for i, ss := range exs {
				if !held[i] {
					kept = append(kept, ss)
					continue
				}
				val = append(val, ss...)
				e.Stats.Held++
				e.Stats.HeldSamples += len(ss)
			}
			exs = kept
		}
		var ss []Sample
		for _, x := range exs {
			ss = append(ss, x...)
		}
		if len(ss) == 0 {
			return nil, nil, bad, fmt.Errorf("sft data %s: no usable samples", src.Path)
		}
		if src.Count == 0 {
			train = append(train, ss...)
			continue
		}
		// whole copies, then a random subset of the rest
		for range src.Count / len(ss) {
			train = append(train, ss...)
		}
		for _, i := range rng.Perm(len(ss))[:src.Count%len(ss)] {
			train = append(train, ss[i])
		}
	}
	if holdOut > 0 && len(val) == 0 {
		return nil, nil, bad, fmt.Errorf("sft: a validation split of %g holds out no example (every source has a single one): give validation data", holdOut)
	}
	return train, val, bad, nil
}
