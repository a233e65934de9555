package tasks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads a task as the command line names it: NAME=FILE[,FEWSHOT] for
// a built-in layout (Builtins) over a JSONL file and an optional JSONL file
// of few-shot examples (the training or dev split; the same path as FILE
// draws them from the evaluated documents, never a document itself), or
// the path of a YAML task file. A data path may be a glob, read in name
// order; a .csv file is MMLU's original layout (question, A–D, letter).
func Load(spec string) (*Task, error) {
	if ext := strings.ToLower(filepath.Ext(spec)); ext == ".yaml" || ext == ".yml" {
		return LoadFile(spec)
	}
	if name, files, ok := strings.Cut(spec, "="); ok {
		eval, shots, _ := strings.Cut(files, ",")
		return LoadBuiltin(name, name, eval, shots)
	}
	if _, ok := builtins[spec]; ok {
		return nil, fmt.Errorf("task %s: give its data, as %s=FILE.jsonl[,FEWSHOT.jsonl] (herd downloads nothing)", spec, spec)
	}
	return LoadFile(spec)
}

// LoadBuiltin reads a built-in layout's documents; task names the result.
func LoadBuiltin(layout, task, evalPath, shotsPath string) (*Task, error) {
	b, ok := builtins[layout]
	if !ok {
		return nil, fmt.Errorf("unknown task %q: the built-in tasks are %s, or give a YAML task file", layout, strings.Join(Builtins(), ", "))
	}
	t := &Task{Name: task}
	b.setup(t)
	var err error
	if t.Docs, err = readDocs(evalPath, b.read); err != nil {
		return nil, err
	}
	if shotsPath != "" {
		if t.Pool, err = readDocs(shotsPath, b.read); err != nil {
			return nil, err
		}
		t.SamePool = filepath.Clean(shotsPath) == filepath.Clean(evalPath)
	}
	return t, nil
}

// readDocs reads a JSONL file through a layout.
func readDocs(path string, read reader) ([]Doc, error) {
	if path == "" {
		return nil, fmt.Errorf("no data file given")
	}
	recs, err := readRecords(path)
	if err != nil {
		return nil, err
	}
	docs := make([]Doc, len(recs))
	for i, r := range recs {
		if docs[i], err = read(r); err != nil {
			return nil, err
		}
		docs[i].Src, docs[i].raw = r.src, r.m
	}
	return docs, nil
}

// taskFile is the YAML task file: the harness's task keys that herd
// understands, plus the data files.
type taskFile struct {
	Task        string `yaml:"task"`
	Reader      string `yaml:"reader"`       // a built-in layout; the formatting keys below then do not apply
	Include     string `yaml:"include"`      // a task file whose keys this one extends
	Data        string `yaml:"data"`         // JSONL documents evaluated, relative to the task file named on the command line
	FewshotData string `yaml:"fewshot_data"` // JSONL few-shot pool
	OutputType  string `yaml:"output_type"`  // multiple_choice (default) or generate_until
	DocToText   string `yaml:"doc_to_text"`
	DocToTarget string `yaml:"doc_to_target"`
	// DocToChoice is a template naming a list, a field name, or a list of
	// templates.
	DocToChoice      yaml.Node `yaml:"doc_to_choice"`
	Description      *string   `yaml:"description"`
	TargetDelimiter  *string   `yaml:"target_delimiter"`
	FewshotDelimiter *string   `yaml:"fewshot_delimiter"`
	NumFewshot       *int      `yaml:"num_fewshot"`
	FewshotConfig    struct {
		Sampler string `yaml:"sampler"` // default or first_n
	} `yaml:"fewshot_config"`
	MetricList []struct {
		Metric            string   `yaml:"metric"`
		Aggregation       string   `yaml:"aggregation"`      // mean (the only one herd computes)
		HigherIsBetter    *bool    `yaml:"higher_is_better"` // read and ignored
		IgnoreCase        bool     `yaml:"ignore_case"`
		IgnorePunctuation bool     `yaml:"ignore_punctuation"`
		RegexesToIgnore   []string `yaml:"regexes_to_ignore"`
	} `yaml:"metric_list"`
	GenerationKwargs struct {
		Until       []string `yaml:"until"`
		MaxGenToks  int      `yaml:"max_gen_toks"`
		DoSample    bool     `yaml:"do_sample"`   // must be false: herd decodes greedily
		Temperature float64  `yaml:"temperature"` // must be 0
	} `yaml:"generation_kwargs"`
	// Keys of the harness's task files that say where its data come from
	// or how it is catalogued: read and ignored, so that a harness YAML
	// needs only data: added.
	Ignored struct {
		Tag                       yaml.Node `yaml:"tag"`
		TaskAlias                 yaml.Node `yaml:"task_alias"`
		DatasetPath               yaml.Node `yaml:"dataset_path"`
		DatasetName               yaml.Node `yaml:"dataset_name"`
		DatasetKwargs             yaml.Node `yaml:"dataset_kwargs"`
		TrainingSplit             yaml.Node `yaml:"training_split"`
		ValidationSplit           yaml.Node `yaml:"validation_split"`
		TestSplit                 yaml.Node `yaml:"test_split"`
		FewshotSplit              yaml.Node `yaml:"fewshot_split"`
		ShouldDecontaminate       yaml.Node `yaml:"should_decontaminate"`
		DocToDecontaminationQuery yaml.Node `yaml:"doc_to_decontamination_query"`
		Metadata                  yaml.Node `yaml:"metadata"`
	} `yaml:",inline"`
	// Python hooks: refused with an error (loading a file never runs code).
	ProcessDocs    yaml.Node `yaml:"process_docs"`
	ProcessResults yaml.Node `yaml:"process_results"`
	Repeats        int       `yaml:"repeats"`
	FilterList     []struct {
		Name   string `yaml:"name"`
		Filter []struct {
			Function     string  `yaml:"function"`
			RegexPattern string  `yaml:"regex_pattern"`
			GroupSelect  int     `yaml:"group_select"`
			Fallback     *string `yaml:"fallback"`
		} `yaml:"filter"`
	} `yaml:"filter_list"`
}

