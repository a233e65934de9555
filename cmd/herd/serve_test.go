package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// herdBinary builds the herd command once for the tests that run it as a
// separate process.
func herdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "herd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// startServer runs `herd serve args...` on a free loopback port and returns
// its base URL once /health answers.
func startServer(t *testing.T, args ...string) string {
	t.Helper()
	bin := herdBinary(t)
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		found := false
		for sc.Scan() {
			line := sc.Text()
			if _, rest, ok := strings.Cut(line, "listening on "); ok && !found {
				found = true
				addr <- strings.TrimSuffix(strings.Fields(rest)[0], ";")
			}
		}
		if !found {
			close(addr)
		}
	}()
	var base string
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatal("herd serve exited before listening")
		}
		base = a
	case <-time.After(60 * time.Second):
		t.Fatal("herd serve did not start")
	}
	for i := 0; ; i++ {
		r, err := http.Get(base + "/health")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return base
			}
		}
		if i > 100 {
			t.Fatalf("/health: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServeOpenAIClient drives a real herd serve process with the official
// OpenAI Go client: models, chat completions (streamed and not),
// completions, embeddings and errors, for stories260K and a 32000-token
// GGUF model with the Llama-2 template.
func TestServeOpenAIClient(t *testing.T) {
	const key = "test-key-123"
	base := startServer(t, "--api-key", key, "--parallel", "4", "--tokenizer", assetTok,
		assetModel+"=stories", tinyRandom+"=tiny")
	client := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
	ctx := context.Background()

	models, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range models.Data {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "stories,tiny" {
		t.Errorf("models %v", ids)
	}

	params := openai.ChatCompletionNewParams{
		Model:       "stories",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Once upon a time")},
		MaxTokens:   openai.Int(40),
		Temperature: openai.Float(0),
	}
	cc, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(cc.Choices) != 1 || cc.Choices[0].Message.Content == "" || cc.Choices[0].FinishReason != "length" ||
		cc.Usage.CompletionTokens != 40 || cc.Usage.PromptTokens == 0 || cc.Object != "chat.completion" {
		t.Errorf("chat completion %+v", cc)
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got := acc.Choices[0].Message.Content; got != cc.Choices[0].Message.Content {
		t.Errorf("streamed %q, non-streamed %q", got, cc.Choices[0].Message.Content)
	}
	if chunks < 10 || acc.Usage.CompletionTokens != 40 || acc.Choices[0].FinishReason != "length" {
		t.Errorf("%d chunks, usage %+v, finish %q", chunks, acc.Usage, acc.Choices[0].FinishReason)
	}

	// logprobs and a stop sequence
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{}
	params.Logprobs = openai.Bool(true)
	params.TopLogprobs = openai.Int(2)
	params.Stop = openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("Lily")}
	lp, err := client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	full := cc.Choices[0].Message.Content
	if i := strings.Index(full, "Lily"); i < 0 || lp.Choices[0].Message.Content != full[:i] || lp.Choices[0].FinishReason != "stop" {
		t.Errorf("stop at Lily: %q (%s) from %q", lp.Choices[0].Message.Content, lp.Choices[0].FinishReason, full)
	}
	for _, c := range lp.Choices[0].Logprobs.Content {
		if len(c.TopLogprobs) != 2 || c.Logprob > 0 || c.Logprob != c.TopLogprobs[0].Logprob {
			t.Errorf("logprob %+v", c)
		}
	}

	// completions
	cp, err := client.Completions.New(ctx, openai.CompletionNewParams{
		Model: "stories", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(20), Temperature: openai.Float(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cp.Choices[0].Text, ",") || cp.Usage.CompletionTokens != 20 {
		t.Errorf("completion %q, usage %+v", cp.Choices[0].Text, cp.Usage)
	}
	cs := client.Completions.NewStreaming(ctx, openai.CompletionNewParams{
		Model: "stories", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
		MaxTokens: openai.Int(20), Temperature: openai.Float(0),
	})
	var text strings.Builder
	for cs.Next() {
		if ch := cs.Current().Choices; len(ch) > 0 {
			text.WriteString(ch[0].Text)
		}
	}
	if err := cs.Err(); err != nil || text.String() != cp.Choices[0].Text {
		t.Errorf("streamed completion %q (%v), want %q", text.String(), err, cp.Choices[0].Text)
	}

	// embeddings: 64 floats of unit length
	emb, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "stories", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a cat", "a dog"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Data) != 2 || len(emb.Data[0].Embedding) != 64 {
		t.Fatalf("embeddings %d × %d", len(emb.Data), len(emb.Data[0].Embedding))
	}
	var n float64
	for _, v := range emb.Data[1].Embedding {
		n += v * v
	}
	if math.Abs(n-1) > 1e-4 || emb.Usage.PromptTokens == 0 {
		t.Errorf("norm² %g, usage %+v", n, emb.Usage)
	}
	b64, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "stories", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("a dog")},
		EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range b64.Data[0].Embedding {
		if math.Abs(v-emb.Data[1].Embedding[i]) > 1e-6 {
			t.Fatalf("base64 embedding differs at %d", i)
		}
	}

	// the 32000-token model through the Llama-2 template
	tbase := startServer(t, "--template", "llama-2", tinyRandom+"=tiny")
	tclient := openai.NewClient(option.WithBaseURL(tbase+"/v1/"), option.WithMaxRetries(0))
	tiny, err := tclient.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "tiny",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Hello!"),
			openai.AssistantMessage("Hi!"), openai.UserMessage("How are you?")},
		MaxTokens: openai.Int(12), Seed: openai.Int(7),
	})
	if err != nil {
		t.Fatal(err)
	}
	// BOS [INST] <<SYS>>… [/INST] Hi! </s> BOS [INST] How are you? [/INST]: about 40 tokens
	if tiny.Usage.CompletionTokens == 0 || tiny.Usage.PromptTokens < 30 {
		t.Errorf("tiny: usage %+v", tiny.Usage)
	}

	// errors arrive in OpenAI's shape with the right status
	var apiErr *openai.Error
	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "nope", Messages: params.Messages})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || !strings.Contains(apiErr.Message, "nope") {
		t.Errorf("unknown model: %v", err)
	}
	long := strings.Repeat("cat and dog ", 400)
	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "stories", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(long)}})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || !strings.Contains(apiErr.Message, "512") {
		t.Errorf("a prompt longer than the context: %v", err)
	}
	bad := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("wrong"), option.WithMaxRetries(0))
	if _, err := bad.Models.List(ctx); !errors.As(err, &apiErr) || apiErr.StatusCode != 401 {
		t.Errorf("wrong key: %v", err)
	}
}

