package convert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/herd-llm/herd/tokenizer"
)

// loadTokenizer reads the directory's tokenizer (tokenizer.model, else
// tokenizer.json with tokenizer_config.json), its chat template and the EOS
// id of generation_config.json, and checks it against the vocabulary size.
// A directory without a tokenizer leaves s.Tokenizer nil.
func (s *Source) loadTokenizer(dir string) error {
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	cfg, err := readIfExists(cfgPath)
	if err != nil {
		return err
	}
	if cfg != nil {
		if s.ChatTemplate, err = chatTemplate(cfg); err != nil {
			return fmt.Errorf("%s: chat_template: %w", cfgPath, err)
		}
	}
	var tok tokenizer.Tokenizer
	var tokPath string
	if p := filepath.Join(dir, "tokenizer.model"); fileExists(p) {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		spm, err := tokenizer.FromModelProto(data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		added, err := readIfExists(filepath.Join(dir, "added_tokens.json"))
		if err != nil {
			return err
		}
		if spm, err = withAddedTokens(spm, cfg, added); err != nil {
			return fmt.Errorf("%s: added tokens: %w", dir, err)
		}
		tok, tokPath = spm, p
	} else if p := filepath.Join(dir, "tokenizer.json"); fileExists(p) {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		bpe, err := tokenizer.FromHuggingFace(data, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		tok, tokPath = bpe, p
	} else {
		return nil
	}
	if tok.VocabSize() != s.Config.VocabSize {
		return fmt.Errorf("%s: the tokenizer has %d tokens but the model's vocabulary (vocab_size, token_embd) is %d", tokPath, tok.VocabSize(), s.Config.VocabSize)
	}
	genPath := filepath.Join(dir, "generation_config.json")
	gen, err := readIfExists(genPath)
	if err != nil {
		return err
	}
	if gen != nil {
		if tok, err = applyGenerationConfig(tok, gen); err != nil {
			return fmt.Errorf("%s: %w", genPath, err)
		}
	}
	s.Tokenizer = tok
	return nil
}

func readIfExists(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	return data, err
}

// chatTemplate reads tokenizer_config.json's chat_template: a string, or a
// list of {name, template} of which "default" is taken.
func chatTemplate(cfg []byte) (string, error) {
	var c struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return "", err
	}
	if len(c.ChatTemplate) == 0 || string(c.ChatTemplate) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(c.ChatTemplate, &s); err == nil {
		return s, nil
	}
	var named []struct{ Name, Template string }
	if err := json.Unmarshal(c.ChatTemplate, &named); err != nil {
		return "", fmt.Errorf("neither a string nor a list of {name, template}")
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
	}
	return "", fmt.Errorf("no template named \"default\" among %d", len(named))
}

// applyGenerationConfig sets the tokenizer's BOS and EOS to
// generation_config.json's bos_token_id and eos_token_id (the first, when a
// list).
func applyGenerationConfig(tok tokenizer.Tokenizer, gen []byte) (tokenizer.Tokenizer, error) {
	var g struct {
		BOS json.RawMessage `json:"bos_token_id"`
		EOS json.RawMessage `json:"eos_token_id"`
	}
	if err := json.Unmarshal(gen, &g); err != nil {
		return nil, err
	}
	bos, err := firstID(g.BOS, tok.BOS(), tok.VocabSize())
	if err != nil {
		return nil, fmt.Errorf("bos_token_id: %w", err)
	}
	eos, err := firstID(g.EOS, tok.EOS(), tok.VocabSize())
	if err != nil {
		return nil, fmt.Errorf("eos_token_id: %w", err)
	}
	if bos == tok.BOS() && eos == tok.EOS() {
		return tok, nil
	}
	return withIDs(tok, bos, eos)
}

// firstID reads an id or a list of ids (taking the first); def when absent.
func firstID(raw json.RawMessage, def, vocab int) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return def, nil
	}
	var one int
	if err := json.Unmarshal(raw, &one); err != nil {
		var many []int
		if err := json.Unmarshal(raw, &many); err != nil || len(many) == 0 {
			return 0, fmt.Errorf("%s is neither an id nor a list of ids", raw)
		}
		one = many[0]
	}
	if one < 0 || one >= vocab {
		return 0, fmt.Errorf("id %d is outside the vocabulary of %d", one, vocab)
	}
	return one, nil
}

