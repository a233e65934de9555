package generate

import (
	"strings"
	"unicode/utf8"
)

// Stopper cuts a stream of generated text at the first of its stop strings.
// Text that may be the beginning of a stop string is held back until the
// next piece decides, and so is an incomplete UTF-8 character (a byte-fallback
// token may carry one byte of it), so what Push returns is always whole,
// valid UTF-8 that will never be taken back.
type Stopper struct {
	stops   []string
	pending []byte
}

// NewStopper watches for stops (empty strings are ignored).
func NewStopper(stops []string) *Stopper {
	s := &Stopper{}
	for _, x := range stops {
		if x != "" {
			s.stops = append(s.stops, x)
		}
	}
	return s
}

// Push adds the bytes of one token. It returns the text that can be shown
// now and whether a stop string was reached, in which case the text ends
// right before it and the stream is over.
func (s *Stopper) Push(p []byte) (string, bool) {
	s.pending = append(s.pending, p...)
	cut := -1
	for _, x := range s.stops {
		if i := strings.Index(string(s.pending), x); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		out := valid(s.pending[:cut])
		s.pending = s.pending[:0]
		return out, true
	}
	// hold back the longest tail that begins a stop string
	keep := 0
	for _, x := range s.stops {
		for n := min(len(x)-1, len(s.pending)); n > keep; n-- {
			if strings.HasPrefix(x, string(s.pending[len(s.pending)-n:])) {
				keep = n
				break
			}
		}
	}
	// and an unfinished character
	safe := len(s.pending) - keep
	safe -= partialRune(s.pending[:safe])
	out := valid(s.pending[:safe])
	s.pending = append(s.pending[:0], s.pending[safe:]...)
	return out, false
}

// Flush returns the text held back when the stream ends without a stop string.
func (s *Stopper) Flush() string {
	out := valid(s.pending)
	s.pending = s.pending[:0]
	return out
}

// partialRune is the length of an incomplete but possibly valid UTF-8
// character at the end of b.
func partialRune(b []byte) int {
	for n := 1; n <= min(3, len(b)); n++ {
		c := b[len(b)-n]
		if c < 0x80 {
			return 0
		}
		if utf8.RuneStart(c) {
			if !utf8.FullRune(b[len(b)-n:]) {
				return n
			}
			return 0
		}
	}
	return 0
}

// valid returns b as a string with each byte that does not form a
// character replaced by U+FFFD, as the tokenizer's Decode does.
func valid(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			sb.WriteString("\uFFFD")
		} else {
			sb.Write(b[:n])
		}
		b = b[n:]
	}
	return sb.String()
}
