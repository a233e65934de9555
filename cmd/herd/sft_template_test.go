package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
)

// templateReply renders instruction as a user turn of tmpl with the
// generation prompt and returns the greedy reply (at most max tokens) of
// the model at path ("" for the embedded stories260K) with the adapters
// given applied, its finish reason and the tokens it sampled.
func templateReply(t *testing.T, path string, loras []string, tmpl *chat.Template, instruction string, max int) (string, string, int) {
	t.Helper()
	m, tok, err := checkpoint.Load(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := applyLoRAs(m, loras); err != nil {
		t.Fatal(err)
	}
	r, err := tmpl.Render([]chat.Message{{Role: chat.User, Content: instruction}}, true)
	if err != nil {
		t.Fatal(err)
	}
	sess := (&generate.Generator{Model: m, Tok: tok}).NewSession(0)
	if err := sess.SetTokens(r.Encode(tok).IDs); err != nil {
		t.Fatal(err)
	}
	stop := generate.Stop{IDs: tmpl.StopIDs(tok), Strings: tmpl.Stop}
	text, finish, st, err := sess.Reply(max, generate.NewSampler(generate.SamplerConfig{}), stop, func(string) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return text, finish, st.GenTokens
}

// newInstructions are instructions none of the training data holds.
var newInstructions = []string{
	"Name three colors of the rainbow.",
	"Write a short poem about the sea.",
	"What is the capital of France?",
	"Give me a synonym for happy.",
	"Describe a cat in one sentence.",
	"List two fruits.",
}

// TestSFTAnswersInTemplate: stories260K tuned on the Alpaca demo slice
// through the Vicuna template answers a new instruction, rendered with the
// same template and its generation prompt, with a reply that the
// template's stop (EOS, "</s>") ends before the token budget, never
// running on into a new "USER:" turn; the base model, which never saw
// EOS, writes until the budget runs out.
//
// Settings (seeded; the replies are the same trained on 1 or 2 threads):
// full fine-tuning 40 steps of all 8 examples at learning rate 1e-3;
// LoRA 60 steps at 3e-3 with the token embedding trained beside the
// adapters (--method embed --embed-lora, PEFT's modules_to_save). LoRA alone cannot learn to stop on
// stories260K: its output head is tied to the embedding, and the EOS row
// is the same vector as 168 rows pretraining never used (<unk> and most
// byte pieces, every coordinate within 5e-4), so whatever the adapters do
// to the hidden state, EOS ties with those rows and greedy decoding picks
// one of them (TestStoriesEOSRow). Measured: plain LoRA (q,k,v,o,gate,up,
// down, rank 8 or 32, learning rate 1e-3 to 3e-2, up to 120 steps) puts
// EOS's logit level with the largest at the end of a trained reply, with
// log-probability about -5.4 (spread over the tied rows), and its replies
// to new instructions run to the budget.
func TestSFTAnswersInTemplate(t *testing.T) {
	if testing.Short() {
		t.Skip("fine-tunes stories260K twice (about 20 s)")
	}
	tmpl, err := chat.Lookup("vicuna")
	if err != nil {
		t.Fatal(err)
	}
	const max = 120
	for _, in := range newInstructions {
		text, finish, n := templateReply(t, "", nil, tmpl, in, max)
		if finish == generate.FinishStop {
			t.Errorf("base model, %q: stopped after %d tokens: %q", in, n, text)
		}
	}
	data := "../../sft/testdata/alpaca_en.json"
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"full", []string{"--method", "full", "--steps", "40", "--lr", "1e-3"}},
		{"lora+embed", []string{"--method", "embed", "--embed-tensors", "embed", "--embed-lora", "--steps", "60", "--lr", "3e-3"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, c.name)
			args := append([]string{"sft", "--data", data, "--template", "vicuna", "--batch", "8", "--seed", "1", "--quiet", "-o", out}, c.args...)
			if _, se, err := herd(t, "", args...); err != nil {
				t.Fatalf("%v\n%s", err, se)
			}
			var loras []string
			if c.name != "full" {
				loras = []string{out}
			}
			for _, in := range newInstructions {
				text, finish, n := templateReply(t, filepath.Join(out, "model.gguf"), loras, tmpl, in, max)
				t.Logf("%q → %s after %d tokens: %q", in, finish, n, text)
				if finish != generate.FinishStop || n >= max || text == "" {
					t.Errorf("%q: finish %s after %d tokens (budget %d): %q", in, finish, n, max, text)
				}
				if strings.Contains(text, "USER:") || strings.Contains(text, "ASSISTANT:") {
					t.Errorf("%q: the reply runs on into another turn: %q", in, text)
				}
			}
		})
	}
}

// TestStoriesEOSRow: why LoRA alone cannot teach stories260K to stop — its
// tied embedding's EOS row is, to within 5e-4 in every coordinate, the row
// of more than 160 other tokens that pretraining never used.
func TestStoriesEOSRow(t *testing.T) {
	m, tok, err := checkpoint.Load("", "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Output != m.Embed {
		t.Skip("the output head is not tied to the embedding")
	}
	dim := m.Config.Dim
	eos, row := make([]float32, dim), make([]float32, dim)
	m.Embed.Row(eos, tok.EOS())
	same := 0
	for id := range m.Config.VocabSize {
		m.Embed.Row(row, id)
		d := 0.0
		for j, x := range row {
			d = math.Max(d, math.Abs(float64(x-eos[j])))
		}
		if id != tok.EOS() && d < 5e-4 {
			same++
		}
	}
	if same < 160 {
		t.Errorf("%d rows equal to EOS's, want more than 160", same)
	}
}
