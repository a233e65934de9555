package tasks

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// readRecords reads the documents of a data path: a JSONL file, a CSV file
// in MMLU's original layout, or a glob of them (matches in name order, as
// one list; MMLU's subject then comes from each file's name).
func readRecords(path string) ([]record, error) {
	files := []string{path}
	if strings.ContainsAny(path, "*?[") {
		m, err := filepath.Glob(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%s: no file matches", path)
		}
		files = m // Glob sorts
	}
	var out []record
	for _, f := range files {
		read := readJSONL
		if strings.EqualFold(filepath.Ext(f), ".csv") {
			read = readMMLUCSV
		}
		recs, err := read(f)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

// readMMLUCSV reads a CSV file of the original MMLU release (Hendrycks et
// al.: data/{dev,val,test}/SUBJECT_{dev,val,test}.csv, no header): question,
// four choices, the answer's letter. Each row becomes the record the mmlu
// layout reads: {question, choices, answer (index)}; the subject is the
// file's name.
func readMMLUCSV(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	var out []record
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err) // a csv.ParseError names its line
		}
		line, _ := r.FieldPos(0)
		src := fmt.Sprintf("%s:%d", path, line)
		if len(row) != 6 {
			return nil, fmt.Errorf("%s: %d fields, an MMLU row has 6 (question, A, B, C, D, answer)", src, len(row))
		}
		ans := strings.TrimSpace(row[5])
		if len(ans) != 1 || ans[0] < 'A' || ans[0] > 'D' {
			return nil, fmt.Errorf("%s: answer %q is out of range: want A, B, C or D", src, row[5])
		}
		choices := []any{row[1], row[2], row[3], row[4]}
		m := map[string]any{"question": row[0], "choices": choices, "answer": json.Number(strconv.Itoa(int(ans[0] - 'A')))}
		out = append(out, record{src, m})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no documents", path)
	}
	return out, nil
}
