package llama2c

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"github.com/herd-llm/herd/internal/fileio"
	"io"
	"math"
	"os"
)

// Tokenizer is the content of a llama2.c tokenizer.bin: an int32
// max_token_length, then for each token a float32 score, an int32 byte
// length and the piece's bytes.
type Tokenizer struct {
	MaxTokenLength int       // longest piece in bytes
	Pieces         []string  // token pieces, by id
	Scores         []float32 // merge scores, by id
}

// ReadTokenizer reads a tokenizer.bin file; see ParseTokenizer.
func ReadTokenizer(path string, vocabSize int) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("llama2c tokenizer %s: %w", path, err)
	}
	return ParseTokenizer(path, data, vocabSize)
}

// ParseTokenizer parses tokenizer.bin bytes. With vocabSize > 0 it reads
// exactly that many tokens (as run.c does) and the file must end there;
// with vocabSize <= 0 it reads tokens up to the end of the file.
func ParseTokenizer(name string, data []byte, vocabSize int) (*Tokenizer, error) {
	errorf := func(format string, args ...any) error {
		return fmt.Errorf("llama2c tokenizer %s: "+format, append([]any{name}, args...)...)
	}
	if len(data) < 4 {
		return nil, errorf("truncated: %d bytes, want at least 4", len(data))
	}
	maxLen := int32(binary.LittleEndian.Uint32(data))
	if maxLen < 0 {
		return nil, errorf("max_token_length is %d", maxLen)
	}
	t := &Tokenizer{MaxTokenLength: int(maxLen)}
	if vocabSize > 0 {
		// Each token takes at least 8 bytes (score and length).
		if uint64(vocabSize) > uint64(len(data)-4)/8 {
			return nil, errorf("%d tokens cannot fit in %d bytes", vocabSize, len(data))
		}
		t.Pieces = make([]string, 0, vocabSize)
		t.Scores = make([]float32, 0, vocabSize)
	}
	off := 4
	for i := 0; vocabSize <= 0 && off < len(data) || i < vocabSize; i++ {
		if len(data)-off < 8 {
			return nil, errorf("token %d at offset %d: truncated", i, off)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int32(binary.LittleEndian.Uint32(data[off+4:]))
		off += 8
		if n < 0 || n > maxLen {
			return nil, errorf("token %d at offset %d: length %d, want 0 to max_token_length %d", i, off-4, n, maxLen)
		}
		if int(n) > len(data)-off {
			return nil, errorf("token %d at offset %d: length %d runs past the end of the file", i, off-4, n)
		}
		t.Pieces = append(t.Pieces, string(data[off:off+int(n)]))
		t.Scores = append(t.Scores, score)
		off += int(n)
	}
	if off != len(data) {
		return nil, errorf("%d bytes left after %d tokens", len(data)-off, len(t.Pieces))
	}
	return t, nil
}

// WriteTo writes the tokenizer in tokenizer.bin format. A MaxTokenLength
// of 0 is replaced by the longest piece's length.
func (t *Tokenizer) WriteTo(w io.Writer) (int64, error) {
	if len(t.Scores) != len(t.Pieces) {
		return 0, fmt.Errorf("llama2c tokenizer: %d pieces but %d scores", len(t.Pieces), len(t.Scores))
	}
	longest := 0
	for _, p := range t.Pieces {
		longest = max(longest, len(p))
	}
	maxLen := t.MaxTokenLength
	if maxLen == 0 {
		maxLen = longest
	}
	if maxLen < longest || maxLen > math.MaxInt32 {
		return 0, fmt.Errorf("llama2c tokenizer: max_token_length %d, longest piece is %d bytes", maxLen, longest)
	}
	bw := bufio.NewWriter(w)
	cw := &countWriter{w: bw}
	cw.write(binary.LittleEndian.AppendUint32(nil, uint32(maxLen)))
	var rec []byte
	for i, p := range t.Pieces {
		rec = binary.LittleEndian.AppendUint32(rec[:0], math.Float32bits(t.Scores[i]))
		rec = binary.LittleEndian.AppendUint32(rec, uint32(len(p)))
		cw.write(append(rec, p...))
	}
	if cw.err == nil {
		cw.err = bw.Flush()
	}
	if cw.err != nil {
		return cw.n, fmt.Errorf("llama2c tokenizer: write: %w", cw.err)
	}
	return cw.n, nil
}

// WriteTokenizer writes t to path atomically (see Tokenizer.WriteTo).
func WriteTokenizer(path string, t *Tokenizer) error {
	if err := fileio.WriteAtomic(path, func(w io.Writer) error {
		_, err := t.WriteTo(w)
		return err
	}); err != nil {
		return fmt.Errorf("llama2c %s: %w", path, err)
	}
	return nil
}
