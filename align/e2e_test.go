package align

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/sft"
	"github.com/herd-llm/herd/tokenizer"
)

var sentenceEnd = regexp.MustCompile(`[.!?]"? `)

// storyParagraphs are the paragraphs of a TinyStories file with at least
// four sentences, split into sentences.
func storyParagraphs(t *testing.T, name string) [][]string {
	p := filepath.Join("../../shared/data/pretrain", name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Skipf("%s not present (shared data): %v", p, err)
	}
	var out [][]string
	for _, para := range strings.Split(string(b), "\n\n") {
		para = strings.Join(strings.Fields(para), " ")
		var ss []string
		for len(para) > 0 {
			loc := sentenceEnd.FindStringIndex(para)
			if loc == nil {
				ss = append(ss, para)
				break
			}
			ss = append(ss, para[:loc[1]-1])
			para = para[loc[1]:]
		}
		if len(ss) >= 4 {
			out = append(out, ss)
		}
	}
	return out
}

// eosPairs are "ends vs rambles" pairs: the prompt a paragraph's first
// sentence, chosen its next sentence (then the template's EOS), rejected
// the same followed by two sentences of another paragraph.
func eosPairs(ps [][]string, n int, seed uint64) []*Example {
	r := rand.New(rand.NewPCG(seed, 1))
	var out []*Example
	for _, i := range r.Perm(len(ps))[:min(n, len(ps))] {
		j := (i + 1 + r.IntN(len(ps)-1)) % len(ps)
		p := ps[i]
		out = append(out, &Example{Prompt: []chat.Message{{Role: chat.User, Content: p[0]}}, Chosen: p[1],
			Rejected: strings.Join([]string{p[1], ps[j][1], ps[j][2]}, " "), Paired: true, Where: "stories"})
	}
	return out
}

var happySad = regexp.MustCompile(`\b(happy|sad)\b`)

// moodPairs are "happy over sad" pairs: the prompt a sentence of a
// paragraph, chosen the next sentence with its "sad" made "happy",
// rejected the same with "happy" made "sad" (one of the two is the
// story's own sentence).
func moodPairs(ps [][]string, n int, seed uint64) []*Example {
	var out []*Example
	for _, p := range ps {
		for k := 1; k < len(p); k++ {
			if !happySad.MatchString(p[k]) {
				continue
			}
			c := happySad.ReplaceAllString(p[k], "happy")
			r := happySad.ReplaceAllString(p[k], "sad")
			out = append(out, &Example{Prompt: []chat.Message{{Role: chat.User, Content: p[k-1]}}, Chosen: c, Rejected: r, Paired: true, Where: "stories"})
			break
		}
	}
	rand.New(rand.NewPCG(seed, 1)).Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:min(n, len(out))]
}

