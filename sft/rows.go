package sft

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
)

// gunzip inflates a gzip file's bytes.
func gunzip(b []byte) ([]byte, error) {
	z, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	defer z.Close()
	out, err := io.ReadAll(z)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return out, nil
}

// NextRaw returns the next row's JSON as it stands in the file and where it
// starts (file:line), or io.EOF after the last: the same rows Next reads,
// for readers of other row layouts (preference pairs) to parse themselves.
func (r *Reader) NextRaw() (json.RawMessage, int, error) {
	raw, line, err := r.nextRow()
	if err == nil {
		r.rows++
	}
	return raw, line, err
}

// Path is the file the reader reads.
func (r *Reader) Path() string { return r.path }

// SkipBad says whether the reader was opened to skip malformed rows.
func (r *Reader) SkipBad() bool { return r.skipBad }

// CountBad counts one malformed row skipped by a caller of NextRaw.
func (r *Reader) CountBad() { r.bad++ }
