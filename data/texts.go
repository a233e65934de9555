package data

// ReadTexts calls visit for every document of path as `herd data prepare`
// reads a source: a text file (one document), JSONL with a "text" field, a
// .gz or .zst of either, a directory (its files, sorted) or a glob. It is
// how calibration text reaches GPTQ and imatrix.
func ReadTexts(path string, visit func(doc string) error) error {
	s := &Source{Name: path, Paths: []string{path}, Weight: 1}
	files, err := s.files()
	if err != nil {
		return err
	}
	for _, f := range files {
		var c readCounts // documents over DefaultMaxDoc are skipped, as data prepare skips them
		if err := s.readDocs(f, DefaultMaxDoc, func(doc string, _ int64) error { return visit(doc) }, &c); err != nil {
			return err // readDocs names the file
		}
	}
	return nil
}
