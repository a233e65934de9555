package serve

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/herd-llm/herd/generate"
)

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// genRequest turns the shared fields into a scheduler request, checking
// the prompt against the model's context. A token budget the context
// cannot hold is cut to what it holds (the generation then ends with
// finish_reason "length", as llama-server and OpenAI do); only a prompt
// that alone leaves no room is refused. A request without max_tokens gets
// Config.DefaultMaxTokens.
func (s *Server) genRequest(m *Model, p *sampling, prompt []int) (generate.Request, *apiError) {
	sc := m.Sched.Config()
	ctx := sc.Context
	if len(prompt) >= ctx {
		why := ""
		if sc.ContextByBudget {
			why = fmt.Sprintf(" (its KV cache budget of %d MiB holds no more; the server's --kv-budget raises it)", sc.KVBudget>>20)
		}
		return generate.Request{}, invalid("messages", "the prompt is %d tokens long; the context of model %s holds %d tokens%s, with room for at least one new token; shorten it", len(prompt), m.Name, ctx, why)
	}
	max := p.maxTokens()
	if max == 0 && s.cfg.DefaultMaxTokens > 0 {
		max = s.cfg.DefaultMaxTokens
	}
	if room := ctx - len(prompt); max == 0 || max > room {
		max = room
	}
	r := generate.Request{Prompt: prompt, MaxTokens: max, Sampler: p.samplerConfig(generate.RandomSeed())}
	r.Stop.IDs = m.Template.StopIDs(m.Tok)
	r.Stop.Strings = append(append([]string(nil), m.Template.Stop...), p.Stop...)
	return r, nil
}

// modelRequest is a parsed request body that names its model.
type modelRequest interface{ modelName() string }

// prologue is what every model endpoint does first: read the body within
// its limit, parse and check it, find the model it names. On failure it
// has answered the request and ok is false.
func prologue[T modelRequest](s *Server, w http.ResponseWriter, r *http.Request, rl *reqLog, parse func([]byte) (T, *apiError)) (req T, m *Model, ok bool) {
	body, e := s.body(w, r)
	if e == nil {
		req, e = parse(body)
	}
	if e == nil {
		m, e = s.model(req.modelName())
	}
	if e != nil {
		writeError(w, e)
		return req, nil, false
	}
	rl.model = m.Name
	return req, m, true
}

// answered reports whether a generation that is not streamed has an
// answer to write; otherwise it has answered with the error (or the client
// left: last is nil).
func answered(w http.ResponseWriter, m *Model, last *generate.Event) bool {
	if last == nil {
		return false
	}
	if last.Err != nil {
		writeError(w, generationError(m, last.Err))
		return false
	}
	return true
}

// usageChunk is the stream's closing usage chunk, without its usage (end
// fills it in), or nil when the client did not ask for it.
func usageChunk(include bool, id, object string, created int64, m *Model) map[string]any {
	if !include {
		return nil
	}
	return map[string]any{"id": id, "object": object, "created": created, "model": m.Name, "choices": []any{}}
}

// end finishes a stream after the generation's last event (nil: the client
// left): the error, or the chunk final makes from the finish reason, then
// the usage chunk when there is one, then [DONE].
func (e *sse) end(m *Model, last *generate.Event, final func(finish string) any, tail map[string]any) {
	if last == nil {
		return
	}
	if last.Err != nil {
		e.send(map[string]any{"error": generationError(m, last.Err)})
		return
	}
	e.send(final(last.Finish))
	if tail != nil {
		tail["usage"] = usageOf(last)
		e.send(tail)
	}
	e.done()
}

func usageOf(ev *generate.Event) usage { return usage{ev.Prompt, ev.Tokens, ev.Prompt + ev.Tokens} }

// generationError is the error a failed generation answers with: a model
// that produced NaN or Inf is the server's fault (500), named as such.
func generationError(m *Model, err error) *apiError {
	e := &apiError{Status: http.StatusInternalServerError, Type: "server_error", Message: fmt.Sprintf("model %s: %v", m.Name, err)}
	var nf *generate.NonFiniteError
	if errors.As(err, &nf) {
		e.Code = "model_output_not_finite"
	}
	return e
}

