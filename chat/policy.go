package chat

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/herd-llm/herd/format/gguf"
)

// ForModel picks the chat template herd run, chat and serve use for the
// model file at modelPath ("" is the embedded default model): name when
// given (a built-in template's name, or a Hugging Face
// tokenizer_config.json file holding a chat_template), else the GGUF
// file's own tokenizer.chat_template, else "raw" (messages joined as
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