// TestServeConcurrentClients checks continuous batching from outside: many
// concurrent streams at temperature 0 each equal the same request alone.
func TestServeConcurrentClients(t *testing.T) {
	base := startServer(t, "--parallel", "4")
	client := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithMaxRetries(0))
	ctx := context.Background()
	prompts := []string{"Once upon a time", "Tom and Lily", "The cat", "One day", "A big dog", "The sun"}
	req := func(i int) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{Model: "stories260K", MaxTokens: openai.Int(int64(30 + 5*i)), Temperature: openai.Float(0),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompts[i%len(prompts)])}}
	}
	const n = 10
	alone := make([]string, n)
	for i := range alone {
		r, err := client.Chat.Completions.New(ctx, req(i))
		if err != nil {
			t.Fatal(err)
		}
		alone[i] = r.Choices[0].Message.Content
	}
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := client.Chat.Completions.NewStreaming(ctx, req(i))
			var acc openai.ChatCompletionAccumulator
			for s.Next() {
				acc.AddChunk(s.Current())
			}
			if err := s.Err(); err != nil {
				t.Error(err)
				return
			}
			got[i] = acc.Choices[0].Message.Content
		}()
	}
	wg.Wait()
	for i := range got {
		if got[i] != alone[i] {
			t.Errorf("request %d: concurrent %q, alone %q", i, got[i], alone[i])
		}
	}
}