// withIDs rebuilds tok with other BOS and EOS ids.
func withIDs(tok tokenizer.Tokenizer, bos, eos int) (tokenizer.Tokenizer, error) {
	switch t := tok.(type) {
	case *tokenizer.SPM:
		n := t.VocabSize()
		pieces, scores, types := make([]string, n), make([]float32, n), make([]tokenizer.Type, n)
		for i := range n {
			pieces[i], scores[i], types[i] = t.Piece(i), t.Score(i), t.Type(i)
		}
		opt := t.Options()
		opt.BOS, opt.EOS = bos, eos
		return tokenizer.NewSPM(pieces, scores, types, opt)
	case *tokenizer.BPE:
		n := t.VocabSize()
		tokens, types := make([]string, n), make([]tokenizer.Type, n)
		for i := range n {
			tokens[i], types[i] = t.Piece(i), t.Type(i)
		}
		opt := t.Options()
		opt.BOS, opt.EOS = bos, eos
		return tokenizer.NewBPE(tokens, types, t.Merges(), opt)
	}
	return nil, fmt.Errorf("tokenizer of type %T", tok)
}

// withAddedTokens appends to a SentencePiece vocabulary the tokens a
// fine-tune added after it (added_tokens.json, {"[PAD]": 32000}, and
// tokenizer_config.json's added_tokens_decoder): ids from the vocabulary's
// size on, without gaps; special ones become control pieces, the others
// user-defined. Added tokens with ids inside the vocabulary must be its
// pieces already.
func withAddedTokens(spm *tokenizer.SPM, cfg, addedJSON []byte) (*tokenizer.SPM, error) {
	type tok struct {
		content string
		special bool
	}
	byID := map[int]tok{}
	if addedJSON != nil {
		var m map[string]int
		if err := json.Unmarshal(addedJSON, &m); err != nil {
			return nil, fmt.Errorf("added_tokens.json: %w", err)
		}
		for content, id := range m {
			byID[id] = tok{content, false}
		}
	}
	if cfg != nil {
		var c struct {
			Added map[string]struct {
				Content string `json:"content"`
				Special bool   `json:"special"`
			} `json:"added_tokens_decoder"`
		}
		if err := json.Unmarshal(cfg, &c); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
		for key, a := range c.Added {
			id, err := strconv.Atoi(key)
			if err != nil {
				return nil, fmt.Errorf("tokenizer_config.json: added_tokens_decoder: id %q is not a number", key)
			}
			byID[id] = tok{a.Content, a.Special}
		}
	}
	n := spm.VocabSize()
	extra := 0
	for id, t := range byID {
		switch {
		case id < 0:
			return nil, fmt.Errorf("token %q has id %d", t.content, id)
		case id < n:
			if spm.Piece(id) != t.content {
				return nil, fmt.Errorf("token %q has id %d, which tokenizer.model calls %q", t.content, id, spm.Piece(id))
			}
		default:
			extra++
		}
	}
	if extra == 0 {
		return spm, nil
	}
	pieces, scores, types := make([]string, n+extra), make([]float32, n+extra), make([]tokenizer.Type, n+extra)
	for i := range n {
		pieces[i], scores[i], types[i] = spm.Piece(i), spm.Score(i), spm.Type(i)
	}
	for id := n; id < n+extra; id++ {
		t, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("added token ids leave a gap at %d (the vocabulary has %d pieces, %d added)", id, n, extra)
		}
		pieces[id], types[id] = t.content, tokenizer.TypeUserDefined
		if t.special {
			types[id] = tokenizer.TypeControl
		}
	}
	return tokenizer.NewSPM(pieces, scores, types, spm.Options())
}
