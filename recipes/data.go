package recipes

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/herd-llm/herd/internal/fileio"
)

// zh is the book's own Chinese text (data/README.md: sources and
// licences): the first chapter of 红楼梦 and 150 short poems of 唐诗三百首.
//
//go:embed data/hongloumeng-1.txt data/tang-poems.json
var zh embed.FS

// WriteData writes the files the recipes read beyond the road's, into dir,
// which holds the road's (road.WriteData: sft.json, sft-val.json,
// sharegpt.json, stories-val.jsonl.gz):
//
//   - dolly.jsonl, dolly-val.jsonl: the instructions in Dolly's layout
//     (instruction, context, response, category)
//   - gpteacher.json, gpteacher-val.json: GPTeacher's (instruction, input,
//     response), the story's opening moved into input
//   - roleplay.json, roleplay-val.json: conversations with a character's
//     persona as the system turn and the replies in character
//   - prompts.txt: the training instructions, one a line (synth's input);
//     seeds.txt: every fortieth of them (the short variants')
//   - ends.jsonl, ends-val.jsonl: "ends vs rambles" preference pairs made
//     from the road's: chosen, the story's next sentence; rejected, the
//     same sentence running on into the one after (a preference a policy
//     can learn in a few PPO batches: end the answer)
//   - ends-val16.jsonl, prefs-val16.jsonl: the first 16 held-out pairs of
//     each (the short variants' validation; herd rm and herd dpo take no
//     FILE:COUNT)
//   - rl-val.txt: the first 16 held-out pairs' prompts, one a line (herd
//     rl's --val-prompts)
//   - stories-train.txt: the training stories as text, one a line (the
//     calibration text of herd imatrix and herd gptq)
//   - choice.jsonl, choice.yaml: a two-choice task on the held-out stories
//     for herd eval (a story's next sentences against their words shuffled)
//   - zh-corpus.jsonl, zh-corpus-val.jsonl (every tenth document held out),
//     zh-corpus.txt: the Chinese text as documents, and the training
//     documents as one paragraph or verse a line (herd tokenizer train)
//   - zh-sft.json, zh-sft-val.json: Chinese instructions made from it
func WriteData(dir string) error {
	var train, val []alpacaRow
	if err := readJSON(filepath.Join(dir, "sft.json"), &train); err != nil {
		return err
	}
	if err := readJSON(filepath.Join(dir, "sft-val.json"), &val); err != nil {
		return err
	}
	var convs []conversation
	if err := readJSON(filepath.Join(dir, "sharegpt.json"), &convs); err != nil {
		return err
	}
	heldOut, err := readStories(filepath.Join(dir, "stories-val.jsonl.gz"))
	if err != nil {
		return err
	}
	trainStories, err := readStories(filepath.Join(dir, "stories-train.jsonl.gz"))
	if err != nil {
		return err
	}
	var prompts, seeds strings.Builder
	for i, r := range train {
		line := strings.ReplaceAll(joinInput(r.Instruction, r.Input), "\n", " ") + "\n"
		prompts.WriteString(line)
		if i%40 == 0 {
			seeds.WriteString(line)
		}
	}
	var pairsVal []struct{ Prompt, Chosen string }
	if err := readJSONL(filepath.Join(dir, "prefs-val.jsonl"), &pairsVal); err != nil {
		return err
	}
	if len(endsPairs(pairsVal)) < 16 {
		return fmt.Errorf("%s: %d pairs make %d ends-vs-rambles pairs, want at least 16", filepath.Join(dir, "prefs-val.jsonl"), len(pairsVal), len(endsPairs(pairsVal)))
	}
	var rlVal strings.Builder
	for i, p := range pairsVal {
		if i < 16 {
			rlVal.WriteString(p.Prompt + "\n")
		}
	}
	var pairs []struct{ Prompt, Chosen string }
	if err := readJSONL(filepath.Join(dir, "prefs.jsonl"), &pairs); err != nil {
		return err
	}
	choice, err := choiceTask(heldOut)
	if err != nil {
		return err
	}
	zhDocs, zhRows, err := chinese()
	if err != nil {
		return err
	}
	var zhCorpus, zhCorpusVal []string // every tenth document held out
	var sents strings.Builder
	for i, d := range zhDocs {
		if i%10 == 9 {
			zhCorpusVal = append(zhCorpusVal, d)
			continue
		}
		zhCorpus = append(zhCorpus, d)
		for _, s := range strings.Split(d, "\n") {
			sents.WriteString(s + "\n")
		}
	}
	var zhTrain, zhVal []alpacaRow
	for i, r := range zhRows {
		if i%5 == 4 {
			zhVal = append(zhVal, r)
		} else {
			zhTrain = append(zhTrain, r)
		}
	}
	files := []struct {
		name string
		v    any
	}{
		{"dolly.jsonl", jsonl(dolly(train))}, {"dolly-val.jsonl", jsonl(dolly(val))},
		{"gpteacher.json", gpteacher(train)}, {"gpteacher-val.json", gpteacher(val)},
		{"roleplay.json", roleplay(convs)}, {"roleplay-val.json", roleplay(valConversations(val))},
		{"prompts.txt", []byte(prompts.String())}, {"seeds.txt", []byte(seeds.String())},
		{"rl-val.txt", []byte(rlVal.String())},
		{"ends.jsonl", jsonl(endsPairs(pairs))}, {"ends-val.jsonl", jsonl(endsPairs(pairsVal))},
		{"ends-val16.jsonl", jsonl(endsPairs(pairsVal)[:16])}, {"prefs-val16.jsonl", firstLines(filepath.Join(dir, "prefs-val.jsonl"), 16)},
		{"stories-train.txt", []byte(strings.Join(trainStories, "\n") + "\n")},
		{"choice.jsonl", jsonl(choice)}, {"choice.yaml", []byte(choiceYAML)},
		{"zh-corpus.jsonl", jsonl(textRows(zhCorpus))}, {"zh-corpus-val.jsonl", jsonl(textRows(zhCorpusVal))},
		{"zh-corpus.txt", []byte(sents.String())},
		{"zh-sft.json", zhTrain}, {"zh-sft-val.json", zhVal},
	}
	for _, f := range files {
		b, ok := f.v.([]byte)
		if !ok {
			if b, err = json.MarshalIndent(f.v, "", " "); err != nil {
				return err
			}
			b = append(b, '\n')
		}
		if err := fileio.WriteAtomic(filepath.Join(dir, f.name), func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
			return err
		}
	}
	return nil
}