// LoadFile reads a YAML task file.
func LoadFile(path string) (*Task, error) {
	var f taskFile
	if err := decodeTaskFile(path, &f, 0); err != nil {
		return nil, err
	}
	if f.Task == "" {
		return nil, fmt.Errorf("%s: missing field \"task\" (the task's name)", path)
	}
	for key, n := range map[string]*yaml.Node{"process_docs": &f.ProcessDocs, "process_results": &f.ProcessResults} {
		if n.Kind != 0 {
			return nil, fmt.Errorf("%s:%d: %s names Python code, which herd does not run; use a built-in reader (reader: %s) or templates", path, n.Line, key, strings.Join(Builtins(), "|"))
		}
	}
	if f.Repeats > 1 {
		return nil, fmt.Errorf("%s: repeats: %d: herd decodes greedily, once", path, f.Repeats)
	}
	if f.Data == "" {
		return nil, fmt.Errorf("%s: missing field \"data\" (the JSONL file of documents)", path)
	}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(filepath.Dir(path), p)
	}
	var t *Task
	var err error
	if f.Reader != "" {
		t, err = LoadBuiltin(f.Reader, f.Task, rel(f.Data), rel(f.FewshotData))
	} else {
		t, err = f.generic(path, rel(f.Data), rel(f.FewshotData))
	}
	if err != nil {
		return nil, err
	}
	if f.NumFewshot != nil {
		t.Shots = *f.NumFewshot
	}
	return t, nil
}

