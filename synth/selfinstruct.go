package synth

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/herd-llm/herd/internal/journal"
	"github.com/herd-llm/herd/oai"
)

// SeedTask is one task of a self-instruct seed file (the layout of the
// paper's 175 seed tasks, one JSON object per line).
type SeedTask struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Instruction string `json:"instruction"`
	Instances   []struct {
		Input  string `json:"input"`
		Output string `json:"output"`
	} `json:"instances"`
	IsClassification bool `json:"is_classification"`
}

// ReadSeedTasks reads a seed file; a malformed line is an error naming it.
func ReadSeedTasks(path string) ([]SeedTask, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seed tasks: %w", err)
	}
	var out []SeedTask
	for i, ln := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(ln) == "" {
			continue
		}
		var t SeedTask
		if err := json.Unmarshal([]byte(ln), &t); err != nil {
			return nil, fmt.Errorf("seed tasks %s:%d: %v", path, i+1, err)
		}
		switch {
		case strings.TrimSpace(t.Instruction) == "":
			return nil, fmt.Errorf("seed tasks %s:%d: field instruction: missing or empty", path, i+1)
		case len(t.Instances) == 0:
			return nil, fmt.Errorf("seed tasks %s:%d: field instances: no instance (want [{\"input\": …, \"output\": …}])", path, i+1)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("seed tasks %s: no tasks", path)
	}
	return out, nil
}

// Task is an instruction in Alpaca's layout, the unit self-instruct
// shows, parses and writes.
type Task struct {
	ID          string `json:"id,omitempty"`
	Instruction string `json:"instruction"`
	Input       string `json:"input"`
	Output      string `json:"output"`
}

// SelfInstruct makes instructions as Alpaca's generator did (Wang et al.
// 2022, simplified by Taori et al. 2023): each request shows a few tasks
// sampled from the seed file and from those generated so far and asks for
// more; the numbered tasks are parsed and filtered.
type SelfInstruct struct {
	Options
	Seeds string // the seed file
	// Target is the number of instructions to keep (default 100).
	Target int
	// Shown is the number of example tasks in each prompt, Machine of them
	// drawn from the generated ones once there are any (when Shown is 0:
	// 8, and 2 of them generated unless Machine is set, as in the paper).
	Shown, Machine int
	// Ask is the number of tasks the prompt asks for (default 20).
	Ask int
	// Wave is the number of requests sent together, each seeing the tasks
	// kept before the wave (default: the client's concurrency). MaxWaves
	// ends a run that cannot reach Target (default 1000).
	Wave, MaxWaves int
	// Header replaces the prompt's text before the example tasks (the
	// default suits a capable teacher; a small model needs a short one).
	Header string
	Filter TaskFilter
}

// TaskFilter holds the filters of Alpaca's generator.
type TaskFilter struct {
	// MaxRouge drops an instruction whose ROUGE-L against any instruction
	// kept (or seed) is above it (default 0.7).
	MaxRouge float64
	// MinWords and MaxWords bound the instruction's length in words
	// (defaults 4 and 150: Alpaca drops 3 words or fewer, and over 150).
	MinWords, MaxWords int
	// Blacklist is the words (whole-word, any case) that mark a task a
	// text model cannot do (default: DefaultBlacklist).
	Blacklist []string
	// EnglishOnly drops instructions that start with a character outside
	// ASCII.
	EnglishOnly bool
}

// DefaultBlacklist is the word list of Alpaca's generator.
var DefaultBlacklist = []string{"image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
	"draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram"}

// Drop reasons of self-instruct.
const (
	DropRouge       = "rouge"
	DropBlacklist   = "blacklist"
	DropTooShort    = "too_short"
	DropTooLong     = "too_long"
	DropProgram     = "program"
	DropPunctuation = "punctuation"
	DropNonEnglish  = "non_english"
	DropTruncated   = "truncated"
	DropUnparsed    = "unparsed"
	DropEmpty       = "empty_completion"
	DropOverTarget  = "over_target"
)

