package synth

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// lcsRef is the textbook dynamic programme for the LCS length.
func lcsRef(a, b []int32) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			switch {
			case a[i-1] == b[j-1]:
				cur[j] = prev[j-1] + 1
			case prev[j] >= cur[j-1]:
				cur[j] = prev[j]
			default:
				cur[j] = cur[j-1]
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// rougeRef is the LCS F-measure in float64 as rouge_score computes it.
func rougeRef(a, b []int32) float64 {
	l := lcsRef(a, b)
	if l == 0 {
		return 0
	}
	p := float64(l) / float64(len(a))
	r := float64(l) / float64(len(b))
	return 2 * p * r / (p + r)
}

func randSeq(r *rand.Rand, n, vocab int) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = int32(r.IntN(vocab))
	}
	return s
}

// TestRougeLReference: the bit-parallel LCS equals the dynamic programme
// on random sequences of every length class (one word, several words,
// lengths at word boundaries), small and large vocabularies.
func TestRougeLReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 3000 {
		vocab := []int{2, 5, 30, 1000}[trial%4]
		la := []int{0, 1, 7, 63, 64, 65, 127, 128, 129, 200}[r.IntN(10)]
		if trial%3 == 0 {
			la = r.IntN(40)
		}
		a, b := randSeq(r, la, vocab), randSeq(r, r.IntN(150), vocab)
		if got, want := RougeL(a, b), rougeRef(a, b); got != want {
			t.Fatalf("len %d × %d vocab %d: ROUGE-L %v, reference %v (LCS %d vs %d)", len(a), len(b), vocab, got, want, lcsBits(newPattern(a, nil), b), lcsRef(a, b))
		}
	}
}

// TestRougeIndex: Max over the index equals the best reference score, the
// upto bound limits the scan, and the early stop still reports a score
// above the threshold.
func TestRougeIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	words := strings.Fields("give write explain list the a of three reasons why cats dogs sleep rain code poem story summarise translate")
	sentence := func() string {
		n := 3 + r.IntN(12)
		var s []string
		for range n {
			s = append(s, words[r.IntN(len(words))])
		}
		return strings.Join(s, " ")
	}
	x := NewRougeIndex()
	var kept []string
	for range 2000 {
		s := sentence()
		x.Add(s)
		kept = append(kept, s)
	}
	if got, at := x.Max("Zebras!", 0, -1, 2); got != 0 || at != -1 {
		t.Errorf("no common token: %v at %d", got, at)
	}
	ref := func(q string, n int) float64 {
		enc := NewRougeIndex()
		enc.Add(q)
		best := 0.0
		for _, k := range kept[:n] {
			enc.Add(k)
			best = max(best, rougeRef(enc.seqs[0], enc.seqs[len(enc.seqs)-1]))
		}
		return best
	}
	for range 20 {
		q := "Please " + sentence()
		n := 1 + r.IntN(len(kept))
		got, at := x.Max(q, 0, n, 2)
		if want := ref(q, n); got != want || at >= n {
			t.Fatalf("%q over %d: %v at %d, reference %v", q, n, got, at, want)
		}
		lo := r.IntN(n)
		if got, at := x.Max(q, lo, n, 2); at >= 0 && (at < lo || at >= n) {
			t.Fatalf("range [%d, %d): best at %d (%v)", lo, n, at, got)
		}
		if got, _ := x.Max(kept[5], 0, -1, 0.7); !(got > 0.7) {
			t.Fatalf("early stop reported %v for a kept instruction", got)
		}
	}
}

// TestRougeFilterTiming times the ROUGE-L filter against N kept
// instructions for 52k candidates (Alpaca's size) when HERD_ROUGE_BENCH
// is set; BENCHMARKS.md records the figure.
func TestRougeFilterTiming(t *testing.T) {
	if os.Getenv("HERD_ROUGE_BENCH") == "" {
		t.Skip("set HERD_ROUGE_BENCH=1 to time the filter for 52k items")
	}
	r := rand.New(rand.NewPCG(5, 6))
	vocab := make([]string, 5000)
	for i := range vocab {
		vocab[i] = fmt.Sprintf("w%d", i)
	}
	sentence := func() string {
		n := 5 + r.IntN(25) // Alpaca's instructions: mostly 5-30 words
		var s []string
		for range n {
			// a Zipf-like draw: common words repeat as in English
			s = append(s, vocab[int(float64(len(vocab))*r.Float64()*r.Float64()*r.Float64())])
		}
		return strings.Join(s, " ")
	}
	x := NewRougeIndex()
	start := time.Now()
	dropped := 0
	for x.Len() < 52000 {
		s := sentence()
		if score, _ := x.Max(s, 0, -1, 0.7); score > 0.7 {
			dropped++
			continue
		}
		x.Add(s)
	}
	d := time.Since(start)
	t.Logf("52000 kept (%d dropped) in %v: %.0f candidates/s, %.3g pairs/s", dropped, d, float64(52000+dropped)/d.Seconds(), float64(52000)*52000/2/d.Seconds())
}

func BenchmarkRougeMax(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	x := NewRougeIndex()
	for range 10000 {
		var s []string
		for range 5 + r.IntN(25) {
			s = append(s, fmt.Sprint(r.IntN(3000)))
		}
		x.Add(strings.Join(s, " "))
	}
	q := "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15"
	b.ResetTimer()
	for b.Loop() {
		x.Max(q, 0, -1, 2)
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "pairs/s")
}