// decodeTaskFile decodes path into f over the file it includes (the
// harness's include:, relative to the including file), so that its own
// keys win.
func decodeTaskFile(path string, f *taskFile, depth int) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var head struct {
		Include string `yaml:"include"`
	}
	if err := yaml.Unmarshal(src, &head); err != nil {
		return yamlError(path, err)
	}
	if head.Include != "" {
		if depth >= 8 {
			return fmt.Errorf("%s: include: more than 8 files deep (a cycle?)", path)
		}
		inc := head.Include
		if !filepath.IsAbs(inc) {
			inc = filepath.Join(filepath.Dir(path), inc)
		}
		if err := decodeTaskFile(inc, f, depth+1); err != nil {
			return err
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil && !errors.Is(err, io.EOF) {
		return yamlError(path, err)
	}
	return nil
}

// yamlError makes yaml.v3's "line N: …" errors read "path:N: …".
func yamlError(path string, err error) error {
	var te *yaml.TypeError
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for i, m := range msgs {
		if rest, ok := strings.CutPrefix(m, "line "); ok {
			if n, tail, ok := strings.Cut(rest, ": "); ok {
				if k := strings.Index(tail, " not found in type "); k >= 0 {
					tail = tail[:k] + " is not a task file key herd reads"
				}
				msgs[i] = fmt.Sprintf("%s:%s: %s", path, n, tail)
				continue
			}
		}
		msgs[i] = path + ": " + m
	}
	return errors.New(strings.Join(msgs, "; "))
}

// generic builds a task from the file's templates.
func (f *taskFile) generic(path, data, shots string) (*Task, error) {
	t := &Task{Name: f.Task, MaxShots: -1, TargetDelim: " ", FewshotDelim: "\n\n"}
	if f.TargetDelimiter != nil {
		t.TargetDelim = *f.TargetDelimiter
	}
	if f.FewshotDelimiter != nil {
		t.FewshotDelim = *f.FewshotDelimiter
	}
	if f.Description != nil {
		d := *f.Description
		t.Description = func(string) string { return d }
	}
	switch f.FewshotConfig.Sampler {
	case "", "default":
	case "first_n":
		t.Sampler = SampleFirstN
	default:
		return nil, fmt.Errorf("%s: fewshot_config.sampler %q: want default or first_n", path, f.FewshotConfig.Sampler)
	}
	rd, err := f.reader(path, t)
	if err != nil {
		return nil, err
	}
	if t.Docs, err = readDocs(data, rd); err != nil {
		return nil, err
	}
	if shots != "" {
		if t.Pool, err = readDocs(shots, rd); err != nil {
			return nil, err
		}
		t.SamePool = filepath.Clean(shots) == filepath.Clean(data)
	}
	return t, nil
}

// reader compiles the file's templates, metrics and filters into a
// document reader and the task's scoring.
func (f *taskFile) reader(path string, t *Task) (reader, error) {
	if f.DocToText == "" {
		return nil, fmt.Errorf("%s: missing field \"doc_to_text\"", path)
	}
	if f.DocToTarget == "" {
		return nil, fmt.Errorf("%s: missing field \"doc_to_target\"", path)
	}
	text, err := fieldOrTemplate(path, "doc_to_text", f.DocToText)
	if err != nil {
		return nil, err
	}
	target, err := fieldOrTemplate(path, "doc_to_target", f.DocToTarget)
	if err != nil {
		return nil, err
	}
	switch f.OutputType {
	case "", "multiple_choice":
		t.Kind = MultipleChoice
		return f.mcReader(path, t, text, target)
	case "generate_until":
		t.Kind = Generate
		if err := f.genConfig(path, t); err != nil {
			return nil, err
		}
		return func(r record) (Doc, error) {
			q, err := text(r)
			if err != nil {
				return Doc{}, err
			}
			a, err := target(r)
			return Doc{Text: q, Target: a}, err
		}, nil
	}
	return nil, fmt.Errorf("%s: output_type %q: want multiple_choice or generate_until", path, f.OutputType)
}

// fieldOrTemplate is the harness's reading of a doc_to_* string: a field
// name when the document has that field, else a template.
func fieldOrTemplate(path, key, src string) (func(record) (string, error), error) {
	tp, err := parseTemplate(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, key, err)
	}
	return func(r record) (string, error) {
		if _, ok := r.m[src]; ok && !strings.Contains(src, "{{") {
			v, _ := r.field(src)
			return scalar(r.src, src, v)
		}
		return tp.render(r)
	}, nil
}

