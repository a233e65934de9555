// Package data turns text corpora into token shards and feeds them to
// training: sources (plain text, JSONL, gzip, zstd, directories, globs)
// mixed by weight, cleaning and deduplication, parallel tokenization, packed
// shards with a JSON manifest, and a deterministic, resumable loader.
package data

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"github.com/herd-llm/herd/internal/fileio"
)

// A shard file is a 32-byte header and then its tokens, little-endian:
//
//	offset  size  field
//	0       8     magic "HERDTOK\x00"
//	8       4     version (1)
//	12      4     token width in bytes: 2 (vocabulary < 65536) or 4
//	16      8     token count
//	24      8     document count
//	32      ...   count tokens of width bytes each
//
// Documents follow each other, each opened by BOS (when the tokenizer has
// one) and closed by EOS (when the recipe asks for it).
const (
	shardMagic   = "HERDTOK\x00"
	shardVersion = 1
	headerSize   = 32
)

// TokenWidth is the bytes a token takes in a shard for a vocabulary of
// vocab tokens.
func TokenWidth(vocab int) int {
	if vocab < 1<<16 {
		return 2
	}
	return 4
}

// ShardWriter writes one shard: tokens stream to a temporary file beside
// the target, and Close writes the header, syncs and renames.
type ShardWriter struct {
	path, tmp string
	f         *os.File
	w         *bufio.Writer
	width     int
	count     int64
	docs      int64
	buf       [4]byte
}

// CreateShard starts a shard at path for tokens of width bytes (2 or 4).
func CreateShard(path string, width int) (*ShardWriter, error) {
	if width != 2 && width != 4 {
		return nil, fmt.Errorf("shard %s: token width %d, want 2 or 4", path, width)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".shard-*")
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", path, err)
	}
	s := &ShardWriter{path: path, tmp: f.Name(), f: f, w: bufio.NewWriterSize(f, 1<<20), width: width}
	if err := f.Chmod(0o644); err != nil {
		s.Abort()
		return nil, fmt.Errorf("shard %s: %w", path, err)
	}
	if _, err := s.w.Write(make([]byte, headerSize)); err != nil {
		s.Abort()
		return nil, fmt.Errorf("shard %s: %w", path, err)
	}
	return s, nil
}

// WriteDoc appends one document's tokens (its BOS/EOS included).
func (s *ShardWriter) WriteDoc(tokens []int32) error {
	for _, t := range tokens {
		if s.width == 2 {
			if t < 0 || t >= 1<<16 {
				return fmt.Errorf("shard %s: token %d does not fit 16 bits", s.path, t)
			}
			binary.LittleEndian.PutUint16(s.buf[:2], uint16(t))
		} else {
			binary.LittleEndian.PutUint32(s.buf[:4], uint32(t))
		}
		if _, err := s.w.Write(s.buf[:s.width]); err != nil {
			return fmt.Errorf("shard %s: %w", s.path, err)
		}
	}
	s.count += int64(len(tokens))
	s.docs++
	return nil
}

// Tokens is the number of tokens written so far.
func (s *ShardWriter) Tokens() int64 { return s.count }

// Close finishes the shard: header, sync, rename over the target.
func (s *ShardWriter) Close() error {
	err := s.w.Flush()
	if err == nil {
		var h [headerSize]byte
		copy(h[:8], shardMagic)
		binary.LittleEndian.PutUint32(h[8:], shardVersion)
		binary.LittleEndian.PutUint32(h[12:], uint32(s.width))
		binary.LittleEndian.PutUint64(h[16:], uint64(s.count))
		binary.LittleEndian.PutUint64(h[24:], uint64(s.docs))
		_, err = s.f.WriteAt(h[:], 0)
	}
	if err == nil {
		err = s.f.Sync()
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(s.tmp, s.path)
	}
	if err != nil {
		os.Remove(s.tmp)
		return fmt.Errorf("shard %s: %w", s.path, err)
	}
	return nil
}

// Abort discards the shard.
func (s *ShardWriter) Abort() {
	s.f.Close()
	os.Remove(s.tmp)
}

// Shard is an open, memory-mapped shard.
type Shard struct {
	Path  string
	Width int   // bytes per token
	Count int64 // tokens
	Docs  int64 // documents
	data  []byte
	close func() error
}

// OpenShard maps a shard file and checks its header against its size.
func OpenShard(path string) (*Shard, error) {
	b, closer, err := fileio.Map(path)
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", path, err)
	}
	s, err := parseShard(path, b)
	if err != nil {
		closer()
		return nil, err
	}
	s.close = closer
	return s, nil
}

func parseShard(path string, b []byte) (*Shard, error) {
	if len(b) < headerSize {
		return nil, fmt.Errorf("shard %s: %d bytes, too short for the %d-byte header", path, len(b), headerSize)
	}
	if string(b[:8]) != shardMagic {
		return nil, fmt.Errorf("shard %s: bad magic %q (not a herd token shard)", path, b[:8])
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != shardVersion {
		return nil, fmt.Errorf("shard %s: version %d, herd reads version %d", path, v, shardVersion)
	}
	w := binary.LittleEndian.Uint32(b[12:])
	if w != 2 && w != 4 {
		return nil, fmt.Errorf("shard %s: token width %d, want 2 or 4", path, w)
	}
	n := binary.LittleEndian.Uint64(b[16:])
	if avail := uint64(len(b)-headerSize) / uint64(w); n != avail || uint64(len(b)-headerSize)%uint64(w) != 0 {
		return nil, fmt.Errorf("shard %s: header says %d tokens, the file holds %d bytes of tokens", path, n, len(b)-headerSize)
	}
	return &Shard{Path: path, Width: int(w), Count: int64(n), Docs: int64(binary.LittleEndian.Uint64(b[24:])), data: b[headerSize:]}, nil
}

// At is token i.
func (s *Shard) At(i int64) int {
	if s.Width == 2 {
		return int(binary.LittleEndian.Uint16(s.data[2*i:]))
	}
	return int(binary.LittleEndian.Uint32(s.data[4*i:]))
}

// Read copies tokens [off, off+len(dst)) into dst.
func (s *Shard) Read(dst []int, off int64) {
	if s.Width == 2 {
		b := s.data[2*off : 2*(off+int64(len(dst)))]
		for i := range dst {
			dst[i] = int(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return
	}
	b := s.data[4*off : 4*(off+int64(len(dst)))]
	for i := range dst {
		dst[i] = int(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

// Close unmaps the shard.
func (s *Shard) Close() error {
	if s.close == nil {
		return nil
	}
	c := s.close
	s.close = nil
	return c()
}