const selfInstructHeader = `You are helping to build a varied set of tasks for training a text assistant. Write %d new tasks, each different from the examples and from each other. Rules:
1. Vary the verbs and the kind of task: open questions, writing, rewriting, classification, extraction, reasoning, maths, code, advice.
2. Write each instruction in English, in one or two sentences, as a command or a question.
3. The assistant must be able to do the task with text alone: no images, sound, files, web browsing or actions in the world.
4. Give an input only when the task needs one, and make it real content (a passage, a list, some code), not a placeholder; otherwise write <noinput>.
5. Give a good answer as the output, in under 100 words.
Number the tasks as the examples are numbered and separate them with ###.

`

func (f *TaskFilter) defaults() {
	if f.MaxRouge == 0 {
		f.MaxRouge = 0.7
	}
	if f.MinWords == 0 {
		f.MinWords = 4
	}
	if f.MaxWords == 0 {
		f.MaxWords = 150
	}
	if f.Blacklist == nil {
		f.Blacklist = DefaultBlacklist
	}
}

// blacklistRE matches any blacklisted word as a whole word.
func (f *TaskFilter) blacklistRE() *regexp.Regexp {
	if len(f.Blacklist) == 0 {
		return nil
	}
	q := make([]string, len(f.Blacklist))
	for i, w := range f.Blacklist {
		q[i] = regexp.QuoteMeta(strings.ToLower(w))
	}
	return regexp.MustCompile(`(?i)\b(?:` + strings.Join(q, "|") + `)\b`)
}

// Check returns the reason to drop an instruction on its own (every filter
// but ROUGE-L), or "" to keep it.
func (f *TaskFilter) Check(instr string, black *regexp.Regexp) string {
	words := len(strings.Fields(instr))
	first, _ := utf8.DecodeRuneInString(instr)
	switch {
	case words < f.MinWords:
		return DropTooShort
	case words > f.MaxWords:
		return DropTooLong
	case black != nil && black.MatchString(instr):
		return DropBlacklist
	case strings.HasPrefix(instr, "Write a program"):
		return DropProgram
	case unicode.IsPunct(first) || unicode.IsSymbol(first):
		return DropPunctuation
	case f.EnglishOnly && first >= utf8.RuneSelf:
		return DropNonEnglish
	}
	return ""
}

var (
	taskHead   = regexp.MustCompile(`(?m)^[ \t#]*(\d+)[ \t]*\.[ \t]*Instruction:`)
	inputHead  = regexp.MustCompile(`(?m)^[ \t]*\d+[ \t]*\.[ \t]*Input:`)
	outputHead = regexp.MustCompile(`(?m)^[ \t]*\d+[ \t]*\.[ \t]*Output:`)
)

// ParseTasks reads the numbered tasks of a completion that continues a
// prompt ending in "N. Instruction:" (the cue is put back unless the
// completion repeats it). Each task is "k. Instruction: …", optionally
// "k. Input: …" ("<noinput>" for none) and "k. Output: …", tasks
// separated by "###". A task with no instruction text comes back with an
// empty Instruction (the caller drops it as unparsed, and the last task of
// a completion cut at its token limit as truncated).
func ParseTasks(completion string, next int) []Task {
	text := completion
	if loc := taskHead.FindStringIndex(completion); loc == nil || strings.TrimSpace(completion[:loc[0]]) != "" {
		text = fmt.Sprintf("%d. Instruction:", next) + completion
	}
	heads := taskHead.FindAllStringIndex(text, -1)
	var out []Task
	for i, h := range heads {
		end := len(text)
		if i+1 < len(heads) {
			end = heads[i+1][0]
		}
		block := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(text[h[1]:end]), "#"))
		var t Task
		instr, rest := cut(block, inputHead)
		if rest == "" {
			instr, rest = cut(block, outputHead)
			t.Output = clean(rest)
		} else {
			in, out := cut(rest, outputHead)
			t.Input, t.Output = clean(in), clean(out)
		}
		t.Instruction = clean(instr)
		if strings.EqualFold(t.Input, "<noinput>") || strings.EqualFold(t.Input, "<no input>") {
			t.Input = ""
		}
		out = append(out, t)
	}
	return out
}

// cut splits s at the first match of head: the text before and after it
// ("" after when there is none).
func cut(s string, head *regexp.Regexp) (string, string) {
	loc := head.FindStringIndex(s)
	if loc == nil {
		return s, ""
	}
	return s[:loc[0]], s[loc[1]:]
}