type alpacaRow struct {
	Instruction string `json:"instruction"`
	Input       string `json:"input"`
	Output      string `json:"output"`
}

type turn struct {
	From  string `json:"from"`
	Value string `json:"value"`
}

type conversation struct {
	ID            string `json:"id"`
	System        string `json:"system,omitempty"`
	Conversations []turn `json:"conversations"`
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// firstLines is the first n lines of the file at path (all when fewer),
// nil when it cannot be read (WriteData has read it already).
func firstLines(path string, n int) []byte {
	b, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(b, []byte("\n"))
	return bytes.Join(lines[:min(n, len(lines))], nil)
}

func readJSONL[T any](path string, rows *[]T) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r T
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		*rows = append(*rows, r)
	}
	return nil
}

func readStories(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []string
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		var row struct{ Text string }
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		out = append(out, row.Text)
	}
	return out, sc.Err()
}

func jsonl[T any](rows []T) []byte {
	var b bytes.Buffer
	for _, r := range rows {
		line, _ := json.Marshal(r) // plain structs and maps of strings: never fails
		b.Write(append(line, '\n'))
	}
	return b.Bytes()
}

func joinInput(instr, input string) string {
	if input == "" {
		return instr
	}
	return instr + "\n\n" + input
}

type textRow struct {
	Text string `json:"text"`
}

func textRows(docs []string) []textRow {
	rows := make([]textRow, len(docs))
	for i, d := range docs {
		rows[i] = textRow{d}
	}
	return rows
}

// dolly is rows in databricks-dolly-15k's layout.
func dolly(rows []alpacaRow) []map[string]string {
	var out []map[string]string
	for _, r := range rows {
		cat := "open_qa"
		if strings.Contains(r.Instruction, "story") {
			cat = "creative_writing"
		}
		out = append(out, map[string]string{"instruction": r.Instruction, "context": r.Input, "response": r.Output, "category": cat})
	}
	return out
}

// gpteacher is rows in GPTeacher's layout (instruction, input, response);
// "Continue the story: OPENING" becomes the instruction "Continue the
// story." with OPENING as the input.
func gpteacher(rows []alpacaRow) []map[string]string {
	var out []map[string]string
	for _, r := range rows {
		instr, input := r.Instruction, r.Input
		if rest, ok := strings.CutPrefix(instr, "Continue the story: "); ok && input == "" {
			instr, input = "Continue the story.", rest
		}
		out = append(out, map[string]string{"instruction": instr, "input": input, "response": r.Output})
	}
	return out
}

// persona is the character of the role-play data, in the Pygmalion /
// Metharme style: the persona as the system turn, replies in character
// with an action between asterisks.
const persona = "Enter role-play mode. You are Grandma Rose, a kind old woman who lives by the park and tells short stories to the children who visit her. Stay in character."

func roleplay(convs []conversation) []conversation {
	var out []conversation
	for _, c := range convs {
		rc := conversation{ID: "rp_" + c.ID, System: persona}
		for i, t := range c.Conversations {
			if t.From == "gpt" {
				act := "*smiles and leans back in her chair* "
				if i > 1 {
					act = "*laughs softly* "
				}
				t.Value = act + t.Value
			}
			rc.Conversations = append(rc.Conversations, t)
		}
		out = append(out, rc)
	}
	return out
}

