package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/herd-llm/herd/chat/internal/jinja"
	"github.com/herd-llm/herd/format/gguf"
)

// Vocab is what a Jinja template needs to know of its tokenizer.
type Vocab struct {
	BOS, EOS string   // texts of the BOS and EOS pieces (bos_token, eos_token)
	Specials []string // texts of the control and user-defined pieces
	AddBOS   bool     // the tokenizer puts BOS before the text (add_bos_token)
}

// endMarkers are the end-of-turn pieces of well-known template families;
// those a Jinja template writes become its stop strings and stop tokens.
var endMarkers = []string{"<|eot_id|>", "<|im_end|>", "<|end|>", "<|end_of_turn|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<|eom_id|>"}

// Limits bound every rendering of a Jinja chat template: a template comes
// from a model file, which is untrusted, so its loops, output, recursion
// and time are capped (see the internal jinja package's DefaultLimits:
// two million steps, 8 MiB of text, a million list elements, 64 nested
// macro calls, two seconds).
var Limits = jinja.DefaultLimits

// FromJinja compiles a Hugging Face chat_template (Jinja) into a Template.
// Rendering passes messages, add_generation_prompt, bos_token and
// eos_token, as transformers' apply_chat_template does. The vocabulary's
// special pieces found in the template's own output become Special parts;
// text inside messages never does. herd's own Jinja interpreter runs it,
// bounded by Limits; a template that does not parse, or that exceeds the
// limits on a short sample conversation, is refused here, at load, and
// one that exceeds them on a request's conversation fails that request.
func FromJinja(name, source string, v Vocab) (*Template, error) {
	tp, err := jinja.Parse(source)
	if err != nil {
		return nil, fmt.Errorf("chat template %s: %w", name, err)
	}
	if err := trialRender(tp, v); err != nil {
		return nil, fmt.Errorf("chat template %s: %w", name, err)
	}
	t := &Template{Name: name, Origin: "Jinja chat_template", bos: v.AddBOS}
	for _, m := range endMarkers {
		if strings.Contains(source, m) {
			t.Stop = append(t.Stop, m)
			t.StopTokens = append(t.StopTokens, m)
		}
	}
	specials := append([]string(nil), v.Specials...)
	for _, s := range []string{v.BOS, v.EOS} {
		if s != "" {
			specials = append(specials, s)
		}
	}
	sort.Slice(specials, func(i, j int) bool { return len(specials[i]) > len(specials[j]) })
	j := &jinjaTemplate{tp: tp, v: v, specials: specials, stops: append(append([]string(nil), t.Stop...), v.EOS)}
	t.render = func(_ *Template, msgs []Message, gen bool) ([]Part, error) { return j.render(msgs, gen) }
	return t, nil
}

// trialRender renders a short conversation: a template that runs out of
// its limits on it (an endless loop, a runaway string) is refused at load.
// Other errors are left to rendering (a template may well refuse a system
// message, say).
func trialRender(tp *jinja.Template, v Vocab) error {
	msgs := []any{
		map[string]any{"role": System, "content": "You are helpful."},
		map[string]any{"role": User, "content": "Hello."},
		map[string]any{"role": Assistant, "content": "Hi."},
		map[string]any{"role": User, "content": "Bye."},
	}
	_, err := tp.Render(map[string]any{"messages": msgs, "add_generation_prompt": true, "bos_token": v.BOS, "eos_token": v.EOS}, Limits)
	var je *jinja.Error
	if errors.As(err, &je) && je.Limit {
		return fmt.Errorf("a sample conversation exceeds the rendering limits: %w", err)
	}
	return nil
}

type jinjaTemplate struct {
	tp       *jinja.Template
	v        Vocab
	specials []string // longest first
	stops    []string // end-of-turn markers: the template's stop strings and EOS
}

func (j *jinjaTemplate) exec(contents []string, msgs []Message, gen bool) (string, error) {
	ms := make([]any, len(msgs))
	for i, m := range msgs {
		ms[i] = map[string]any{"role": m.Role, "content": contents[i]}
	}
	out, err := j.tp.Render(map[string]any{
		"messages":              ms,
		"add_generation_prompt": gen,
		"bos_token":             j.v.BOS,
		"eos_token":             j.v.EOS,
	}, Limits)
	if err != nil {
		return "", fmt.Errorf("rendering the Jinja template: %w", err)
	}
	return out, nil
}

