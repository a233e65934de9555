package sft

import (
	"fmt"
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
	rng := rand.New(rand.NewPCG(seed, 0x7157))
	var out []Sample
	bad := 0
	for _, src := range sources {
		ss, b, err := e.LoadAll([]string{src.Path}, skipBad)
		bad += b
		if err != nil {
			return nil, bad, err
		}
		if len(ss) == 0 {
			return nil, bad, fmt.Errorf("sft data %s: no usable samples", src.Path)
		}
		if src.Count == 0 {
			out = append(out, ss...)
			continue
		}
		// whole copies, then a random subset of the rest
		for range src.Count / len(ss) {
			out = append(out, ss...)
		}
		for _, i := range rng.Perm(len(ss))[:src.Count%len(ss)] {
			out = append(out, ss[i])
		}
	}
	return out, bad, nil
}