func clean(s string) string { return strings.TrimSpace(strings.Trim(strings.TrimSpace(s), "#")) }

// selfState is what the waves share: the ROUGE index (seeds first, then
// kept instructions in file order) and the kept tasks.
type selfState struct {
	seeds   []Task
	machine []Task
	index   *RougeIndex
	black   *regexp.Regexp
}

func (s *SelfInstruct) defaults() error {
	if s.Target <= 0 {
		s.Target = 100
	}
	if s.Shown <= 0 {
		s.Shown = 8
		if s.Machine == 0 {
			s.Machine = 2
		}
	}
	if s.Machine < 0 || s.Machine > s.Shown {
		return fmt.Errorf("self-instruct: %d machine tasks of %d shown", s.Machine, s.Shown)
	}
	if s.Ask <= 0 {
		s.Ask = 20
	}
	if s.Wave <= 0 && s.Client != nil {
		s.Wave = s.Client.Concurrency()
	}
	if s.MaxWaves <= 0 {
		s.MaxWaves = 1000
	}
	if s.Header == "" {
		s.Header = selfInstructHeader
	}
	s.Filter.defaults()
	return nil
}

// Run makes instructions until Target are kept.
func (s *SelfInstruct) Run(ctx context.Context) (*Stats, error) {
	if err := s.defaults(); err != nil {
		return nil, err
	}
	seeds, err := ReadSeedTasks(s.Seeds)
	if err != nil {
		return nil, err
	}
	hash, err := fileHash(s.Seeds)
	if err != nil {
		return nil, fmt.Errorf("seed tasks: %w", err)
	}
	settings := *s
	settings.Seeds = hash
	r, err := newRunner(s.Options, "self-instruct", fingerprint(settings)+" model "+s.Client.Model())
	if err != nil {
		return nil, err
	}
	st := &selfState{index: NewRougeIndex(), black: s.Filter.blacklistRE()}
	for _, t := range seeds {
		in := t.Instances[0]
		st.seeds = append(st.seeds, Task{Instruction: t.Instruction, Input: in.Input, Output: in.Output})
		st.index.Add(t.Instruction)
	}
	var resumed []Task
	for _, id := range r.Resumed() {
		var t Task
		raw, _ := r.Item(id)
		if err := json.Unmarshal(raw, &t); err != nil {
			return r.Finish(fmt.Errorf("resume %s: item %s: %w", s.Out, id, err))
		}
		resumed = append(resumed, t)
	}
	return r.Finish(s.waves(ctx, r, st, resumed))
}

