package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"

	"github.com/herd-llm/herd/oai"
)

// The output is an append-only JSON Lines file, one kept item per line,
// each with a stable "id". Beside it, OUT.journal records every unit of
// work finished (a request or a few, and what they kept and dropped), one
// line per unit, written after the unit's items. A run that stops at any
// point leaves at most one unit's items without a journal line and perhaps
// a half-written last line; Resume cuts those off and does that unit
// again, so the final file is the one an uninterrupted run writes.

// Header is the journal's first line: the pipeline and a fingerprint of
// the settings that decide the output, so a resume with other settings is
// refused.
type Header struct {
	Pipeline string `json:"pipeline"`
	Settings string `json:"settings"`
}

// journalUnit is one finished unit.
type journalUnit struct {
	Unit     string         `json:"unit"`
	Kept     []string       `json:"kept,omitempty"`
	Drops    map[string]int `json:"drops,omitempty"`
	Usage    oai.Usage      `json:"usage"`
	Requests int            `json:"requests"`
}

// store is the output file and its journal.
type store struct {
	path       string
	out, jr    *os.File
	done       map[string]bool
	items      map[string]json.RawMessage // resumed items by id
	order      []string                   // resumed ids in file order
	stats      Stats
	header     Header
	hadJournal bool
}

// Path is the journal written beside an output file.
func Path(out string) string { return out + ".journal" }

// openStore opens the output for a new run (refusing to overwrite a
// non-empty file) or, with resume, reads what is done and cuts off what a
// stopped run left unfinished.
func openStore(path string, resume bool, h Header) (*store, error) {
	s := &store{path: path, done: map[string]bool{}, items: map[string]json.RawMessage{}, header: h}
	s.stats.Drops = map[string]int{}
	if !resume {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return nil, fmt.Errorf("output %s exists; pass --resume to continue it, or remove it", path)
		}
		return s, s.create()
	}
	jb, err := os.ReadFile(Path(path))
	if errors.Is(err, fs.ErrNotExist) {
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return nil, fmt.Errorf("resume %s: it has no journal %s, so what is done cannot be told", path, Path(path))
		}
		return s, s.create()
	}
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", path, err)
	}
	jlen, kept, err := s.readJournal(jb)
	if err != nil {
		return nil, err
	}
	ob, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("resume %s: %w", path, err)
	}
	olen, err := s.readOutput(ob, kept)
	if err != nil {
		return nil, err
	}
	if s.out, err = openAt(path, olen); err != nil {
		return nil, err
	}
	if s.jr, err = openAt(Path(path), jlen); err != nil {
		s.out.Close()
		return nil, err
	}
	if jlen == 0 {
		b, _ := json.Marshal(s.header)
		if _, err := s.jr.Write(append(b, '\n')); err != nil {
			s.close()
			return nil, fmt.Errorf("output journal: %w", err)
		}
	}
	return s, nil
}

// create starts an empty output and journal.
func (s *store) create() error {
	var err error
	if s.out, err = os.OpenFile(s.path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	if s.jr, err = os.OpenFile(Path(s.path), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644); err != nil {
		s.out.Close()
		return fmt.Errorf("output journal: %w", err)
	}
	b, _ := json.Marshal(s.header)
	if _, err := s.jr.Write(append(b, '\n')); err != nil {
		s.close()
		return fmt.Errorf("output journal: %w", err)
	}
	return nil
}

// openAt opens path for appending after cutting it to n bytes.
func openAt(path string, n int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	if err := f.Truncate(n); err != nil {
		f.Close()
		return nil, fmt.Errorf("resume %s: %w", path, err)
	}
	if _, err := f.Seek(n, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("resume %s: %w", path, err)
	}
	return f, nil
}

// lines calls each with every complete line of b (a last line without its
// newline is unfinished and not passed) and returns the bytes consumed.
func lines(b []byte, each func(line []byte, no int) error) (int64, error) {
	off, no := 0, 0
	for {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return int64(off), nil
		}
		no++
		if err := each(b[off:off+i], no); err != nil {
			return int64(off), err
		}
		off += i + 1
	}
}