// submit queues a generation, mapping scheduler errors to HTTP errors.
func (s *Server) submit(r *http.Request, m *Model, req generate.Request) (<-chan generate.Event, *apiError) {
	ch, err := m.Sched.Submit(r.Context(), req)
	switch {
	case errors.Is(err, generate.ErrBusy):
		return nil, &apiError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Message: fmt.Sprintf("model %s: %v; retry later", m.Name, err)}
	case errors.Is(err, generate.ErrClosed):
		return nil, &apiError{Status: http.StatusServiceUnavailable, Type: "server_error", Message: err.Error()}
	case err != nil:
		var pe *generate.ParamError
		if errors.As(err, &pe) {
			return nil, invalid(pe.Param, "%s", pe.Msg)
		}
		return nil, invalid("", "%v", err)
	}
	return ch, nil
}

// sse writes server-sent events. Each event goes to the response in one
// Write; flush sends what was written to the client.
type sse struct {
	w   http.ResponseWriter
	f   http.Flusher // nil when w cannot flush
	buf []byte       // the event being written
}

func newSSE(w http.ResponseWriter) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	return &sse{w: w, f: f}
}

// send writes one event and flushes it to the client.
func (e *sse) send(v any) error {
	if err := e.write(v); err != nil {
		return err
	}
	e.flush()
	return nil
}

// write writes one event, v as JSON, without flushing.
func (e *sse) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	e.buf = append(append(append(e.buf[:0], "data: "...), b...), "\n\n"...)
	_, err = e.w.Write(e.buf)
	return err
}

// text writes one event from a template: the JSON of a chunk whose one
// string field is text, split around that string into pre and post.
func (e *sse) text(t *textChunk, text string) error {
	e.buf = append(appendJSONString(append(e.buf[:0], t.pre...), text), t.post...)
	_, err := e.w.Write(e.buf)
	return err
}

func (e *sse) flush() {
	if e.f != nil {
		e.f.Flush()
	}
}

func (e *sse) done() {
	e.w.Write([]byte("data: [DONE]\n\n"))
	e.flush()
}

// textChunk is a streamed chunk whose only varying part is one string:
// the event's bytes before and after that string's JSON.
type textChunk struct {
	pre, post string
}

// newTextChunk marshals v, in which the string to vary is "\x00", and
// splits the event around it.
func newTextChunk(v any) (*textChunk, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	pre, post, ok := strings.Cut(string(b), `"\u0000"`)
	if !ok || strings.Contains(post, `"\u0000"`) {
		return nil, fmt.Errorf("a chunk template must hold the placeholder once: %s", b)
	}
	return &textChunk{pre: "data: " + pre, post: post + "\n\n"}, nil
}

// consume reads a generation's events, calling each for every one but the
// last, and returns the last (nil when the client went away first). When
// events come faster than the client takes them, flush (if not nil) runs
// once for those waiting rather than after each.
func (s *Server) consume(m *Model, ch <-chan generate.Event, rl *reqLog, start time.Time, each func(generate.Event) error, flush func()) *generate.Event {
	first := true
	for ev := range ch {
		if ev.Done {
			if ev.Err == nil {
				rl.prompt, rl.generated, rl.finish = ev.Prompt, ev.Tokens, ev.Finish
				s.metrics.generation(m.Name, ev.Prompt, ev.Tokens, rl.ttft, time.Since(start))
			}
			return &ev
		}
		if first {
			first = false
			rl.ttft = time.Since(start)
		}
		if err := each(ev); err != nil {
			return nil // the client is gone; the request context cancels the generation
		}
		if flush != nil && len(ch) == 0 {
			flush()
		}
	}
	return nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

type chatLogprob struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []chatTopLog `json:"top_logprobs"`
}

type chatTopLog struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

