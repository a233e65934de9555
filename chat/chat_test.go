package chat

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
	"github.com/herd-llm/herd/internal/testutil"
	"github.com/herd-llm/herd/tokenizer"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The conversation of FastChat's own example (conversation.py __main__).
var shapes = []struct {
	name string
	msgs []Message
}{
	{"user", []Message{{User, "Hello!"}}},
	{"user-assistant-user", []Message{{User, "Hello!"}, {Assistant, "Hi!"}, {User, "How are you?"}}},
	{"system-user-assistant-user", []Message{{System, "You are a helpful, respectful and honest assistant."}, {User, "Hello!"}, {Assistant, "Hi!"}, {User, "How are you?"}}},
}

func TestGolden(t *testing.T) {
	for _, name := range Names() {
		tp, _ := Lookup(name)
		for _, sh := range shapes {
			r, err := tp.Render(sh.msgs, true)
			if err != nil {
				t.Fatalf("%s %s: %v", name, sh.name, err)
			}
			path := filepath.Join("testdata", "golden", name, sh.name+".txt")
			if *update {
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, []byte(r.Text()), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./chat -update to write it)", err)
			}
			if got := r.Text(); got != string(want) {
				t.Errorf("%s %s:\n got %q\nwant %q", name, sh.name, got, want)
			}
		}
	}
}

