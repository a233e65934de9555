package data

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/herd-llm/herd/internal/fileio"
)

// ManifestName is the manifest's file name in a prepared data directory.
const ManifestName = "manifest.json"

// Manifest describes a prepared data directory: its shards, the tokenizer
// that made them, the mixture and what cleaning kept and dropped.
type Manifest struct {
	Version     int             `json:"version"`
	Tokenizer   TokenizerInfo   `json:"tokenizer"`
	Width       int             `json:"token_width"`
	Train       []ShardInfo     `json:"train"`
	Val         []ShardInfo     `json:"val"`
	TrainTokens int64           `json:"train_tokens"`
	ValTokens   int64           `json:"val_tokens"`
	Mixture     []SourceSummary `json:"mixture"`
	Stats       *Stats          `json:"stats,omitempty"`
	Warnings    []string        `json:"warnings,omitempty"` // what the preparation warned about (an empty validation split)
	Recipe      *Recipe         `json:"recipe,omitempty"`
}

// TokenizerInfo names the tokenizer of a data directory; its SentencePiece
// model is stored beside the manifest.
type TokenizerInfo struct {
	File   string `json:"file"`   // file name in the directory (a SentencePiece .model)
	SHA256 string `json:"sha256"` // of that file
	Vocab  int    `json:"vocab"`
	BOS    int    `json:"bos"` // -1: none
	EOS    int    `json:"eos"` // -1: none
}

// ShardInfo is one shard file.
type ShardInfo struct {
	File   string `json:"file"` // name in the directory
	Tokens int64  `json:"tokens"`
	Docs   int64  `json:"docs"`
}

// SourceSummary is one source's share of the mixture.
type SourceSummary struct {
	Name        string  `json:"name"`
	Weight      float64 `json:"weight"`       // the recipe's weight, normalized to sum 1
	Docs        int64   `json:"docs"`         // documents kept after cleaning and dedup
	Tokens      int64   `json:"tokens"`       // their tokens
	Epochs      float64 `json:"epochs"`       // times the source is used in the output
	TrainTokens int64   `json:"train_tokens"` // tokens it contributes to the train split
	ValTokens   int64   `json:"val_tokens"`
	Share       float64 `json:"share"` // its fraction of the train tokens
}

// WriteManifest writes m as dir/manifest.json, atomically.
func WriteManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return fileio.WriteAtomic(filepath.Join(dir, ManifestName), func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// ReadManifest reads and checks dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w (prepare one with herd data prepare)", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("%s: version %d, herd reads version 1", path, m.Version)
	}
	if m.Width != 2 && m.Width != 4 {
		return nil, fmt.Errorf("%s: token_width %d, want 2 or 4", path, m.Width)
	}
	if m.Tokenizer.Vocab <= 0 {
		return nil, fmt.Errorf("%s: tokenizer.vocab %d must be positive", path, m.Tokenizer.Vocab)
	}
	for _, s := range append(append([]ShardInfo(nil), m.Train...), m.Val...) {
		if s.File == "" || filepath.Base(s.File) != s.File {
			return nil, fmt.Errorf("%s: shard file %q must be a plain name in the directory", path, s.File)
		}
	}
	return &m, nil
}