func bytesOf(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

func chatLogprobOf(ev generate.Event) chatLogprob {
	lp := chatLogprob{Token: string(ev.Token.Piece), Logprob: finite(ev.Token.Logprob), Bytes: bytesOf(ev.Token.Piece), TopLogprobs: []chatTopLog{}}
	for _, t := range ev.Top {
		lp.TopLogprobs = append(lp.TopLogprobs, chatTopLog{Token: string(t.Piece), Logprob: finite(t.Logprob), Bytes: bytesOf(t.Piece)})
	}
	return lp
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request, rl *reqLog) {
	start := time.Now()
	req, m, ok := prologue(s, w, r, rl, parseChat)
	if !ok {
		return
	}
	rendered, err := m.Template.Render(req.msgs, true)
	if err != nil {
		writeError(w, invalid("messages", "%v", err))
		return
	}
	greq, e := s.genRequest(m, &req.sampling, rendered.Encode(m.Tok).IDs)
	if e != nil {
		writeError(w, e)
		return
	}
	greq.Standalone = true
	greq.Logprobs = req.Logprobs
	if req.TopLogprobs != nil {
		greq.TopLogprobs = *req.TopLogprobs
	}
	ch, e := s.submit(r, m, greq)
	if e != nil {
		writeError(w, e)
		return
	}
	id, created := newID("chatcmpl-"), time.Now().Unix()
	if !req.Stream {
		var text strings.Builder
		var lps []chatLogprob
		last := s.consume(m, ch, rl, start, func(ev generate.Event) error {
			text.WriteString(ev.Text)
			if req.Logprobs {
				lps = append(lps, chatLogprobOf(ev))
			}
			return nil
		}, nil)
		if !answered(w, m, last) {
			return
		}
		choice := map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": text.String()},
			"finish_reason": last.Finish, "logprobs": nil}
		if req.Logprobs {
			choice["logprobs"] = map[string]any{"content": lps}
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "chat.completion", "created": created, "model": m.Name,
			"choices": []any{choice}, "usage": usageOf(last)})
		return
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	out := newSSE(w)
	chunk := func(delta map[string]any, finish any, lp any) map[string]any {
		c := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": m.Name,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}}}
		if includeUsage {
			c["usage"] = nil
		}
		return c
	}
	if out.send(chunk(map[string]any{"role": "assistant", "content": ""}, nil, nil)) != nil {
		return
	}
	// a content chunk without logprobs is written from a template
	content, err := newTextChunk(chunk(map[string]any{"content": "\x00"}, nil, nil))
	if err != nil {
		out.send(map[string]any{"error": &apiError{Type: "server_error", Message: err.Error()}})
		return
	}
	last := s.consume(m, ch, rl, start, func(ev generate.Event) error {
		if ev.Text == "" && !req.Logprobs {
			return nil
		}
		if !req.Logprobs {
			return out.text(content, ev.Text)
		}
		return out.write(chunk(map[string]any{"content": ev.Text}, nil, map[string]any{"content": []chatLogprob{chatLogprobOf(ev)}}))
	}, out.flush)
	out.end(m, last, func(finish string) any { return chunk(map[string]any{}, finish, nil) },
		usageChunk(includeUsage, id, "chat.completion.chunk", created, m))
}

// completionLogprobs is the legacy completions logprobs object.
type completionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