// greedyMood counts "happy" and "sad" in greedy generations of n tokens
// after each prompt.
func greedyMood(t *testing.T, m *llama.Model, tok tokenizer.Tokenizer, tmpl *chat.Template, exs []*Example, n int) (happy, sad int) {
	var st llama.State
	for _, ex := range exs {
		r, err := tmpl.Render(ex.Prompt, true)
		if err != nil {
			t.Fatal(err)
		}
		ids := r.Encode(tok).IDs
		cache := m.NewKVCache(len(ids) + n)
		logits, err := m.Forward(&st, cache, ids, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		var gen []int
		for k := 0; k < n; k++ {
			next := generate.Argmax(logits)
			if next == tok.EOS() || next == tok.BOS() {
				break
			}
			gen = append(gen, next)
			if logits, err = m.Forward(&st, cache, []int{next}, cache.Len, false); err != nil {
				t.Fatal(err)
			}
		}
		for _, w := range happySad.FindAllString(tok.Decode(gen), -1) {
			if w == "happy" {
				happy++
			} else {
				sad++
			}
		}
	}
	return happy, sad
}

// A learnable preference on real text, end to end on stories260K: reward
// models tell held-out pairs apart well above chance, and DPO with LoRA
// raises the held-out reward margin and shifts greedy generations
// towards the preferred property ("happy" over "sad").
func TestLearnablePreference(t *testing.T) {
	if testing.Short() {
		t.Skip("trains three models (about a minute)")
	}
	trainPs, valPs := storyParagraphs(t, "tinystories_train_head.txt"), storyParagraphs(t, "tinystories_val_head.txt")
	m, tok, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := chat.Lookup("llama-2")
	encode := func(exs []*Example) []Sample {
		enc := &Encoder{Tok: tok, Template: tmpl, MaxLen: 256}
		ss, err := enc.EncodeAll(exs)
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
	sets := []struct {
		name   string
		tr, va []*Example
		minAcc float64
	}{
		{"ends with EOS vs rambles on", eosPairs(trainPs, 600, 1), eosPairs(valPs, 100, 2), 0.8},
		{"happy vs sad", moodPairs(trainPs, 600, 1), moodPairs(valPs, 100, 2), 0.8},
	}
	steps := envInt("ALIGN_E2E_STEPS", 60)
	for _, set := range sets {
		tune := sft.Options{Method: sft.Full, Steps: steps, Batch: 8, LR: 1e-3, Seed: 1, GradClip: 1}
		rm, err := RewardTune(m, encode(set.tr), Options{Tune: tune, Val: encode(set.va)})
		if err != nil {
			t.Fatal(err)
		}
		acc := rm.EndVal.Mean(Accuracy)
		t.Logf("reward model, %s (full, %d steps of 8 of %d pairs): held-out accuracy %.3f on %d pairs (%.3f before), margin %.3f",
			set.name, steps, len(set.tr), acc, rm.EndVal.Count, rm.StartVal.Mean(Accuracy), rm.EndVal.Mean(Margin))
		if acc < set.minAcc {
			t.Errorf("%s: reward model held-out accuracy %.3f, want well above chance (≥ %.2f)", set.name, acc, set.minAcc)
		}
	}
	mood := sets[1]
	prompts := mood.va[:min(60, len(mood.va))]
	h0, s0 := greedyMood(t, m, tok, tmpl, prompts, 48)
	lr, beta := envFloat("ALIGN_E2E_LR", 1e-3), envFloat("ALIGN_E2E_BETA", 0.1)
	tune := sft.Options{Method: sft.LoRA, LoRA: lora.Config{Rank: 8, Alpha: 16, Targets: lora.Modules}, Steps: steps, Batch: 8, LR: lr, Seed: 1, GradClip: 1}
	res, err := DPOTune(m, encode(mood.tr), Options{Tune: tune, Loss: Params{Loss: envStr("ALIGN_E2E_LOSS", Sigmoid), Beta: beta}, Val: encode(mood.va)})
	if err != nil {
		t.Fatal(err)
	}
	h1, s1 := greedyMood(t, res.Model, tok, tmpl, prompts, 48)
	res.Adapters.Detach(res.Model)
	t.Logf("dpo %s (lora r8, β %g, %d steps of 8 pairs, lr %g): held-out margin %.3f → %.3f, accuracy %.3f → %.3f; greedy generations (48 tokens) after %d held-out prompts: base %d happy / %d sad, tuned %d happy / %d sad",
		envStr("ALIGN_E2E_LOSS", Sigmoid), beta, steps, lr, res.StartVal.Mean(RewardsMargin), res.EndVal.Mean(RewardsMargin), res.StartVal.Mean(RewardsAccuracy), res.EndVal.Mean(RewardsAccuracy), len(prompts), h0, s0, h1, s1)
	if res.EndVal.Mean(RewardsMargin) <= res.StartVal.Mean(RewardsMargin)+0.5 {
		t.Errorf("the held-out margin did not rise")
	}
	if h1 <= h0 || s1 > s0 {
		t.Errorf("greedy generations did not move towards happy: base %d/%d, tuned %d/%d", h0, s0, h1, s1)
	}
}

func envInt(k string, d int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return d
}

func envFloat(k string, d float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(k), 64); err == nil {
		return v
	}
	return d
}

func envStr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}
