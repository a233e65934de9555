package convert

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/tokenizer"
)

// writeTokenizer writes tok as transformers loads it: tokenizer.model and
// a LlamaTokenizer tokenizer_config.json for SentencePiece, tokenizer.json
// and a PreTrainedTokenizerFast tokenizer_config.json for byte-level BPE.
func writeTokenizer(dir string, tok tokenizer.Tokenizer, chatTemplate string, ctx int) error {
	piece := func(id int) any {
		if id < 0 {
			return nil
		}
		return tokPiece(tok, id)
	}
	cfg := map[string]any{
		"bos_token":                    piece(tok.BOS()),
		"eos_token":                    piece(tok.EOS()),
		"model_max_length":             ctx,
		"clean_up_tokenization_spaces": false,
	}
	switch t := tok.(type) {
	case *tokenizer.SPM:
		cfg["tokenizer_class"] = "LlamaTokenizer"
		cfg["unk_token"] = piece(t.UNK())
		cfg["add_bos_token"] = true
		cfg["add_eos_token"] = false
		cfg["legacy"] = true
		cfg["sp_model_kwargs"] = map[string]any{}
		if err := fileio.WriteAtomic(filepath.Join(dir, "tokenizer.model"), func(w io.Writer) error {
			_, err := w.Write(t.MarshalModelProto())
			return err
		}); err != nil {
			return err
		}
	case *tokenizer.BPE:
		cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
		cfg["add_bos_token"] = t.Options().AddBOS
		if chatTemplate == "" {
			chatTemplate = t.ChatTemplate()
		}
		if err := writeJSON(filepath.Join(dir, "tokenizer.json"), bpeJSON(t)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("export %s: a tokenizer of type %T cannot be written for transformers", dir, tok)
	}
	if chatTemplate != "" {
		cfg["chat_template"] = chatTemplate
	}
	return writeJSON(filepath.Join(dir, "tokenizer_config.json"), cfg)
}

type namedPiece interface{ Piece(int) string }

func tokPiece(tok tokenizer.Tokenizer, id int) string {
	if p, ok := tok.(namedPiece); ok {
		return p.Piece(id)
	}
	return ""
}

// bpeJSON is the tokenizer.json of a byte-level BPE, in the shape the
// tokenizers library writes: the mergeable tokens in model.vocab, control
// and user-defined tokens in added_tokens, the split pattern as a
// pre-tokenizer, and a TemplateProcessing that puts BOS first when the
// tokenizer adds it.
func bpeJSON(t *tokenizer.BPE) map[string]any {
	opt := t.Options()
	vocab := map[string]int{}
	var added []map[string]any
	for id := range t.VocabSize() {
		switch ty := t.Type(id); ty {
		case tokenizer.TypeControl, tokenizer.TypeUserDefined:
			added = append(added, map[string]any{"id": id, "content": t.Piece(id), "single_word": false, "lstrip": false,
				"rstrip": false, "normalized": ty != tokenizer.TypeControl, "special": ty == tokenizer.TypeControl})
		default:
			vocab[t.Piece(id)] = id
		}
	}
	byteLevel := func(regex bool) map[string]any {
		return map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex}
	}
	pre := byteLevel(true)
	if opt.Pre == tokenizer.PreLlama3 {
		pre = map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": tokenizer.Llama3Pattern}, "behavior": "Isolated", "invert": false},
			byteLevel(false)}}
	}
	var post any = byteLevel(true)
	if opt.AddBOS && opt.BOS >= 0 {
		bos := t.Piece(opt.BOS)
		post = map[string]any{"type": "TemplateProcessing",
			"single": []any{map[string]any{"SpecialToken": map[string]any{"id": bos, "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"pair": []any{map[string]any{"SpecialToken": map[string]any{"id": bos, "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
				map[string]any{"SpecialToken": map[string]any{"id": bos, "type_id": 1}},
				map[string]any{"Sequence": map[string]any{"id": "B", "type_id": 1}}},
			"special_tokens": map[string]any{bos: map[string]any{"id": bos, "ids": []int{opt.BOS}, "tokens": []string{bos}}}}
	}
	return map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added, "normalizer": nil,
		"pre_tokenizer": pre, "post_processor": post, "decoder": byteLevel(true),
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": opt.IgnoreMerges,
			"vocab": vocab, "merges": t.Merges()},
	}
}
