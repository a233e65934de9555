package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/lora"
	"github.com/herd-llm/herd/serve"
)

// TestLoRAServeChatEqualMerged: herd serve --lora ADAPTER:SCALE answers a
// greedy completion with the text and the per-token log-probabilities of
// the model herd merge writes from the same adapter and scale (within
// 1e-4: the adapter's branch and the merged weight round differently),
// for the adapter in llama.cpp's GGUF layout and in PEFT's; herd chat
// --lora and herd run --lora write the merged model's text; all of them
// differ from the base.
func TestLoRAServeChatEqualMerged(t *testing.T) {
	dir := t.TempDir()
	m, _, err := checkpoint.Default()
	if err != nil {
		t.Fatal(err)
	}
	set, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: lora.Modules}, 3)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, a := range set.Adapters { // as if trained: B away from zero
		for i := range a.B {
			a.B[i] = float32(rng.NormFloat64() * 0.05)
		}
	}
	ggufAdapter, peftAdapter := filepath.Join(dir, "adapter.gguf"), filepath.Join(dir, "peft")
	if err := lora.SaveGGUF(ggufAdapter, set); err != nil {
		t.Fatal(err)
	}
	if err := lora.SavePEFT(peftAdapter, set, m.Config, ""); err != nil {
		t.Fatal(err)
	}
	merged := filepath.Join(dir, "merged.gguf")
	if _, se, err := herd(t, "", "merge", "", "--lora", ggufAdapter+":0.7", "-o", merged); err != nil {
		t.Fatalf("merge: %v\n%s", err, se)
	}

	type completion struct {
		text     string
		logprobs []float64
	}
	complete := func(path string, loras ...string) completion {
		t.Helper()
		sm, err := loadServed(path, "", "", loras, generate.SchedulerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer sm.Model.Close()
		defer sm.Sched.Close()
		srv, err := serve.New(serve.Config{}, sm)
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv)
		defer hs.Close()
		body := `{"model": "` + sm.Name + `", "prompt": "Once upon a time", "max_tokens": 40, "temperature": 0, "logprobs": 1}`
		resp, err := http.Post(hs.URL+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Choices []struct {
				Text     string `json:"text"`
				Logprobs struct {
					TokenLogprobs []float64 `json:"token_logprobs"`
				} `json:"logprobs"`
			} `json:"choices"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK || len(r.Choices) != 1 {
			t.Fatalf("status %d, %+v, %v", resp.StatusCode, r, err)
		}
		return completion{r.Choices[0].Text, r.Choices[0].Logprobs.TokenLogprobs}
	}
	base, want := complete(""), complete(merged)
	if base.text == want.text {
		t.Fatal("the adapter does not change the greedy text")
	}
	for _, adapter := range []string{ggufAdapter + ":0.7", peftAdapter + ":0.7"} {
		got := complete("", adapter)
		if got.text != want.text {
			t.Errorf("--lora %s serves %q, the merged model %q", adapter, got.text, want.text)
		}
		if len(got.logprobs) != len(want.logprobs) || len(got.logprobs) == 0 {
			t.Fatalf("--lora %s: %d log-probabilities, the merged model %d", adapter, len(got.logprobs), len(want.logprobs))
		}
		for i, lp := range got.logprobs {
			if math.Abs(lp-want.logprobs[i]) > 1e-4*max(1, math.Abs(want.logprobs[i])) {
				t.Errorf("--lora %s: token %d: log-probability %.6f, the merged model %.6f", adapter, i, lp, want.logprobs[i])
			}
		}
	}

	// herd chat and herd run
	for _, args := range [][]string{{"chat", "-n", "24", "--temp", "0"}, {"run", "-n", "40", "--temp", "0"}} {
		stdin := ""
		if args[0] == "chat" {
			stdin = "Tell me a story\nAnd then?\n"
		}
		plain, _, err := herd(t, stdin, args...)
		if err != nil {
			t.Fatal(err)
		}
		adapted, _, err := herd(t, stdin, append(args, "--lora", ggufAdapter+":0.7")...)
		if err != nil {
			t.Fatal(err)
		}
		mergedOut, _, err := herd(t, stdin, append([]string{args[0], merged}, args[1:]...)...)
		if err != nil {
			t.Fatal(err)
		}
		if adapted != mergedOut || adapted == plain {
			t.Errorf("herd %s: --lora writes %q, the merged model %q, the base %q", args[0], adapted, mergedOut, plain)
		}
	}
}