// mcReader reads multiple-choice documents.
func (f *taskFile) mcReader(path string, t *Task, text, target func(record) (string, error)) (reader, error) {
	choices, err := f.choices(path)
	if err != nil {
		return nil, err
	}
	t.Metrics = nil
	for _, m := range f.MetricList {
		if m.Aggregation != "" && m.Aggregation != "mean" {
			return nil, fmt.Errorf("%s: metric %s: aggregation %q: herd averages (mean)", path, m.Metric, m.Aggregation)
		}
		if !slices.Contains([]string{"acc", "acc_norm", "acc_bytes"}, m.Metric) {
			return nil, fmt.Errorf("%s: metric %q: a multiple_choice task measures acc, acc_norm or acc_bytes", path, m.Metric)
		}
		t.Metrics = append(t.Metrics, m.Metric)
	}
	if len(t.Metrics) == 0 {
		t.Metrics = []string{"acc", "acc_norm"}
	}
	return func(r record) (Doc, error) {
		q, err := text(r)
		if err != nil {
			return Doc{}, err
		}
		ch, err := choices(r)
		if err != nil {
			return Doc{}, err
		}
		a, err := target(r)
		if err != nil {
			return Doc{}, err
		}
		gold, err := strconv.Atoi(strings.TrimSpace(a))
		if err != nil {
			if gold = slices.Index(ch, a); gold < 0 {
				return Doc{}, fmt.Errorf("%s: the target %q is neither an index nor one of the choices", r.src, a)
			}
		}
		if err := checkIndex(r.src, "the target index", gold, len(ch)); err != nil {
			return Doc{}, err
		}
		return Doc{Text: q, Choices: ch, Gold: gold}, nil
	}, nil
}

// choices compiles doc_to_choice.
func (f *taskFile) choices(path string) (func(record) ([]string, error), error) {
	n := &f.DocToChoice
	at := fmt.Sprintf("%s:%d: doc_to_choice", path, n.Line)
	switch n.Kind {
	case 0:
		return nil, fmt.Errorf("%s: missing field \"doc_to_choice\" (a multiple_choice task needs its choices)", path)
	case yaml.SequenceNode:
		var tps []*template
		for _, c := range n.Content {
			tp, err := parseTemplate(c.Value)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", at, err)
			}
			tps = append(tps, tp)
		}
		return func(r record) ([]string, error) {
			out := make([]string, len(tps))
			for i, tp := range tps {
				var err error
				if out[i], err = tp.render(r); err != nil {
					return nil, err
				}
			}
			return out, nil
		}, nil
	case yaml.ScalarNode:
		src := n.Value
		if !strings.Contains(src, "{{") {
			src = "{{" + src + "}}" // a field name
		}
		tp, err := parseTemplate(src)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		return func(r record) ([]string, error) {
			l, ok, err := tp.list(r)
			if err == nil && !ok {
				err = fmt.Errorf("%s: doc_to_choice %q does not name a list", r.src, n.Value)
			}
			return l, err
		}, nil
	}
	return nil, fmt.Errorf("%s: want a list of choices or a template naming a list", at)
}

// genConfig reads a generation task's stop strings, filters and match.
func (f *taskFile) genConfig(path string, t *Task) error {
	g := f.GenerationKwargs
	if g.DoSample || g.Temperature != 0 {
		return fmt.Errorf("%s: generation_kwargs: do_sample %v, temperature %g: herd's evaluation decodes greedily", path, g.DoSample, g.Temperature)
	}
	t.Gen.Until, t.Gen.MaxTokens = g.Until, g.MaxGenToks
	t.Metrics = []string{"exact_match"}
	for _, m := range f.MetricList {
		if m.Metric != "exact_match" {
			return fmt.Errorf("%s: metric %q: a generate_until task measures exact_match", path, m.Metric)
		}
		t.Gen.Match.IgnoreCase, t.Gen.Match.IgnorePunct = m.IgnoreCase, m.IgnorePunctuation
		for _, s := range m.RegexesToIgnore {
			re, err := regexp.Compile(s)
			if err != nil {
				return fmt.Errorf("%s: regexes_to_ignore %q: %w", path, s, err)
			}
			t.Gen.Match.Ignore = append(t.Gen.Match.Ignore, re)
		}
	}
	for _, fl := range f.FilterList {
		flt := Filter{Name: fl.Name, Fallback: "[invalid]"}
		if flt.Name == "" {
			return fmt.Errorf("%s: a filter without a name", path)
		}
		for _, step := range fl.Filter {
			switch step.Function {
			case "regex":
				re, err := regexp.Compile(step.RegexPattern)
				if err != nil {
					return fmt.Errorf("%s: filter %s: regex_pattern %q: %w", path, fl.Name, step.RegexPattern, err)
				}
				flt.Regex, flt.Group = re, step.GroupSelect
				if step.Fallback != nil {
					flt.Fallback = *step.Fallback
				}
			case "take_first":
			default:
				return fmt.Errorf("%s: filter %s: function %q: herd knows regex and take_first", path, fl.Name, step.Function)
			}
		}
		t.Gen.Filters = append(t.Gen.Filters, flt)
	}
	return nil
}
