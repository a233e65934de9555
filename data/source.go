package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// Source is one corpus of a mixture: files of one kind and their weight.
type Source struct {
	Name  string   `yaml:"name"`
	Paths []string `yaml:"paths"` // files, directories (walked, sorted) and globs
	// Weight is the source's share of the training tokens, relative to the
	// other sources' weights.
	Weight float64 `yaml:"weight"`
	// Format is "text" or "jsonl"; empty means by extension (.jsonl and
	// .json are JSONL, anything else text), after a .gz or .zst suffix.
	Format string `yaml:"format,omitempty"`
	// TextField is the JSONL field holding the document ("text", as in
	// RedPajama and SlimPajama's {"text", "meta"} rows).
	TextField string `yaml:"text_field,omitempty"`
	// Split cuts a text file into documents: "file" (the whole file, the
	// default), "line", "paragraph" (blank-line separated) or "sep:S" (at
	// each occurrence of the string S, e.g. sep:<|endoftext|>).
	Split string `yaml:"split,omitempty"`
	// Val sends every document of the source to the validation split.
	Val bool `yaml:"val,omitempty"`
}

// files expands the source's paths into a sorted list of files.
func (s *Source) files() ([]string, error) {
	var out []string
	for _, p := range s.Paths {
		matches := []string{p}
		if strings.ContainsAny(p, "*?[") {
			m, err := filepath.Glob(p)
			if err != nil {
				return nil, fmt.Errorf("source %s: pattern %q: %w", s.Name, p, err)
			}
			if len(m) == 0 {
				return nil, fmt.Errorf("source %s: pattern %q matches no file", s.Name, p)
			}
			matches = m
		}
		for _, m := range matches {
			st, err := os.Stat(m)
			if err != nil {
				return nil, fmt.Errorf("source %s: %w", s.Name, err)
			}
			if !st.IsDir() {
				out = append(out, m)
				continue
			}
			var found []string
			err = filepath.WalkDir(m, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
					found = append(found, path)
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("source %s: %w", s.Name, err)
			}
			sort.Strings(found)
			out = append(out, found...)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("source %s: no files", s.Name)
	}
	return out, nil
}

// format is the document format of path: the source's, or by extension.
func (s *Source) format(path string) string {
	if s.Format != "" {
		return s.Format
	}
	base := strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(path), ".gz"), ".zst")
	switch filepath.Ext(base) {
	case ".jsonl", ".json", ".ndjson":
		return "jsonl"
	}
	return "text"
}

// check validates the source's settings.
func (s *Source) check() error {
	switch {
	case s.Name == "":
		return fmt.Errorf("a source has no name")
	case len(s.Paths) == 0:
		return fmt.Errorf("source %s: no paths", s.Name)
	case s.Weight < 0:
		return fmt.Errorf("source %s: weight %g is negative", s.Name, s.Weight)
	case s.Format != "" && s.Format != "text" && s.Format != "jsonl":
		return fmt.Errorf("source %s: format %q: want text or jsonl", s.Name, s.Format)
	}
	switch sp := s.Split; {
	case sp == "", sp == "file", sp == "line", sp == "paragraph":
	case strings.HasPrefix(sp, "sep:") && len(sp) > 4:
	default:
		return fmt.Errorf("source %s: split %q: want file, line, paragraph or sep:STRING", s.Name, sp)
	}
	return nil
}

// openFile opens path, decompressing .gz and .zst (by extension, or by
// magic number).
func openFile(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 1<<16)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		z, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return readCloser{z, func() error { z.Close(); return f.Close() }}, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return readCloser{z, func() error { z.Close(); return f.Close() }}, nil
	case strings.HasSuffix(path, ".gz") || strings.HasSuffix(path, ".zst"):
		f.Close()
		return nil, fmt.Errorf("%s: the name says compressed, the content is not gzip or zstd", path)
	}
	return readCloser{br, f.Close}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// maxFile is the largest text file read (bytes); a text file is read
// whole to be split into documents.
const maxFile = 1 << 30

// DefaultMaxDoc is the longest document (or JSONL row) kept, in bytes
// (16 MiB: the longest books of pretraining corpora are a few MiB). A
// longer one is dropped, counted as too_long, before it is cleaned or
// tokenized, so it costs no more memory than the limit.
const DefaultMaxDoc = 16 << 20

// utf8BOM is the byte-order mark some editors write at the start of a
// UTF-8 file; it is not part of the first document.
var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// readCounts are what the reading of a source counts before the workers
// see its documents.
type readCounts struct {
	TooLong     int64 // documents (or JSONL rows) over the size limit, skipped unread
	RawBytes    int64 // bytes of those
	InvalidUTF8 int64 // JSONL rows holding invalid UTF-8 (the JSON decoder replaces it with U+FFFD)
}

func (c *readCounts) tooLong(raw int64) { c.TooLong++; c.RawBytes += raw }

