package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// hfJSON is the part of a Hugging Face tokenizer.json herd reads.
type hfJSON struct {
	AddedTokens   []hfAdded       `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Model         struct {
		Type         string          `json:"type"`
		Vocab        map[string]int  `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		IgnoreMerges bool            `json:"ignore_merges"`
		ByteFallback bool            `json:"byte_fallback"`
	} `json:"model"`
}

type hfAdded struct {
	ID      int    `json:"id"`
	Content string `json:"content"`
	Special bool   `json:"special"`
}

// hfConfig is the part of a tokenizer_config.json herd reads.
type hfConfig struct {
	AddBOS       *bool              `json:"add_bos_token"`
	BOS          json.RawMessage    `json:"bos_token"`
	EOS          json.RawMessage    `json:"eos_token"`
	ChatTemplate json.RawMessage    `json:"chat_template"`
	Added        map[string]hfAdded `json:"added_tokens_decoder"`
}

// hfVocab collects a vocabulary by id from the pieces of a Hugging Face
// tokenizer: the model's vocabulary and the added tokens.
type hfVocab struct {
	entries []hfEntry
}

type hfEntry struct {
	id  int
	tok string
	ty  Type
}

func (v *hfVocab) put(id int, tok string, ty Type) {
	v.entries = append(v.entries, hfEntry{id, tok, ty})
}

// build lays the entries out by id. Ids must run from 0 without gaps; an
// added token may take the id of a vocabulary token (it wins), two
// vocabulary tokens or two added tokens may not share one.
func (v *hfVocab) build() ([]string, []Type, error) {
	n := 0
	for _, e := range v.entries {
		if e.id < 0 || e.id >= len(v.entries) {
			return nil, nil, fmt.Errorf("token %q: id %d out of range (%d tokens given)", e.tok, e.id, len(v.entries))
		}
		n = max(n, e.id+1)
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("empty vocabulary")
	}
	tokens, types, set := make([]string, n), make([]Type, n), make([]bool, n)
	for _, e := range v.entries {
		if set[e.id] && tokens[e.id] != e.tok {
			if (types[e.id] == TypeNormal) == (e.ty == TypeNormal) {
				return nil, nil, fmt.Errorf("tokens %q and %q both have id %d", tokens[e.id], e.tok, e.id)
			}
			if e.ty == TypeNormal {
				continue // the added token keeps the id
			}
		}
		if set[e.id] && e.ty == TypeNormal && types[e.id] != TypeNormal {
			continue
		}
		tokens[e.id], types[e.id], set[e.id] = e.tok, e.ty, true
	}
	for id, ok := range set {
		if !ok {
			return nil, nil, fmt.Errorf("no token has id %d (ids must run from 0 to %d without gaps)", id, n-1)
		}
	}
	return tokens, types, nil
}

func addedType(special bool) Type {
	if special {
		return TypeControl
	}
	return TypeUserDefined
}

// FromHuggingFace builds the byte-level BPE tokenizer of a Hugging Face
// tokenizer.json, with its tokenizer_config.json when configJSON is not
// nil (BOS, EOS, add_bos_token, added tokens, chat template). Supported:
// model BPE without byte fallback, no normaliser, a ByteLevel
// pre-tokenizer with GPT-2's split or a Split with the Llama 3 pattern
// followed by ByteLevel, added tokens (special ones become control
// tokens), and a TemplateProcessing post-processor that puts a special
// token first (BOS). SentencePiece-style files (Llama 2's, with byte
// fallback and a Metaspace or Replace normaliser) are refused: load their
// tokenizer.model.
func FromHuggingFace(tokenizerJSON, configJSON []byte) (*BPE, error) {
	var h hfJSON
	if err := json.Unmarshal(tokenizerJSON, &h); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if h.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer.json: model type %q is not supported (only BPE)", h.Model.Type)
	}
	if h.Model.ByteFallback || !isNull(h.Normalizer) {
		return nil, fmt.Errorf("tokenizer.json: a SentencePiece-style BPE (byte fallback or a normalizer): load its tokenizer.model instead")
	}
	pre, err := hfPretokenizer(h.PreTokenizer)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: pre_tokenizer: %w", err)
	}
	merges, err := hfMerges(h.Model.Merges)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: model.merges: %w", err)
	}
	var v hfVocab
	for tok, id := range h.Model.Vocab {
		v.put(id, tok, TypeNormal)
	}
	for _, a := range h.AddedTokens {
		v.put(a.ID, a.Content, addedType(a.Special))
	}
	opt := BPEOptions{Pre: pre, IgnoreMerges: h.Model.IgnoreMerges, BOS: -1, EOS: -1}
	bos, err := hfTemplateBOS(h.PostProcessor)
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: post_processor: %w", err)
	}
	return buildHF(&v, merges, opt, bos, configJSON)
}