// sentinel stands for message i while the template's own text is found.
func sentinel(i int) string { return "\U000F0000" + strconv.Itoa(i) + "\U000F0001" }

// render runs the template twice: once with a sentinel in place of every
// message, which shows where the template's own text lies, and once with
// the messages, whose text then fills the holes (as written, or stripped
// when the template trims it).
func (j *jinjaTemplate) render(msgs []Message, gen bool) ([]Part, error) {
	real := make([]string, len(msgs))
	holes := make([]string, len(msgs))
	for i, m := range msgs {
		real[i], holes[i] = m.Content, sentinel(i)
	}
	withHoles, err := j.exec(holes, msgs, gen)
	if err != nil {
		return nil, err
	}
	out, err := j.exec(real, msgs, gen)
	if err != nil {
		return nil, err
	}
	// split withHoles into template text and holes
	type seg struct {
		text string
		msg  int // ≥ 0: a hole for that message
	}
	var segs []seg
	rest := withHoles
	for {
		i := strings.Index(rest, "\U000F0000")
		if i < 0 {
			segs = append(segs, seg{rest, -1})
			break
		}
		k := strings.Index(rest[i:], "\U000F0001")
		if k < 0 {
			return nil, fmt.Errorf("the template cut a message apart")
		}
		n, err := strconv.Atoi(rest[i+len("\U000F0000") : i+k])
		if err != nil || n < 0 || n >= len(msgs) {
			return nil, fmt.Errorf("the template changed a message's text")
		}
		segs = append(segs, seg{rest[:i], -1}, seg{"", n})
		rest = rest[i+k+len("\U000F0001"):]
	}
	var b builder
	pos := 0
	seen := map[int]bool{}
	for si, s := range segs {
		if s.msg < 0 {
			if !strings.HasPrefix(out[pos:], s.text) {
				return nil, fmt.Errorf("the template renders differently with different message text; cannot locate the messages")
			}
			j.templateText(&b, s.text, false, -1)
			pos += len(s.text)
			continue
		}
		m := msgs[s.msg]
		if seen[s.msg] && m.Role == Assistant {
			return nil, fmt.Errorf("the template writes assistant message %d twice", s.msg)
		}
		seen[s.msg] = true
		next := ""
		if si+1 < len(segs) {
			next = segs[si+1].text
		}
		c, ok := "", false
		for _, cand := range []string{m.Content, strings.TrimSpace(m.Content), strings.TrimLeft(m.Content, " \t\r\n"), strings.TrimRight(m.Content, " \t\r\n")} {
			if strings.HasPrefix(out[pos:], cand) && strings.HasPrefix(out[pos+len(cand):], next) {
				c, ok = cand, true
				break
			}
		}
		if !ok {
			return nil, fmt.Errorf("cannot locate message %d in the rendered text", s.msg)
		}
		pos += len(c)
		if m.Role != Assistant {
			b.text(c, s.msg)
			continue
		}
		b.content(c, s.msg)
		// the end-of-turn marker: the template text after the message up to
		// and including its first end marker, when only whitespace precedes it
		if eot := j.endOfTurn(next); eot != "" {
			j.templateText(&b, eot, true, s.msg)
			segs[si+1].text = next[len(eot):]
			pos += len(eot)
		}
	}
	if pos != len(out) {
		return nil, fmt.Errorf("cannot locate the messages in the rendered text")
	}
	for i, m := range msgs {
		if m.Role == Assistant && !seen[i] {
			return nil, fmt.Errorf("the template drops assistant message %d", i)
		}
	}
	return b.parts, nil
}

func (j *jinjaTemplate) endOfTurn(s string) string {
	best := -1
	end := 0
	for _, m := range j.stops {
		if m == "" {
			continue
		}
		if i := strings.Index(s, m); i >= 0 && (best < 0 || i < best) && strings.TrimSpace(s[:i]) == "" {
			best, end = i, i+len(m)
		}
	}
	if best < 0 {
		return ""
	}
	return s[:end]
}