// readDocs calls emit for every document of one file, with the bytes the
// file contributed since the previous document (to measure throughput).
// Documents, and JSONL rows, longer than maxDoc bytes are not emitted but
// counted in c, as JSONL rows of invalid UTF-8 are.
func (s *Source) readDocs(path string, maxDoc int, emit func(doc string, raw int64) error, c *readCounts) error {
	r, err := openFile(path)
	if err != nil {
		return err
	}
	defer r.Close()
	if s.format(path) == "jsonl" {
		return s.readJSONL(path, bufio.NewReaderSize(r, 1<<16), maxDoc, emit, c)
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(min(maxFile, maxDoc))+1))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if s.Split == "" || s.Split == "file" {
		if len(b) > maxDoc { // the whole file is one document: skip the rest unread
			n, err := io.Copy(io.Discard, r)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			c.tooLong(int64(len(b)) + n)
			return nil
		}
		return emit(string(bytes.TrimPrefix(b, utf8BOM)), int64(len(b)))
	}
	if len(b) > maxDoc {
		rest, err := io.ReadAll(io.LimitReader(r, int64(maxFile-len(b))+1))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		b = append(b, rest...)
	}
	if len(b) > maxFile {
		return fmt.Errorf("%s: larger than %d MiB of text: split it into files or use JSONL", path, maxFile>>20)
	}
	text := string(bytes.TrimPrefix(b, utf8BOM))
	raw := int64(len(b))
	b = nil
	var docs []string
	switch sp := s.Split; {
	case sp == "line":
		docs = strings.Split(text, "\n")
	case sp == "paragraph":
		docs = splitParagraphs(text)
	default:
		docs = strings.Split(text, sp[len("sep:"):])
	}
	for _, d := range docs {
		if len(d) > maxDoc {
			c.tooLong(raw)
		} else if err := emit(d, raw); err != nil {
			return err
		}
		raw = 0
	}
	return nil
}

// readJSONL emits the text field of every row of a JSON Lines file; a row
// longer than maxDoc bytes is skipped (read, not kept) and counted.
func (s *Source) readJSONL(path string, br *bufio.Reader, maxDoc int, emit func(doc string, raw int64) error, c *readCounts) error {
	field := s.TextField
	if field == "" {
		field = "text"
	}
	var buf []byte
	for line := 1; ; line++ {
		// the row: its first maxDoc+1 bytes kept (a row of maxDoc and its
		// newline), its length and whether it holds anything but
		// whitespace counted to its end
		buf = buf[:0]
		nonBlank := false
		var n int64
		var err error
		for {
			var chunk []byte
			chunk, err = br.ReadSlice('\n')
			n += int64(len(chunk))
			if len(bytes.TrimSpace(chunk)) > 0 {
				nonBlank = true
			}
			if room := maxDoc + 1 - len(buf); room > 0 {
				buf = append(buf, chunk[:min(len(chunk), room)]...)
			}
			if err != bufio.ErrBufferFull {
				break
			}
		}
		size := n
		if err == nil {
			size-- // the newline
		}
		over := size > int64(maxDoc)
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if over && nonBlank {
			c.tooLong(n)
		} else if b := bytes.TrimSpace(bom(buf, line)); len(b) > 0 && !over {
			text, err := rowText(b, field)
			if err != nil {
				return fmt.Errorf("%s:%d: %w", path, line, err)
			}
			if !utf8.Valid(b) || surrogate(b, text) {
				c.InvalidUTF8++
			}
			if err := emit(text, n); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// bom drops the byte-order mark from the first line of a file.
func bom(b []byte, line int) []byte {
	if line == 1 {
		return bytes.TrimPrefix(b, utf8BOM)
	}
	return b
}

// surrogate reports whether text holds a U+FFFD that its JSON row b does
// not: one decoding made of an unpaired \uD800-\uDFFF escape.
func surrogate(b []byte, text string) bool {
	return strings.ContainsRune(text, utf8.RuneError) && !bytes.Contains(b, []byte("\uFFFD")) &&
		!bytes.Contains(bytes.ToLower(b), []byte(`\ufffd`))
}

// rowText is the string in field of one JSONL row.
func rowText(b []byte, field string) (string, error) {
	var row map[string]json.RawMessage
	if err := json.Unmarshal(b, &row); err != nil {
		return "", fmt.Errorf("not a JSON object: %w", err)
	}
	raw, ok := row[field]
	if !ok {
		return "", fmt.Errorf("no %q field", field)
	}
	var text string
	if err := json.Unmarshal(raw, &text); err != nil {
		return "", fmt.Errorf("field %q is not a string", field)
	}
	return text, nil
}

// splitParagraphs cuts text at runs of blank lines.
func splitParagraphs(text string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
			continue
		}
		if cur.Len() > 0 {
			cur.WriteByte('\n')
		}
		cur.WriteString(line)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}