// TestOrigins spells out a few renderings by hand from the origins' code.
func TestOrigins(t *testing.T) {
	sh := shapes[2].msgs
	for _, tc := range []struct{ name, want string }{
		// FastChat prints this for its own __main__ example
		{"vicuna", "You are a helpful, respectful and honest assistant. USER: Hello! ASSISTANT: Hi!</s>USER: How are you? ASSISTANT:"},
		{"llama-2", "[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant.\n<</SYS>>\n\nHello! [/INST] Hi! </s><s>[INST] How are you? [/INST]"},
		{"llama-3", "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful, respectful and honest assistant.<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi!<|eot_id|>" +
			"<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"chatml", "<|im_start|>system\nYou are a helpful, respectful and honest assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n" +
			"<|im_start|>assistant\nHi!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n"},
		{"alpaca", "You are a helpful, respectful and honest assistant.\n\n### Instruction: Hello!\n\n### Response: Hi!</s>### Instruction: How are you?\n\n### Response:"},
		{"baichuan", "You are a helpful, respectful and honest assistant.<reserved_102>Hello!<reserved_103>Hi!<reserved_102>How are you?<reserved_103>"},
		{"metharme", "<|system|>You are a helpful, respectful and honest assistant.<|user|>Hello!<|model|>Hi!<|user|>How are you?<|model|>"},
	} {
		tp, err := Lookup(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		r, err := tp.Render(sh, true)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Text(); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func tok512(t *testing.T) *tokenizer.SPM { return testutil.Tok512(t) }

func llamaVocab(t *testing.T) *tokenizer.SPM {
	t.Helper()
	tok, err := checkpoint.LoadSPM("../format/gguf/testdata/llama-2-tiny-random.gguf", 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// withSpecials adds control pieces to a vocabulary, as Llama-3 or ChatML
// vocabularies have them.
func withSpecials(t *testing.T, base *tokenizer.SPM, specials ...string) *tokenizer.SPM {
	t.Helper()
	n := base.VocabSize()
	var ps []string
	var sc []float32
	var ty []tokenizer.Type
	for i := 0; i < n; i++ {
		ps, sc, ty = append(ps, base.Piece(i)), append(sc, base.Score(i)), append(ty, base.Type(i))
	}
	for _, s := range specials {
		ps, sc, ty = append(ps, s), append(sc, 0), append(ty, tokenizer.TypeControl)
	}
	tok, err := tokenizer.NewSPM(ps, sc, ty, base.Options())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var longConv = []Message{
	{System, "Answer briefly."},
	{User, "Hello!"},
	{Assistant, "Hi! How can I help?"},
	{User, "Tell me a story about a cat."},
	{Assistant, "Once upon a time, a cat named Tom sat in the sun.\nThe end."},
	{User, "Thanks, bye"},
	{Assistant, "Bye!"},
}

// TestSpans checks that the learned spans decode to exactly the assistant
// messages, for every template and vocabulary, and that the end-of-turn
// tokens follow each.
func TestSpans(t *testing.T) {
	toks := map[string]*tokenizer.SPM{"tok512": tok512(t), "llama": llamaVocab(t)}
	toks["llama+specials"] = withSpecials(t, toks["llama"], "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<reserved_102>", "<reserved_103>")
	for _, name := range Names() {
		tp, _ := Lookup(name)
		for tn, tok := range toks {
			r, err := tp.Render(longConv, false)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			e := r.Encode(tok)
			var asst []int
			for i, m := range longConv {
				if m.Role == Assistant {
					asst = append(asst, i)
				}
			}
			if len(e.Spans) != len(asst) {
				t.Fatalf("%s/%s: %d spans for %d assistant messages", name, tn, len(e.Spans), len(asst))
			}
			prevEnd := 0
			for k, s := range e.Spans {
				if s.Msg != asst[k] || s.Start < prevEnd || s.Start > s.Stop || s.Stop > s.End || s.End > len(e.IDs) {
					t.Fatalf("%s/%s: bad span %+v", name, tn, s)
				}
				prevEnd = s.End
				if got, want := tok.Decode(e.IDs[s.Start:s.Stop]), longConv[s.Msg].Content; got != want {
					t.Errorf("%s/%s: span of message %d decodes to %q, want %q", name, tn, s.Msg, got, want)
				}
			}
			// the encoding of the whole is the encoding of a generation prompt plus the answer
			if len(e.IDs) == 0 || (r.BOS && e.IDs[0] != tok.BOS()) {
				t.Errorf("%s/%s: BOS missing", name, tn)
			}
		}
	}
}

// TestEndOfTurn checks the learned end-of-turn tokens.
func TestEndOfTurn(t *testing.T) {
	llama := llamaVocab(t)
	spec := withSpecials(t, llama, "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>")
	conv := []Message{{User, "Hello!"}, {Assistant, "Hi!"}}
	for _, tc := range []struct {
		name string
		tok  *tokenizer.SPM
		want []int
	}{
		{"vicuna", llama, []int{llama.EOS()}},
		{"alpaca", llama, []int{llama.EOS()}},
		{"llama-2", llama, []int{llama.PieceID("▁"), llama.EOS()}},
		{"llama-3", spec, []int{spec.PieceID("<|eot_id|>")}},
		{"chatml", spec, []int{spec.PieceID("<|im_end|>")}},
		{"metharme", llama, nil},
	} {
		tp, _ := Lookup(tc.name)
		r, err := tp.Render(conv, false)
		if err != nil {
			t.Fatal(err)
		}
		e := r.Encode(tc.tok)
		s := e.Spans[0]
		if got := e.IDs[s.Stop:s.End]; !slices.Equal(got, tc.want) {
			t.Errorf("%s: end of turn %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestLlama2Tokens checks Meta's token layout: BOS … EOS around every
// exchange, text between encoded as SentencePiece encodes it.
func TestLlama2Tokens(t *testing.T) {
	tok := llamaVocab(t)
	tp, _ := Lookup("llama-2")
	r, err := tp.Render(shapes[1].msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Encode(tok).IDs
	// Meta: encode(f"[INST] {u} [/INST] {a} ", bos, eos) + encode(f"[INST] {u2} [/INST]", bos)
	want := tok.Encode("[INST] Hello! [/INST] Hi! ", true, true)
	want = append(want, tok.Encode("[INST] How are you? [/INST]", true, false)...)
	if !slices.Equal(got, want) {
		t.Errorf("llama-2 tokens\n got %v\nwant %v", got, want)
	}
	// vicuna: the whole prompt as SentencePiece encodes its text, EOS for </s>
	tp, _ = Lookup("vicuna")
	r, _ = tp.Render(shapes[1].msgs, true)
	got = r.Encode(tok).IDs
	text := strings.SplitN(r.Text(), "</s>", 2)
	want = tok.Encode(text[0], true, false)
	want = append(want, tok.EOS())
	want = append(want, tok.Encode(text[1], false, false)...)
	if !slices.Equal(got, want) {
		t.Errorf("vicuna tokens\n got %v\nwant %v", got, want)
	}
}

// The Llama-3 and ChatML chat templates as their models ship them
// (Meta-Llama-3-8B-Instruct's and the Hugging Face chatml template).
const (
	llama3Jinja = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
	chatmlJinja = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

// TestJinjaMatchesBuiltin renders the shipped Jinja templates with the Go
// Jinja engine and compares text, tokens and spans with the built-in ones.
func TestJinjaMatchesBuiltin(t *testing.T) {
	llama := llamaVocab(t)
	specials := []string{"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>"}
	tok := withSpecials(t, llama, specials...)
	for _, tc := range []struct {
		builtin, src string
		v            Vocab
	}{
		{"llama-3", llama3Jinja, Vocab{BOS: "<|begin_of_text|>", EOS: "<|eot_id|>", Specials: specials, AddBOS: true}},
		{"chatml", chatmlJinja, Vocab{BOS: "<s>", EOS: "</s>", Specials: specials, AddBOS: true}},
	} {
		bt, _ := Lookup(tc.builtin)
		jt, err := FromJinja(tc.builtin+".jinja", tc.src, tc.v)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(bt.Stop, jt.Stop) {
			t.Errorf("%s: stop strings %q, built-in %q", tc.builtin, jt.Stop, bt.Stop)
		}
		convs := [][]Message{shapes[0].msgs, shapes[1].msgs, shapes[2].msgs, longConv, {{User, "  padded  "}, {Assistant, " spaced answer\n"}}}
		for ci, conv := range convs {
			for _, gen := range []bool{true, false} {
				br, err := bt.Render(conv, gen)
				if err != nil {
					t.Fatal(err)
				}
				jr, err := jt.Render(conv, gen)
				if err != nil {
					t.Fatalf("%s conversation %d: %v", tc.builtin, ci, err)
				}
				if tc.builtin == "chatml" && ci == 4 {
					continue // the built-in ChatML keeps messages as written, so does the Jinja one; only Llama-3 trims
				}
				if br.Text() != jr.Text() {
					t.Errorf("%s conversation %d gen=%v:\n jinja %q\nbuilt-in %q", tc.builtin, ci, gen, jr.Text(), br.Text())
					continue
				}
				be, je := br.Encode(tok), jr.Encode(tok)
				if !slices.Equal(be.IDs, je.IDs) || !slices.Equal(be.Spans, je.Spans) {
					t.Errorf("%s conversation %d gen=%v: encodings differ\n jinja %v %v\nbuilt-in %v %v", tc.builtin, ci, gen, je.IDs, je.Spans, be.IDs, be.Spans)
				}
			}
		}
	}
}

func TestJinjaUserTextIsNotSpecial(t *testing.T) {
	specials := []string{"<|im_start|>", "<|im_end|>"}
	tok := withSpecials(t, llamaVocab(t), specials...)
	jt, err := FromJinja("chatml", chatmlJinja, Vocab{BOS: "<s>", EOS: "</s>", Specials: specials, AddBOS: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := jt.Render([]Message{{User, "say <|im_end|> now"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	ids := r.Encode(tok).IDs
	if n := strings.Count(r.Text(), "<|im_end|>"); n != 2 {
		t.Fatalf("text %q", r.Text())
	}
	count := 0
	for _, id := range ids {
		if id == tok.PieceID("<|im_end|>") {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d <|im_end|> tokens, want 1 (the one in the user's text is text)", count)
	}
}

func TestTokenizerConfig(t *testing.T) {
	data, err := os.ReadFile("testdata/tokenizer_config.json")
	if err != nil {
		t.Fatal(err)
	}
	tp, err := FromTokenizerConfig("tokenizer_config.json", data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tp.Render(shapes[1].msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	bt, _ := Lookup("llama-3")
	br, _ := bt.Render(shapes[1].msgs, true)
	if r.Text() != br.Text() {
		t.Errorf("tokenizer_config.json template renders %q, want %q", r.Text(), br.Text())
	}
	if !slices.Contains(tp.Stop, "<|eot_id|>") {
		t.Errorf("stop strings %q lack <|eot_id|>", tp.Stop)
	}
	for _, bad := range []string{`{`, `{"chat_template": 5}`, `{"bos_token": "<s>"}`, `{"chat_template": "{% if %}"}`} {
		if _, err := FromTokenizerConfig("bad.json", []byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestErrors(t *testing.T) {
	if _, err := Lookup("nope"); err == nil || !strings.Contains(err.Error(), "vicuna") {
		t.Errorf("Lookup(nope): %v", err)
	}
	l2, _ := Lookup("llama-2")
	vic, _ := Lookup("vicuna")
	for _, tc := range []struct {
		tp   *Template
		msgs []Message
	}{
		{vic, []Message{{"robot", "hi"}}},
		{vic, []Message{{User, "hi"}, {System, "late"}}},
		{l2, []Message{{User, "a"}, {User, "b"}}},
		{l2, []Message{{User, "a"}, {Assistant, "b"}}}, // generation needs a user message last
	} {
		if _, err := tc.tp.Render(tc.msgs, true); err == nil {
			t.Errorf("%s %v: no error", tc.tp.Name, tc.msgs)
		}
	}
}

func TestStopIDs(t *testing.T) {
	tok := withSpecials(t, llamaVocab(t), "<|eot_id|>", "<|im_end|>")
	l3, _ := Lookup("llama-3")
	if got, want := l3.StopIDs(tok), []int{tok.EOS(), tok.PieceID("<|eot_id|>")}; !slices.Equal(got, want) {
		t.Errorf("llama-3 stop ids %v, want %v", got, want)
	}
	vic, _ := Lookup("vicuna")
	if got := vic.StopIDs(tok); !slices.Equal(got, []int{tok.EOS()}) {
		t.Errorf("vicuna stop ids %v", got)
	}
}

// TestFromGGUF reads a chat template, its vocabulary's special pieces and
// the BOS/EOS texts from GGUF metadata.
func TestFromGGUF(t *testing.T) {
	w := gguf.NewWriter()
	pieces := []string{"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "▁a"}
	for k, v := range map[string]any{
		"tokenizer.chat_template":      chatmlJinja,
		"tokenizer.ggml.model":         "llama",
		"tokenizer.ggml.tokens":        pieces,
		"tokenizer.ggml.token_type":    []int32{2, 3, 3, 3, 3, 1},
		"tokenizer.ggml.bos_token_id":  uint32(1),
		"tokenizer.ggml.eos_token_id":  uint32(2),
		"tokenizer.ggml.add_bos_token": false,
	} {
		if err := w.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse("chatml.gguf", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	tp, ok, err := FromGGUF(f)
	if err != nil || !ok {
		t.Fatalf("FromGGUF: %v %v", ok, err)
	}
	if !slices.Equal(tp.Stop, []string{"<|im_end|>"}) {
		t.Errorf("stop strings %q", tp.Stop)
	}
	r, err := tp.Render(shapes[1].msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	bt, _ := Lookup("chatml")
	br, _ := bt.Render(shapes[1].msgs, true)
	if r.Text() != br.Text() || r.BOS {
		t.Errorf("GGUF template: %q (BOS %v), want %q without BOS", r.Text(), r.BOS, br.Text())
	}
	specials := 0
	for _, p := range r.Parts {
		if p.Kind == Special {
			specials++
		}
	}
	if specials != 7 { // <|im_start|> and <|im_end|> around 3 messages, and the generation prompt's <|im_start|>
		t.Errorf("%d special parts, want 7", specials)
	}
	// a file without a template
	w2 := gguf.NewWriter()
	w2.Set("general.name", "x")
	buf.Reset()
	w2.WriteTo(&buf)
	f2, _ := gguf.Parse("plain.gguf", buf.Bytes())
	if _, ok, err := FromGGUF(f2); ok || err != nil {
		t.Errorf("no template: %v %v", ok, err)
	}
}

// A GGUF file without a Jinja template but with herd.chat_template (what
// herd sft writes) gets that built-in template; an unknown name is an
// error naming the key.
func TestFromGGUFHerdName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{{"alpaca", true}, {"no-such-template", false}} {
		w := gguf.NewWriter()
		if err := w.Set(HerdTemplateKey, c.name); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Parse("m.gguf", buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		tp, ok, err := FromGGUF(f)
		if c.ok && (err != nil || !ok || tp.Name != "alpaca") {
			t.Errorf("%s: %v %v %v", c.name, tp, ok, err)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), HerdTemplateKey)) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}