// buildHF applies tokenizer_config.json (if any) to a vocabulary and builds
// the tokenizer; bos is the content of the token the post-processor puts
// first, "" if none.
func buildHF(v *hfVocab, merges []string, opt BPEOptions, bos string, configJSON []byte) (*BPE, error) {
	var eos string
	if bos != "" {
		opt.AddBOS = true
	}
	if configJSON != nil {
		var c hfConfig
		if err := json.Unmarshal(configJSON, &c); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
		for key, a := range c.Added {
			id, err := strconv.Atoi(key)
			if err != nil {
				return nil, fmt.Errorf("tokenizer_config.json: added_tokens_decoder: id %q is not a number", key)
			}
			v.put(id, a.Content, addedType(a.Special))
		}
		s, ok, err := tokenContent(c.BOS)
		if err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: bos_token: %w", err)
		}
		if ok {
			bos = s
		}
		if eos, _, err = tokenContent(c.EOS); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: eos_token: %w", err)
		}
		if c.AddBOS != nil {
			opt.AddBOS = *c.AddBOS
		} else if bos != "" {
			opt.AddBOS = true
		}
		if opt.ChatTemplate, err = chatTemplate(c.ChatTemplate); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: chat_template: %w", err)
		}
	}
	tokens, types, err := v.build()
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	find := func(content string) int {
		for id, tok := range tokens {
			if tok == content && types[id] != TypeNormal {
				return id
			}
		}
		for id, tok := range tokens {
			if tok == content {
				return id
			}
		}
		return -1
	}
	if bos != "" {
		if opt.BOS = find(bos); opt.BOS < 0 {
			return nil, fmt.Errorf("tokenizer: BOS token %q is not in the vocabulary", bos)
		}
	}
	if eos != "" {
		if opt.EOS = find(eos); opt.EOS < 0 {
			return nil, fmt.Errorf("tokenizer: EOS token %q is not in the vocabulary", eos)
		}
	}
	return NewBPE(tokens, types, merges, opt)
}

func isNull(m json.RawMessage) bool {
	return len(bytes.TrimSpace(m)) == 0 || string(bytes.TrimSpace(m)) == "null"
}

