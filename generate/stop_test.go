package generate

import (
	"strings"
	"testing"
)

func TestStopper(t *testing.T) {
	run := func(stops []string, pieces ...string) (string, bool) {
		s := NewStopper(stops)
		var sb strings.Builder
		for _, p := range pieces {
			out, hit := s.Push([]byte(p))
			sb.WriteString(out)
			if hit {
				return sb.String(), true
			}
		}
		sb.WriteString(s.Flush())
		return sb.String(), false
	}
	for _, tc := range []struct {
		stops  []string
		pieces []string
		want   string
		hit    bool
	}{
		{nil, []string{"a", "b"}, "ab", false},
		{[]string{"###"}, []string{"Hi", " #", "#", "# more"}, "Hi ", true},
		{[]string{"###"}, []string{"Hi", " #", "#", " no"}, "Hi ## no", false},
		{[]string{"<|im_end|>", "USER:"}, []string{"ok<|im", "_end|>x"}, "ok", true},
		{[]string{"<|im_end|>", "USER:"}, []string{"a US", "ER:"}, "a ", true},
		{[]string{"\n\n"}, []string{"line\n", "\n"}, "line", true},
		// a character split over byte tokens comes out whole
		{nil, []string{"caf", "\xc3", "\xa9!"}, "café!", false},
		// an invalid byte becomes U+FFFD
		{nil, []string{"a\xff", "b"}, "a\uFFFDb", false},
		{nil, []string{"a", "\xe2\x82"}, "a\uFFFD\uFFFD", false},
	} {
		got, hit := run(tc.stops, tc.pieces...)
		if got != tc.want || hit != tc.hit {
			t.Errorf("stops %q pieces %q: got %q %v, want %q %v", tc.stops, tc.pieces, got, hit, tc.want, tc.hit)
		}
	}
	// nothing is returned that a later piece takes back
	s := NewStopper([]string{"abc"})
	if out, _ := s.Push([]byte("xab")); out != "x" {
		t.Errorf("held back %q", out)
	}
}
