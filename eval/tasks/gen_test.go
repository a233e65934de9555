package tasks

import (
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/herd-llm/herd/internal/llamaref"
	"github.com/herd-llm/herd/tokenizer"
)

func mustRe(s string) *regexp.Regexp { return regexp.MustCompile(s) }

// TestGSM8KExtraction checks the harness's two GSM8K extractions and its
// exact match on answers worked out by hand from its regular expressions:
// strict takes the number after "#### ", flexible the last number (two or
// more of [$0-9.,], or a run of digits); both sides lose commas, dollar
// signs, everything up to "#### " and a final full stop.
func TestGSM8KExtraction(t *testing.T) {
	g := loadTask(t, "testdata/gsm8k.yaml")
	strict, flex, match := g.Gen.Filters[0], g.Gen.Filters[1], g.Gen.Match
	cases := []struct {
		gen, ref         string
		strict, flex     string
		strictOK, flexOK bool
	}{
		{"She has 2 + 3 = 5 apples.\n#### 5", "#### 5", "5", "5", true, true},
		{" So 3 * 4 = 12 legs.\n#### 12\n\n", "Each cat has 4 legs.\n#### 12", "12", "12", true, true},
		{"It costs $18.", "#### 18", "[invalid]", "$18.", false, true},
		{"#### 1,000 dollars", "x\n#### 1000", "1,000", "1,000", true, true},
		{"The answer is 7 or 8", "#### 7", "[invalid]", "8", false, false},
		{"no numbers here", "#### 3", "[invalid]", "[invalid]", false, false},
		{"#### -3.5\n\nQuestion", "#### -3.5", "-3.5", "-3.5", true, true},
		{"2 + 3 = 5.", "#### 5", "[invalid]", "5.", false, true},
	}
	for _, c := range cases {
		s, f := strict.Apply(c.gen), flex.Apply(c.gen)
		if s != c.strict || f != c.flex {
			t.Errorf("%q: strict %q flexible %q, want %q %q", c.gen, s, f, c.strict, c.flex)
		}
		if ok := match.Equal(s, c.ref); ok != c.strictOK {
			t.Errorf("%q: strict %q against %q: %v, want %v", c.gen, s, c.ref, ok, c.strictOK)
		}
		if ok := match.Equal(f, c.ref); ok != c.flexOK {
			t.Errorf("%q: flexible %q against %q: %v, want %v", c.gen, f, c.ref, ok, c.flexOK)
		}
	}
	m := Match{IgnoreCase: true, IgnorePunct: true}
	if !m.Equal("Hello, World!", "hello world") || m.Equal("hello", "help") {
		t.Error("ignore_case and ignore_punctuation")
	}
	first := Filter{Name: "w", Regex: mustRe(`\w+`), Fallback: "?"}
	if got := first.Apply("  three. four"); got != "three" {
		t.Errorf("a pattern without groups takes the whole match: %q", got)
	}
}

// TestGenerateAgainstReference runs GSM8K and the count task through the
// batched scheduler on stories260K and checks each text against a greedy
// decode with the float64 reference (up to a step where the two best
// tokens are too close to call), each extracted answer against the filter
// applied by hand, and that one-at-a-time generation gives the same texts.
func TestGenerateAgainstReference(t *testing.T) {
	m, tok := stories(t)
	m.KVF32 = true
	ref := llamaref.New(m)
	for spec, shots := range map[string]int{"testdata/gsm8k.yaml": 1, "testdata/count.yaml": 0} {
		tk := loadTask(t, spec)
		tk.Gen.MaxTokens = 20
		rs, err := Run(m, tok, []*Task{tk}, Options{Shots: shots})
		if err != nil {
			t.Fatal(err)
		}
		one, err := Run(m, tok, []*Task{tk}, Options{Shots: shots, OneAtATime: true})
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range rs[0].Samples {
			if o := one[0].Samples[i]; o.Generated != s.Generated {
				t.Errorf("%s %s: batched %q, one at a time %q", spec, s.Source, s.Generated, o.Generated)
			}
			want, sure := refGreedy(ref, tok, tok.Encode(s.Prompt, true, false), 20, tk.Gen.Until)
			if sure && s.Generated != want || !sure && !strings.HasPrefix(s.Generated, want) {
				t.Errorf("%s %s: generated %q, reference %q", spec, s.Source, s.Generated, want)
			}
			for _, f := range tk.Gen.Filters {
				pred := f.Apply(s.Generated)
				if s.Extracted[f.Name] != pred || s.Scores[scoreKey("exact_match", f.Name)] != b2f(tk.Gen.Match.Equal(pred, tk.Docs[s.Doc].Target)) {
					t.Errorf("%s %s filter %s: extracted %q scored %v", spec, s.Source, f.Name, s.Extracted[f.Name], s.Scores)
				}
			}
		}
	}
}

// refGreedy decodes up to n tokens greedily with the reference, cut at the
// first stop string; sure is false when a step's two best logits were
// within 1e-3 (the text is then compared only up to that step).
func refGreedy(ref *llamaref.Model, tok tokenizer.Tokenizer, prompt []int, n int, stops []string) (string, bool) {
	ids := append([]int(nil), prompt...)
	var text []byte
	sure := true
	for range n {
		lg := ref.Logits(ids)
		row := lg[len(lg)-1]
		best, second := 0, -1
		for i, v := range row {
			if v > row[best] {
				best, second = i, best
			} else if i != best && (second < 0 || v > row[second]) {
				second = i
			}
		}
		if math.Abs(row[best]-row[second]) < 1e-3 {
			sure = false
			break
		}
		if best == tok.EOS() {
			break
		}
		text = append(text, tok.DecodePiece(ids[len(ids)-1], best)...)
		ids = append(ids, best)
		for _, st := range stops {
			if i := strings.Index(string(text), st); st != "" && i >= 0 {
				return string(text[:i]), true
			}
		}
	}
	return string(text), sure
}