// tokenContent reads a special token of tokenizer_config.json: a string, an
// AddedToken object with "content", or null.
func tokenContent(m json.RawMessage) (string, bool, error) {
	if isNull(m) {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(m, &s); err == nil {
		return s, true, nil
	}
	var a hfAdded
	if err := json.Unmarshal(m, &a); err != nil {
		return "", false, fmt.Errorf("neither a string nor a token object")
	}
	return a.Content, true, nil
}

// chatTemplate reads chat_template: a string, or a list of named templates
// of which herd keeps "default" (else the first).
func chatTemplate(m json.RawMessage) (string, error) {
	if isNull(m) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(m, &s); err == nil {
		return s, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(m, &named); err != nil {
		return "", fmt.Errorf("neither a string nor a list of named templates")
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
	}
	if len(named) > 0 {
		return named[0].Template, nil
	}
	return "", nil
}

// hfMerges reads model.merges: ["a b", …] or [["a", "b"], …].
func hfMerges(m json.RawMessage) ([]string, error) {
	if isNull(m) {
		return nil, nil
	}
	var flat []string
	if err := json.Unmarshal(m, &flat); err == nil {
		return flat, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(m, &pairs); err != nil {
		return nil, fmt.Errorf("neither strings nor pairs of strings")
	}
	out := make([]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("merge %d has %d parts, want 2", i, len(p))
		}
		if strings.Contains(p[0], " ") || strings.Contains(p[1], " ") {
			return nil, fmt.Errorf("merge %d %q has a space inside a token", i, p)
		}
		out[i] = p[0] + " " + p[1]
	}
	return out, nil
}

// hfStep is one pre-tokenizer or post-processor of tokenizer.json.
type hfStep struct {
	Type           string            `json:"type"`
	Pretokenizers  []json.RawMessage `json:"pretokenizers"`
	Processors     []json.RawMessage `json:"processors"`
	AddPrefixSpace bool              `json:"add_prefix_space"`
	UseRegex       *bool             `json:"use_regex"`
	Pattern        struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Behavior string `json:"behavior"`
	Invert   bool   `json:"invert"`
	Single   []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
	} `json:"single"`
}

// hfPretokenizer recognises the two pre-tokenizers herd implements:
// ByteLevel with its own (GPT-2) regex, or a Split by a known pattern
// followed by a ByteLevel that does not split again.
func hfPretokenizer(m json.RawMessage) (Pretokenizer, error) {
	if isNull(m) {
		return 0, fmt.Errorf("missing (herd needs a byte-level pre-tokenizer)")
	}
	var st hfStep
	if err := json.Unmarshal(m, &st); err != nil {
		return 0, err
	}
	steps := []hfStep{st}
	if st.Type == "Sequence" {
		steps = steps[:0]
		for _, p := range st.Pretokenizers {
			var s hfStep
			if err := json.Unmarshal(p, &s); err != nil {
				return 0, err
			}
			steps = append(steps, s)
		}
	}
	var pre Pretokenizer
	byteLevel := false
	for _, s := range steps {
		switch s.Type {
		case "Split":
			if pre != 0 || s.Pattern.Regex == nil || s.Behavior != "Isolated" || s.Invert {
				return 0, fmt.Errorf("only one Split by a regex with behavior Isolated is supported")
			}
			p, err := PretokenizerByPattern(*s.Pattern.Regex)
			if err != nil {
				return 0, err
			}
			pre = p
		case "ByteLevel":
			if s.AddPrefixSpace {
				return 0, fmt.Errorf("ByteLevel add_prefix_space is not supported")
			}
			if s.UseRegex == nil || *s.UseRegex {
				if pre != 0 {
					return 0, fmt.Errorf("a Split followed by a ByteLevel that splits again is not supported")
				}
				pre = PreGPT2
			}
			byteLevel = true
		default:
			return 0, fmt.Errorf("pre-tokenizer %q is not supported", s.Type)
		}
	}
	if !byteLevel || pre == 0 {
		return 0, fmt.Errorf("not a byte-level BPE pre-tokenizer")
	}
	return pre, nil
}

// hfTemplateBOS returns the special token a TemplateProcessing puts before
// a single sequence, "" if none.
func hfTemplateBOS(m json.RawMessage) (string, error) {
	if isNull(m) {
		return "", nil
	}
	var st hfStep
	if err := json.Unmarshal(m, &st); err != nil {
		return "", err
	}
	switch st.Type {
	case "Sequence":
		for _, p := range st.Processors {
			if bos, err := hfTemplateBOS(p); err != nil || bos != "" {
				return bos, err
			}
		}
	case "TemplateProcessing":
		if len(st.Single) > 0 && st.Single[0].SpecialToken != nil {
			return st.Single[0].SpecialToken.ID, nil
		}
	}
	return "", nil
}

// Llama3Specials returns the 256 special tokens that follow the 128000
// byte-level tokens of the Llama 3.1 / 3.2 vocabulary, as Meta's
// tokenizer.json names them: ids 128000 to 128255.
func Llama3Specials() []string {
	s := []string{
		"<|begin_of_text|>", "<|end_of_text|>",
		"<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
		"<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
		"<|start_header_id|>", "<|end_header_id|>",
		"<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
	}
	for i := 3; len(s) < 256; i++ {
		s = append(s, fmt.Sprintf("<|reserved_special_token_%d|>", i))
	}
	return s
}

// llama3Size is the number of byte-level tokens of Llama 3's vocabulary.
const llama3Size = 128000

// FromGPT2Files builds the tokenizer of a GPT-2-style pair of files:
// encoder.json (token → id) and vocab.bpe (the merges, one "left right" a
// line, after an optional "#version" line), with tokenizer_config.json when
// configJSON is not nil. A 128000-token encoder is Llama 3's: it splits by
// the Llama 3 pattern, ignores merges for whole-token chunks as tiktoken
// does, and without a config gets Llama 3's 256 special tokens
// (Llama3Specials), BOS <|begin_of_text|> added to every text, EOS
// <|end_of_text|>. Any other encoder is GPT-2's: GPT-2's pattern, and
// "<|endoftext|>" (when present) a control token that is both BOS and EOS
// but not added by default.
func FromGPT2Files(encoderJSON, vocabBPE, configJSON []byte) (*BPE, error) {
	var enc map[string]int
	if err := json.Unmarshal(encoderJSON, &enc); err != nil {
		return nil, fmt.Errorf("encoder.json: %w", err)
	}
	var merges []string
	for n, line := range strings.Split(string(vocabBPE), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || n == 0 && strings.HasPrefix(line, "#version") {
			continue
		}
		if strings.Count(line, " ") != 1 {
			return nil, fmt.Errorf("vocab.bpe line %d: %q is not two tokens separated by one space", n+1, line)
		}
		merges = append(merges, line)
	}
	var v hfVocab
	for tok, id := range enc {
		ty := TypeNormal
		if tok == "<|endoftext|>" {
			ty = TypeControl
		}
		v.put(id, tok, ty)
	}
	opt := BPEOptions{Pre: PreGPT2, BOS: -1, EOS: -1}
	bos := ""
	if len(enc) == llama3Size {
		opt.Pre, opt.IgnoreMerges = PreLlama3, true
		if configJSON == nil {
			for i, s := range Llama3Specials() {
				v.put(llama3Size+i, s, TypeControl)
			}
			opt.EOS = llama3Size + 1
			bos = "<|begin_of_text|>"
		}
	} else if id, ok := enc["<|endoftext|>"]; ok && configJSON == nil {
		opt.BOS, opt.EOS = id, id
	}
	return buildHF(&v, merges, opt, bos, configJSON)
}