// waves runs wave after wave until Target instructions are kept.
func (s *SelfInstruct) waves(ctx context.Context, r *journal.Runner, st *selfState, resumed []Task) error {
	r.Stats().Target = s.Target
	ri := 0 // the next resumed task to join the state
	// a wave runs when fewer than Target were kept before it: counted from
	// the waves before it, so a resumed run finishes a wave cut short even
	// when its done units reached the target
	for w := 0; w < s.MaxWaves && len(st.machine) < s.Target; w++ {
		keys := make([]string, s.Wave)
		for b := range keys {
			keys[b] = fmt.Sprintf("w%d.%d", w, b)
		}
		// prompts show the tasks kept before this wave; tasks of its units
		// done already (a resumed run) join the index as their commit did
		pool := st.machine[:len(st.machine):len(st.machine)]
		indexUpto := st.index.Len()
		for ; ri < len(resumed) && waveOf(resumed[ri].ID) <= w; ri++ {
			st.machine = append(st.machine, resumed[ri])
			st.index.Add(resumed[ri].Instruction)
		}
		fetched := make([][]Task, s.Wave)
		err := r.Units(ctx, keys, func(ctx context.Context, u *journal.Unit, b int) error {
			var err error
			fetched[b], err = s.fetch(ctx, u, st, pool, indexUpto)
			return err
		}, func(u *journal.Unit, b int) error {
			return s.commit(u, st, fetched[b], r.Stats().Kept, indexUpto)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// waveOf reads the wave from an id "w3.1-4".
func waveOf(id string) int {
	var w, b, k int
	fmt.Sscanf(id, "w%d.%d-%d", &w, &b, &k)
	return w
}

// prompt builds the request's text: the header, then example tasks (seed
// tasks and up to Machine generated ones), then the cue for the next.
func (s *SelfInstruct) prompt(rng *rand.Rand, st *selfState, pool []Task) string {
	var shown []Task
	nm := min(s.Machine, len(pool))
	for _, i := range rng.Perm(len(pool))[:nm] {
		shown = append(shown, pool[i])
	}
	ns := min(s.Shown-nm, len(st.seeds))
	for _, i := range rng.Perm(len(st.seeds))[:ns] {
		shown = append(shown, st.seeds[i])
	}
	rng.Shuffle(len(shown), func(i, j int) { shown[i], shown[j] = shown[j], shown[i] })
	var b strings.Builder
	if strings.Contains(s.Header, "%d") {
		fmt.Fprintf(&b, s.Header, s.Ask)
	} else {
		b.WriteString(s.Header)
	}
	for i, t := range shown {
		in := t.Input
		if strings.TrimSpace(in) == "" {
			in = "<noinput>"
		}
		fmt.Fprintf(&b, "###\n%d. Instruction: %s\n%d. Input:\n%s\n%d. Output:\n%s\n", i+1, t.Instruction, i+1, in, i+1, t.Output)
	}
	fmt.Fprintf(&b, "###\n%d. Instruction:", len(shown)+1)
	return b.String()
}

// fetch sends one request, parses and filters its tasks (ROUGE-L against
// what was kept before the wave) and asks for the output of any task that
// came without one.
func (s *SelfInstruct) fetch(ctx context.Context, u *journal.Unit, st *selfState, pool []Task, indexUpto int) ([]Task, error) {
	rng := rand.New(rand.NewPCG(uint64(journal.DeriveSeed(s.Seed, u.Key, -1)), 1))
	prompt := s.prompt(rng, st, pool)
	resp, err := u.Chat(ctx, oai.Request{Messages: []oai.Message{{Role: "user", Content: prompt}},
		Temperature: s.Temperature, MaxTokens: s.MaxTokens, Stop: s.Stop})
	if errEmpty(err) {
		u.Drop(DropEmpty)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	next := strings.Count(prompt, "###\n")
	tasks := ParseTasks(resp.Content, next)
	var keep []Task
	for i, t := range tasks {
		reason := ""
		switch {
		case i == len(tasks)-1 && resp.Finish == "length":
			reason = DropTruncated
		case t.Instruction == "":
			reason = DropUnparsed
		default:
			reason = s.Filter.Check(t.Instruction, st.black)
		}
		if reason == "" {
			if score, _ := st.index.Max(t.Instruction, 0, indexUpto, s.Filter.MaxRouge); score > s.Filter.MaxRouge {
				reason = DropRouge
			}
		}
		if reason != "" {
			u.Drop(reason)
			continue
		}
		t.ID = fmt.Sprintf("%s-%d", u.Key, i)
		keep = append(keep, t)
	}
	for i := range keep {
		if keep[i].Output != "" {
			continue
		}
		msg := keep[i].Instruction
		if keep[i].Input != "" {
			msg += "\n\n" + keep[i].Input
		}
		resp, err := u.Chat(ctx, oai.Request{Messages: []oai.Message{{Role: "user", Content: msg}}, Temperature: s.Temperature, MaxTokens: s.MaxTokens})
		if err != nil && !errEmpty(err) {
			return nil, err
		}
		if resp != nil {
			keep[i].Output = strings.TrimSpace(resp.Content)
		}
	}
	return keep, nil
}

// commit keeps, in order, the tasks that pass ROUGE-L against those kept
// earlier in the same wave (index entries from indexUpto on), up to
// Target.
func (s *SelfInstruct) commit(u *journal.Unit, st *selfState, tasks []Task, kept, indexUpto int) error {
	for _, t := range tasks {
		switch {
		case t.Output == "":
			u.Drop(DropEmpty)
			continue
		case kept+u.Kept() >= s.Target:
			u.Drop(DropOverTarget)
			continue
		}
		if score, _ := st.index.Max(t.Instruction, indexUpto, -1, s.Filter.MaxRouge); score > s.Filter.MaxRouge {
			u.Drop(DropRouge)
			continue
		}
		if err := u.Keep(t.ID, t); err != nil {
			return err
		}
		st.machine = append(st.machine, t)
		st.index.Add(t.Instruction)
	}
	return nil
}