// endsPairs are pairs whose chosen answer is the first sentence of the
// road pair's chosen two, the rejected one both.
func endsPairs(rows []struct{ Prompt, Chosen string }) []map[string]string {
	var out []map[string]string
	for _, r := range rows {
		s := sentences(r.Chosen)
		if len(s) < 2 {
			continue
		}
		out = append(out, map[string]string{"prompt": r.Prompt, "chosen": s[0], "rejected": r.Chosen})
	}
	return out
}

// valConversations are held-out instructions as one-turn conversations.
func valConversations(rows []alpacaRow) []conversation {
	var out []conversation
	for i, r := range rows {
		out = append(out, conversation{ID: fmt.Sprintf("val_%d", i), Conversations: []turn{
			{"human", joinInput(r.Instruction, r.Input)}, {"gpt", r.Output}}})
	}
	return out
}

var sentenceRE = regexp.MustCompile(`[^.!?]+[.!?]+["']?`)

func sentences(s string) []string {
	var out []string
	for _, m := range sentenceRE.FindAllString(s, -1) {
		if t := strings.TrimSpace(m); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// choiceTask is a two-choice item per held-out story: after its first
// sentence, its next two sentences against the same words in a shuffled
// order (seeded), the right one first or second in turn.
func choiceTask(stories []string) ([]map[string]any, error) {
	rng := rand.New(rand.NewPCG(20, 0x9e3779b97f4a7c15))
	var out []map[string]any
	for _, s := range stories {
		a := sentences(s)
		if len(a) < 3 {
			continue
		}
		right := a[1] + " " + a[2]
		w := strings.Fields(right)
		rng.Shuffle(len(w), func(i, j int) { w[i], w[j] = w[j], w[i] })
		wrong := strings.Join(w, " ")
		if wrong == right {
			continue
		}
		choices, label := []string{right, wrong}, 0
		if len(out)%2 == 1 {
			choices, label = []string{wrong, right}, 1
		}
		out = append(out, map[string]any{"ctx": a[0], "choices": choices, "label": label})
	}
	if len(out) < 10 {
		return nil, fmt.Errorf("the held-out stories give %d two-choice items, want at least 10", len(out))
	}
	return out, nil
}

// choiceYAML is the two-choice task as an lm-evaluation-harness task file
// (herd eval --task choice.yaml; data is read beside it).
const choiceYAML = `# Which continues the held-out story: its next two sentences, or the
# same words shuffled? Chance is 0.5. Made by herd recipe run from the shipped
# TinyStories sample (CDLA-Sharing-1.0).
task: story_choice
data: choice.jsonl
output_type: multiple_choice
doc_to_text: "{{ctx}}"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metric_list:
  - metric: acc
  - metric: acc_norm
`

var zhSentenceRE = regexp.MustCompile(`[^。！？]+[。！？]+[”」』]?`)

func zhSentences(s string) []string {
	var out []string
	for _, m := range zhSentenceRE.FindAllString(s, -1) {
		if t := strings.TrimSpace(m); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// chinese is the Chinese documents (the chapter's paragraphs, then each
// poem with its title and author) and instructions made from them: write
// the poem of a title, continue a poem from its first line, continue the
// chapter from a sentence (two sentences, cut to 120 characters).
func chinese() (docs []string, rows []alpacaRow, err error) {
	ch, err := zh.ReadFile("data/hongloumeng-1.txt")
	if err != nil {
		return nil, nil, err
	}
	var poems []struct {
		Title, Author string
		Paragraphs    []string
	}
	pb, err := zh.ReadFile("data/tang-poems.json")
	if err != nil {
		return nil, nil, err
	}
	if err := json.Unmarshal(pb, &poems); err != nil {
		return nil, nil, fmt.Errorf("tang-poems.json: %w", err)
	}
	for _, line := range strings.Split(string(ch), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		docs = append(docs, line)
		s := zhSentences(line)
		for i := 0; i+2 < len(s); i += 3 {
			out := s[i+1] + s[i+2]
			if r := []rune(out); len(r) > 120 {
				out = string(r[:120])
			}
			rows = append(rows, alpacaRow{Instruction: "续写下文：" + s[i], Output: out})
		}
	}
	for i, p := range poems {
		if len(p.Paragraphs) < 2 {
			continue
		}
		body := strings.Join(p.Paragraphs, "\n")
		docs = append(docs, "《"+p.Title+"》 "+p.Author+"\n"+body)
		if i%2 == 0 {
			rows = append(rows, alpacaRow{Instruction: "写一首题为《" + p.Title + "》的诗。", Output: body})
		} else {
			rows = append(rows, alpacaRow{Instruction: "续写这首诗：" + p.Paragraphs[0], Output: strings.Join(p.Paragraphs[1:], "\n")})
		}
	}
	return docs, rows, nil
}
