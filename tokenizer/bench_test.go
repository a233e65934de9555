package tokenizer

import (
	"os"
	"os/exec"
	"strconv"
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

// BenchmarkSPMEncodeOracle runs the reference, Debian's spm_encode, on the
// same TinyStories head with the LLaMA .model (process start included, as
// the file is encoded in one run): compare its MB/s with
// BenchmarkEncodeLlama in the same go test run.
func BenchmarkSPMEncodeOracle(b *testing.B) {
	needOracle(b)
	if _, err := os.Stat(llamaModelPath); err != nil {
		b.Skipf("LLaMA .model not available: %v", err)
	}
	st, err := os.Stat(tinyStoriesPath)
	if err != nil {
		b.Skipf("TinyStories head not available: %v", err)
	}
	b.SetBytes(st.Size())
	for b.Loop() {
		cmd := exec.Command("spm_encode", "--model="+llamaModelPath, "--output_format=id", "--input="+tinyStoriesPath)
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeBatchLlama encodes the TinyStories head as many documents
// (its lines) with EncodeBatch on 1, 2 and 4 goroutines: scaling with cores.
func BenchmarkEncodeBatchLlama(b *testing.B) {
	tk := loadLlama(b)
	data, err := os.ReadFile(tinyStoriesPath)
	if err != nil {
		b.Skipf("TinyStories head not available: %v", err)
	}
	docs := strings.Split(string(data), "\n")
	for _, threads := range []int{1, 2, 4} {
		b.Run("threads="+strconv.Itoa(threads), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				EncodeBatch(tk, docs, true, false, false, threads)
			}
		})
	}
}

// BenchmarkEncodeLlama3 encodes the TinyStories head with the Llama 3.2
// byte-level BPE, one line at a time.
func BenchmarkEncodeLlama3(b *testing.B) {
	tk := loadLlama3(b)
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

// BenchmarkTrain4096 trains a 4096-piece vocabulary on the TinyStories
// head; MB/s of training text.
func BenchmarkTrain4096(b *testing.B) {
	data, err := os.ReadFile(tinyStoriesPath)
	if err != nil {
		b.Skipf("TinyStories head not available: %v", err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := Train(strings.NewReader(string(data)), TrainOptions{VocabSize: 4096, ByteFallback: true}); err != nil {
			b.Fatal(err)
		}
	}
}