// TestWebChat drives the embedded page in headless Chromium: it lists the
// models, streams a reply, stops a long one, keeps the conversation, and
// saves a screenshot.
func TestWebChat(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no browser test")
	}
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("no /usr/bin/chromium (apt-get install chromium): the web chat is not tested in a browser")
	}
	base := startServer(t, "--parallel", "2", "--tokenizer", assetTok, assetModel+"=stories260K", tinyRandom+"=tiny")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 760),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	poll := func(expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			t.Fatalf("waiting for %s: %v", expr, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	poll(`document.querySelectorAll("#model option").length === 2`)
	if m := eval(`document.getElementById("model").value`); m != "stories260K" {
		t.Errorf("model picker shows %q", m)
	}
	// a streamed reply
	if err := chromedp.Do(ctx, chromedp.SetValue("#max", "40"), chromedp.SetValue("#temp", "0"),
		chromedp.SendKeys("#input", "Once upon a time"), chromedp.Click("#send")); err != nil {
		t.Fatal(err)
	}
	poll(`conversation.length === 2 && !document.querySelector(".streaming")`)
	reply := eval(`conversation[1].content`)
	if shown := eval(`document.querySelectorAll(".assistant")[0].textContent`); reply == "" || shown != reply {
		t.Errorf("reply %q, shown %q", reply, shown)
	}
	// the same request through the API gives the same text
	body := `{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":40,"temperature":0}`
	r, err := http.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(b), fmt.Sprintf("%q", reply)[1:len(fmt.Sprintf("%q", reply))-1]) {
		t.Errorf("the page's reply %q is not the API's %s", reply, b)
	}
	// a long reply from the random 32000-token model (which seldom ends
	// its turn), stopped while it streams
	if err := chromedp.Do(ctx, chromedp.SetValue("#model", "tiny"), chromedp.SetValue("#max", "1000"), chromedp.SetValue("#temp", "1"),
		chromedp.SendKeys("#input", "Tell me a long story"), chromedp.Click("#send")); err != nil {
		t.Fatal(err)
	}
	// stop once text has streamed (or at once, if the reply is already over)
	chromedp.Run(ctx, chromedp.Poll[bool](`!document.querySelector(".streaming") || document.querySelector(".streaming").textContent.length > 0`,
		chromedp.WithPollingInterval(2*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	// check and click in one script, so the stream cannot end in between
	streaming, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const s = !!document.querySelector(".streaming"); document.getElementById("stop").click(); return s; })()`))
	if err != nil {
		t.Fatal(err)
	}
	poll(`!document.querySelector(".streaming") && conversation.length === 4`)
	if s := eval(`document.getElementById("stats").textContent`); streaming && s != "stopped" {
		t.Errorf("after stop the status says %q", s)
	} else if !streaming {
		t.Logf("the reply ended before the stop button was pressed (%q)", s)
	}
	if n := eval(`String(conversation[3].content.length)`); n == "0" {
		t.Log("the reply was stopped before its first token")
	}
	// the server freed the slot
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if strings.Contains(string(m), `herd_active_sequences{model="tiny"} 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stopped stream still holds a slot:\n%s", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// a third turn carries the whole conversation
	if err := chromedp.Do(ctx, chromedp.SetValue("#model", "stories260K"), chromedp.SetValue("#max", "20"), chromedp.SendKeys("#input", "The end"), chromedp.Click("#send")); err != nil {
		t.Fatal(err)
	}
	poll(`conversation.length === 6 && !document.querySelector(".streaming")`)
	if n := eval(`String(document.querySelectorAll(".msg.user").length)`); n != "3" {
		t.Errorf("%s user messages shown", n)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "webchat.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	if dst := os.Getenv("HERD_WEBCHAT_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChatTemplates runs herd chat through chat templates: the Llama-2
// format with a system prompt on the 32000-token model, and errors.
func TestChatTemplates(t *testing.T) {
	out, _, err := herd(t, "Hello!\nHow are you?\n", "chat", tinyRandom, "--template", "llama-2", "--system", "Be brief.", "-n", "8", "--seed", "1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "> ") != 3 {
		t.Errorf("transcript %q: want three prompts", out)
	}
	if _, _, err := herd(t, "hi\n", "chat", "--template", "nope"); err == nil || !strings.Contains(err.Error(), "vicuna") {
		t.Errorf("unknown template: %v", err)
	}
	// a Hugging Face tokenizer_config.json's template (Llama-3's, whose
	// <|eot_id|> stop string this vocabulary spells as text)
	if out, _, err := herd(t, "Hello!\n", "chat", tinyRandom, "--template", "../../chat/testdata/tokenizer_config.json", "-n", "4"); err != nil || strings.Count(out, "> ") != 2 {
		t.Errorf("tokenizer_config.json template: %q %v", out, err)
	}
	// without a model template or --template, messages are joined as text
	raw, _, _ := herd(t, "Once upon a time\n", "chat", "--temp", "0", "-n", "30")
	if !strings.HasPrefix(raw, "> ") || len(raw) < 20 {
		t.Errorf("raw chat %q", raw)
	}
}
