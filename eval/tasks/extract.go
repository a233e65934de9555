package tasks

import (
	"regexp"
	"strings"
)

// Filter extracts an answer from a generated text, as the harness's regex
// filter followed by take_first: of all matches of Regex, the one at index
// Group (negative counts from the end); when the pattern has groups, the
// first non-empty group of that match (Python's findall); stripped; or
// Fallback when nothing matches. A filter without a regex keeps the text
// as it is (the harness's "none").
type Filter struct {
	Name     string
	Regex    *regexp.Regexp
	Group    int
	Fallback string
}

// Apply extracts the answer from s.
func (f Filter) Apply(s string) string {
	if f.Regex == nil {
		return s
	}
	ms := f.Regex.FindAllStringSubmatch(s, -1)
	if len(ms) == 0 {
		return f.Fallback
	}
	i := f.Group
	if i < 0 {
		i += len(ms)
	}
	if i < 0 || i >= len(ms) {
		return f.Fallback
	}
	m := ms[i]
	var v string
	switch len(m) {
	case 1:
		v = m[0] // no groups: the whole match
	case 2:
		v = m[1]
	default:
		found := false
		for _, g := range m[1:] {
			if g != "" {
				v, found = g, true
				break
			}
		}
		if !found {
			return f.Fallback
		}
	}
	return pyStrip(v)
}

// Match compares an extracted answer with a reference as the harness's
// exact_match metric does: each pattern of Ignore removed from both, in
// order, then optionally lower case and without ASCII punctuation.
type Match struct {
	Ignore      []*regexp.Regexp
	IgnoreCase  bool
	IgnorePunct bool
}

// normalize applies the match's rules to s.
func (m Match) normalize(s string) string {
	for _, re := range m.Ignore {
		s = re.ReplaceAllLiteralString(s, "")
	}
	if m.IgnoreCase {
		s = strings.ToLower(s)
	}
	if m.IgnorePunct {
		s = strings.Map(func(r rune) rune {
			if r < 128 && strings.ContainsRune(`!"#$%&'()*+,-./:;<=>?@[\]^_{|}~`+"`", r) {
				return -1
			}
			return r
		}, s)
	}
	return s
}

// Equal reports whether pred matches ref.
func (m Match) Equal(pred, ref string) bool { return m.normalize(pred) == m.normalize(ref) }
