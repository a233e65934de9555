package tokenizer

import (
	"os"
	"strings"
	"testing"
)

const tinyStoriesPath = "/work/shared/data/pretrain/tinystories_train_head.txt"

// BenchmarkEncodeLlama encodes the 944 KB TinyStories head with the LLaMA
// vocabulary one line at a time, as spm_encode reads it, and reports MB/s
// of input text.
func BenchmarkEncodeLlama(b *testing.B) {
	tk := loadLlama(b)
	data, err := os.ReadFile(tinyStoriesPath)
	if err != nil {
		b.Skipf("TinyStories head not available: %v", err)
	}
	lines := strings.Split(string(data), "\n")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for _, l := range lines {
			tk.Encode(l, false, false)
		}
	}
}

// BenchmarkEncodeLlamaWhole encodes the same file as one text.
func BenchmarkEncodeLlamaWhole(b *testing.B) {
	tk := loadLlama(b)
	data, err := os.ReadFile(tinyStoriesPath)
	if err != nil {
		b.Skipf("TinyStories head not available: %v", err)
	}
	text := string(data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		tk.Encode(text, true, false)
	}
}

// BenchmarkEncodeTok512 encodes the shipped golden story with tok512.
func BenchmarkEncodeTok512(b *testing.B) {
	tk := loadTok512(b)
	data, err := os.ReadFile("testdata/stories260K-greedy-200.txt")
	if err != nil {
		b.Fatal(err)
	}
	text := string(data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		tk.Encode(text, true, false)
	}
}

// BenchmarkDecodeLlama decodes the TinyStories head's ids; MB/s of text.
func BenchmarkDecodeLlama(b *testing.B) {
	tk := loadLlama(b)
	data, err := os.ReadFile(tinyStoriesPath)
	if err != nil {
		b.Skipf("TinyStories head not available: %v", err)
	}
	ids := tk.Encode(string(data), true, false)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		tk.Decode(ids)
	}
}