// templateText adds text the template wrote, its special pieces as Special
// parts.
func (j *jinjaTemplate) templateText(b *builder, s string, learn bool, msg int) {
	add := func(t string) {
		if t == "" {
			return
		}
		if learn {
			b.eot(t, msg)
		} else {
			b.text(t, msg)
		}
	}
	for s != "" {
		at, which := -1, ""
		for _, sp := range j.specials {
			if i := strings.Index(s, sp); i >= 0 && (at < 0 || i < at) {
				at, which = i, sp
			}
		}
		if at < 0 {
			add(s)
			return
		}
		add(s[:at])
		tok := Named
		switch which {
		case j.v.BOS:
			tok = BOS
		case j.v.EOS:
			tok = EOS
		}
		b.special(which, tok, msg, learn)
		s = s[at+len(which):]
	}
}

// HerdTemplateKey is the GGUF key where herd sft records the name of the
// built-in template a model was fine-tuned with.
const HerdTemplateKey = "herd.chat_template"

// FromGGUF returns the Jinja template in a GGUF file's
// tokenizer.chat_template, with its vocabulary's special pieces, else the
// built-in template named by herd.chat_template; ok is false when the
// file has neither.
func FromGGUF(f *gguf.File) (t *Template, ok bool, err error) {
	src, ok := f.GetString("tokenizer.chat_template")
	if !ok || strings.TrimSpace(src) == "" {
		if name, ok := f.GetString(HerdTemplateKey); ok && name != "" {
			t, err := Lookup(name)
			if err != nil {
				return nil, false, fmt.Errorf("%s: %s: %w", f.Path, HerdTemplateKey, err)
			}
			return t, true, nil
		}
		return nil, false, nil
	}
	v := Vocab{AddBOS: true}
	if b, ok := f.GetBool("tokenizer.ggml.add_bos_token"); ok {
		v.AddBOS = b
	}
	tokens, _ := f.GetStrings("tokenizer.ggml.tokens")
	piece := func(key string) string {
		if id, ok := f.GetUint(key); ok && id < uint64(len(tokens)) {
			return tokens[id]
		}
		return ""
	}
	v.BOS, v.EOS = piece("tokenizer.ggml.bos_token_id"), piece("tokenizer.ggml.eos_token_id")
	if types, ok := f.GetInt32s("tokenizer.ggml.token_type"); ok && len(types) == len(tokens) {
		for i, ty := range types {
			if ty == 3 || ty == 4 { // control, user-defined
				v.Specials = append(v.Specials, tokens[i])
			}
		}
	}
	t, err = FromJinja(f.Path+": tokenizer.chat_template", src, v)
	if err != nil {
		return nil, false, err
	}
	return t, true, nil
}

// FromTokenizerConfig reads the chat_template of a Hugging Face
// tokenizer_config.json (a string, or a list of named templates of which
// "default" is taken), with its bos_token, eos_token, add_bos_token and
// special added tokens.
func FromTokenizerConfig(name string, data []byte) (*Template, error) {
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
		BOS          json.RawMessage `json:"bos_token"`
		EOS          json.RawMessage `json:"eos_token"`
		AddBOS       *bool           `json:"add_bos_token"`
		Added        map[string]struct {
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens_decoder"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var src string
	if err := json.Unmarshal(cfg.ChatTemplate, &src); err != nil {
		var list []struct{ Name, Template string }
		if err := json.Unmarshal(cfg.ChatTemplate, &list); err != nil {
			return nil, fmt.Errorf("%s: chat_template is missing or neither a string nor a list of named templates", name)
		}
		for _, e := range list {
			if e.Name == "default" {
				src = e.Template
			}
		}
	}
	if src == "" {
		return nil, fmt.Errorf("%s: no chat_template (or no \"default\" one)", name)
	}
	token := func(raw json.RawMessage) string {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		var o struct{ Content string }
		json.Unmarshal(raw, &o)
		return o.Content
	}
	v := Vocab{BOS: token(cfg.BOS), EOS: token(cfg.EOS), AddBOS: true}
	if cfg.AddBOS != nil {
		v.AddBOS = *cfg.AddBOS
	}
	for _, a := range cfg.Added {
		if a.Special {
			v.Specials = append(v.Specials, a.Content)
		}
	}
	sort.Strings(v.Specials)
	return FromJinja(name+": chat_template", src, v)
}
