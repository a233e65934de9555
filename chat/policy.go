package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/herd-llm/herd/format/gguf"
)

// ForModel picks the chat template herd run, chat and serve use for the
// model file at modelPath ("" is the embedded default model): name when
// given (a built-in template's name, or a Hugging Face
// tokenizer_config.json file holding a chat_template), else the GGUF
// file's own tokenizer.chat_template (or a checkpoint directory's
// tokenizer_config.json chat_template), else "raw" (messages joined as
// text). A template from a file is untrusted and compiled under the
// rendering limits (see Limits).
func ForModel(modelPath, name string) (*Template, error) {
	if strings.HasSuffix(name, ".json") {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		return FromTokenizerConfig(name, data)
	}
	if name != "" {
		return Lookup(name)
	}
	if p := filepath.Join(modelPath, "tokenizer_config.json"); modelPath != "" && hasChatTemplate(p) {
		return ForModel(modelPath, p) // a checkpoint directory's own template
	}
	if modelPath != "" && isGGUF(modelPath) {
		f, err := gguf.Open(modelPath)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		tp, ok, err := FromGGUF(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", modelPath, err)
		}
		if ok {
			return tp, nil
		}
	}
	return Lookup("raw")
}

// isGGUF reports whether the file starts with GGUF's magic.
func isGGUF(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return false
	}
	return bytes.Equal(magic[:], []byte("GGUF"))
}

// hasChatTemplate reports whether the tokenizer_config.json at path exists
// and has a chat_template.
func hasChatTemplate(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var c struct {
		T json.RawMessage `json:"chat_template"`
	}
	return json.Unmarshal(data, &c) == nil && len(c.T) > 0 && string(c.T) != "null"
}