func (c *completionLogprobs) add(ev generate.Event, offset int) {
	c.Tokens = append(c.Tokens, string(ev.Token.Piece))
	c.TokenLogprobs = append(c.TokenLogprobs, finite(ev.Token.Logprob))
	top := map[string]float64{}
	for _, t := range ev.Top {
		top[string(t.Piece)] = finite(t.Logprob)
	}
	c.TopLogprobs = append(c.TopLogprobs, top)
	c.TextOffset = append(c.TextOffset, offset)
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request, rl *reqLog) {
	start := time.Now()
	req, m, ok := prologue(s, w, r, rl, parseCompletion)
	if !ok {
		return
	}
	ids := req.ids
	if ids == nil {
		ids = m.Tok.Encode(req.text, true, false)
	}
	if len(ids) == 0 {
		writeError(w, invalid("prompt", "the prompt is empty"))
		return
	}
	greq, e := s.genRequest(m, &req.sampling, ids)
	if e != nil {
		e.Param = "prompt"
		writeError(w, e)
		return
	}
	if req.Logprobs != nil {
		greq.Logprobs, greq.TopLogprobs = true, *req.Logprobs
	}
	ch, e := s.submit(r, m, greq)
	if e != nil {
		writeError(w, e)
		return
	}
	id, created := newID("cmpl-"), time.Now().Unix()
	choice := func(text string, lp any, finish any) map[string]any {
		return map[string]any{"index": 0, "text": text, "logprobs": lp, "finish_reason": finish}
	}
	if !req.Stream {
		var sb strings.Builder
		var lps completionLogprobs
		last := s.consume(m, ch, rl, start, func(ev generate.Event) error {
			if greq.Logprobs {
				lps.add(ev, sb.Len())
			}
			sb.WriteString(ev.Text)
			return nil
		}, nil)
		if !answered(w, m, last) {
			return
		}
		var lp any
		if greq.Logprobs {
			lp = lps
		}
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "text_completion", "created": created, "model": m.Name,
			"choices": []any{choice(sb.String(), lp, last.Finish)}, "usage": usageOf(last)})
		return
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	out := newSSE(w)
	chunk := func(c map[string]any) map[string]any {
		v := map[string]any{"id": id, "object": "text_completion", "created": created, "model": m.Name, "choices": []any{c}}
		if includeUsage {
			v["usage"] = nil
		}
		return v
	}
	// a text chunk without logprobs is written from a template
	plain, err := newTextChunk(chunk(choice("\x00", nil, nil)))
	if err != nil {
		out.send(map[string]any{"error": &apiError{Type: "server_error", Message: err.Error()}})
		return
	}
	offset := 0
	last := s.consume(m, ch, rl, start, func(ev generate.Event) error {
		if ev.Text == "" && !greq.Logprobs {
			return nil
		}
		if !greq.Logprobs {
			return out.text(plain, ev.Text)
		}
		var l completionLogprobs
		l.add(ev, offset)
		offset += len(ev.Text)
		return out.write(chunk(choice(ev.Text, l, nil)))
	}, out.flush)
	out.end(m, last, func(finish string) any { return chunk(choice("", nil, finish)) },
		usageChunk(includeUsage, id, "text_completion", created, m))
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, rl *reqLog) {
	req, m, ok := prologue(s, w, r, rl, parseEmbedding)
	if !ok {
		return
	}
	idss := req.idss
	for _, t := range req.texts {
		idss = append(idss, m.Tok.Encode(t, true, false))
	}
	ctx := m.Sched.Config().Context
	total := 0
	for i, ids := range idss {
		if len(ids) == 0 {
			writeError(w, invalid("input", "input %d is empty", i))
			return
		}
		if len(ids) > ctx {
			writeError(w, invalid("input", "input %d is %d tokens long; the context of model %s holds %d tokens", i, len(ids), m.Name, ctx))
			return
		}
		for _, id := range ids {
			if id < 0 || id >= m.Model.Config.VocabSize {
				writeError(w, invalid("input", "input %d has token id %d outside the vocabulary of %d", i, id, m.Model.Config.VocabSize))
				return
			}
		}
		total += len(ids)
	}
	data := make([]any, len(idss))
	for i, ids := range idss {
		v, err := m.Sched.Embed(r.Context(), ids)
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			writeError(w, generationError(m, err))
			return
		}
		var emb any
		if req.EncodingFormat == "base64" {
			b := make([]byte, 4*len(v))
			for k, x := range v {
				binary.LittleEndian.PutUint32(b[4*k:], math.Float32bits(x))
			}
			emb = base64.StdEncoding.EncodeToString(b)
		} else {
			f := make([]float64, len(v))
			for k, x := range v {
				f[k] = float64(x)
			}
			emb = f
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": emb}
	}
	rl.prompt = total
	s.metrics.generation(m.Name, total, 0, 0, 0)
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data, "model": m.Name,
		"usage": map[string]int{"prompt_tokens": total, "total_tokens": total}})
}