// readJournal reads the units done; it returns the journal's valid length
// and the ids it says were kept.
func (s *store) readJournal(b []byte) (int64, map[string]bool, error) {
	kept := map[string]bool{}
	jp := Path(s.path)
	n, err := lines(b, func(ln []byte, no int) error {
		if no == 1 {
			var h Header
			if err := json.Unmarshal(ln, &h); err != nil {
				return fmt.Errorf("%s:1: not a journal header: %v", jp, err)
			}
			if h != s.header {
				return fmt.Errorf("%s: written by %s with other settings (%s); this run has %s: resume with the same flags, or start a new output", jp, h.Pipeline, h.Settings, s.header.Settings)
			}
			s.hadJournal = true
			return nil
		}
		var u journalUnit
		if err := json.Unmarshal(ln, &u); err != nil || u.Unit == "" {
			return fmt.Errorf("%s:%d: not a journal line: %q", jp, no, ln)
		}
		s.done[u.Unit] = true
		for _, id := range u.Kept {
			kept[id] = true
		}
		s.stats.add(&u)
		return nil
	})
	if err == nil && !s.hadJournal && n > 0 {
		err = fmt.Errorf("%s: no header line", jp)
	}
	if !s.hadJournal { // not even the header was finished: start over
		return 0, kept, err
	}
	return n, kept, err
}

// readOutput reads the items the journal vouches for and returns the
// length of the output they fill; items after them belong to the unit
// that was cut short.
func (s *store) readOutput(b []byte, kept map[string]bool) (int64, error) {
	var valid int64
	var extra bool
	_, err := lines(b, func(ln []byte, no int) error {
		var row struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(ln, &row); err != nil || row.ID == "" {
			if extra {
				return errStop
			}
			return fmt.Errorf("%s:%d: not an item with an id: %q", s.path, no, ln)
		}
		if !kept[row.ID] {
			extra = true
			return nil
		}
		if extra {
			return fmt.Errorf("%s:%d: item %q comes after items of an unfinished unit; the file was changed by hand", s.path, no, row.ID)
		}
		if _, dup := s.items[row.ID]; dup {
			return fmt.Errorf("%s:%d: item %q twice", s.path, no, row.ID)
		}
		s.items[row.ID] = slices.Clone(ln)
		s.order = append(s.order, row.ID)
		valid += int64(len(ln)) + 1
		return nil
	})
	if err != nil && err != errStop {
		return 0, err
	}
	if len(s.items) != len(kept) {
		for _, id := range slices.Sorted(maps.Keys(kept)) {
			if _, ok := s.items[id]; !ok {
				return 0, fmt.Errorf("resume %s: the journal lists item %q, which the output lacks", s.path, id)
			}
		}
	}
	return valid, nil
}

var errStop = errors.New("stop")

// commit appends a unit's items, then its journal line.
func (s *store) commit(u *Unit) error {
	var buf bytes.Buffer
	for _, it := range u.items {
		buf.Write(it)
		buf.WriteByte('\n')
	}
	if _, err := s.out.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("output %s: %w", s.path, err)
	}
	j := journalUnit{Unit: u.Key, Kept: u.ids, Drops: u.drops, Usage: u.usage, Requests: u.requests}
	b, _ := json.Marshal(j)
	if _, err := s.jr.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("output journal %s: %w", Path(s.path), err)
	}
	s.done[u.Key] = true
	s.stats.add(&j)
	return nil
}

// close syncs and closes both files.
func (s *store) close() error {
	var errs []error
	for _, f := range []*os.File{s.out, s.jr} {
		if f != nil {
			errs = append(errs, f.Sync(), f.Close())
		}
	}
	return errors.Join(errs...)
}
