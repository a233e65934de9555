package road

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

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/data"
	"github.com/herd-llm/herd/tokenizer"
)

// shipped is the road's own data (data/README.md: sources and licences):
// 300 + 60 TinyStories stories (train, held out) and LLaMA-Factory's
// identity instructions with the placeholders filled in, and the
// multiple-choice task made from the held-out stories (story_cloze).
//
//go:embed data/stories-train.jsonl.gz data/stories-val.jsonl.gz data/identity.json data/story_cloze.jsonl data/story_cloze.yaml
var shipped embed.FS

// The multiple-choice task's files (HellaSwag's layout, a YAML task file
// herd eval reads), written into DIR/data/.
const (
	clozeData = "story_cloze.jsonl"
	clozeTask = "story_cloze.yaml"
)

// Template is the chat template every stage is trained and asked in.
const Template = "vicuna"

// ShowPrompts are the prompts whose answers the report shows for every
// stage; the evaluation adds prompts made from the held-out stories.
var ShowPrompts = []string{
	"Who are you?",
	"Continue the story: Once upon a time, there was a little dog named Max.",
	`Write a short story that begins with: "Lily went to the park with her mom."`,
	"Continue the story: Tom had a big red ball. One day, he lost it.",
}

// evalPrompts is how many held-out story prompts the evaluation adds.
const evalPrompts = 12

// stories reads one of the shipped story files.
func stories(name string) ([]string, error) {
	b, err := shipped.ReadFile("data/" + name)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var out []string
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var row struct{ Text string }
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, row.Text)
	}
	return out, sc.Err()
}

var sentenceRE = regexp.MustCompile(`[^.!?]+[.!?]+["']?`)

// sentences cuts a story into sentences (a period, ! or ?, a closing quote).
func sentences(s string) []string {
	var out []string
	for _, m := range sentenceRE.FindAllString(s, -1) {
		if t := strings.TrimSpace(m); t != "" {
			out = append(out, t)
		}
	}
	return out
}

type alpacaRow struct {
	Instruction string `json:"instruction"`
	Input       string `json:"input"`
	Output      string `json:"output"`
}

type prefRow struct {
	Prompt   string `json:"prompt"`
	Chosen   string `json:"chosen"`
	Rejected string `json:"rejected"`
}

// instructions turns stories into two kinds of instruction: continue a
// story from its first sentences, and write one that begins with a given
// sentence (the answer cut to about 400 characters).
func instructions(ss []string) []alpacaRow {
	var rows []alpacaRow
	for i, s := range ss {
		sent := sentences(s)
		if len(sent) < 4 {
			continue
		}
		if i%2 == 0 {
			rows = append(rows, alpacaRow{Instruction: "Continue the story: " + strings.Join(sent[:2], " "), Output: upTo(sent[2:], 400)})
		} else {
			rows = append(rows, alpacaRow{Instruction: fmt.Sprintf("Write a short story that begins with: %q", sent[0]), Output: upTo(sent, 400)})
		}
	}
	return rows
}

// upTo joins sentences while they fit in n bytes (at least one).
func upTo(sent []string, n int) string {
	out := sent[0]
	for _, s := range sent[1:] {
		if len(out)+1+len(s) > n {
			break
		}
		out += " " + s
	}
	return out
}

// preferences makes a pair of every story: the prompt its first
// sentence, chosen its next two sentences, and rejected (seeded) one of
// three bad answers to the same prompt: the same words shuffled (half the
// pairs), the answer stopped after its first few words (a quarter), or a
// bare full stop, an answer with nothing in it (a quarter). The last two
// are the length aspect: with shuffled words alone the reward model and
// DPO learn only "fluent beats garbled", and a policy that ends its turn
// at once (an empty answer has nothing garbled in it) games both.
func preferences(ss []string, seed uint64) []prefRow {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	var rows []prefRow
	for _, s := range ss {
		sent := sentences(s)
		if len(sent) < 3 {
			continue
		}
		chosen := sent[1] + " " + sent[2]
		w := strings.Fields(chosen)
		var rejected string
		switch k := rng.IntN(4); {
		case k < 2 || len(w) < 6:
			rng.Shuffle(len(w), func(i, j int) { w[i], w[j] = w[j], w[i] })
			rejected = strings.Join(w, " ")
		case k == 2:
			rejected = strings.Join(w[:1+rng.IntN(3)], " ")
		default:
			rejected = "."
		}
		if rejected == chosen {
			continue
		}
		rows = append(rows, prefRow{Prompt: "Continue the story: " + sent[0], Chosen: chosen, Rejected: rejected})
	}
	return rows
}

type turn struct {
	From  string `json:"from"`
	Value string `json:"value"`
}

type conversation struct {
	ID            string `json:"id"`
	Conversations []turn `json:"conversations"`
}

// conversations are two-turn ShareGPT conversations made from stories:
// a story asked for by its first sentence, then "What happened next?".
func conversations(ss []string) []conversation {
	var out []conversation
	for i, s := range ss {
		sent := sentences(s)
		if len(sent) < 6 {
			continue
		}
		half := len(sent) / 2
		out = append(out, conversation{ID: fmt.Sprintf("story_%d", i), Conversations: []turn{
			{"human", fmt.Sprintf("Tell me a story that begins with: %q", sent[0])}, {"gpt", upTo(sent[:half], 300)},
			{"human", "What happened next?"}, {"gpt", upTo(sent[half:], 300)},
		}})
	}
	return out
}

// prompts are ShowPrompts then the first sentences of held-out stories.
func prompts(val []string) []string {
	out := append([]string(nil), ShowPrompts...)
	for _, s := range val {
		if len(out) == len(ShowPrompts)+evalPrompts {
			break
		}
		if sent := sentences(s); len(sent) >= 2 {
			out = append(out, "Continue the story: "+sent[0])
		}
	}
	return out
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	return writeFile(path, append(b, '\n'))
}

func writeJSONL[T any](path string, rows []T) error {
	var b bytes.Buffer
	for _, r := range rows {
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		b.Write(append(line, '\n'))
	}
	return writeFile(path, b.Bytes())
}

// runData writes the shipped data (WriteData) and packs the corpus into
// token shards with herd data prepare's cleaning and dedup.
func runData(r *Road, in *Info) error {
	tok, err := WriteData(r.Path("data"), r.Base, in, r.log)
	if err != nil {
		return err
	}
	rec := data.Recipe{
		Sources: []data.Source{
			{Name: "tinystories", Paths: []string{r.Path("data", "stories-train.jsonl.gz")}, Weight: 1},
			{Name: "held-out", Paths: []string{r.Path("data", "stories-val.jsonl.gz")}, Val: true},
		},
		Clean: data.Clean{MinChars: 50, NearDedup: 0.8}, EOS: true, Seed: 1, Workers: r.Threads,
	}
	man, err := data.Prepare(rec, tok, r.Path("data", "shards"), data.PrepareOptions{Log: r.log})
	if err != nil {
		return err
	}
	in.figure("train_tokens", float64(man.TrainTokens))
	in.figure("val_tokens", float64(man.ValTokens))
	in.Outputs = append(in.Outputs, "data/base.gguf", "data/shards", "data/sft.json", "data/prefs.jsonl", "data/rl-prompts.jsonl",
		"data/prompts.json", "data/"+clozeTask)
	return nil
}

// WriteData writes the road's shipped data into dir, the files herd
// recipe run gives its recipes: stories-train.jsonl.gz and
// stories-val.jsonl.gz (the corpus), sft.json and sft-val.json (Alpaca
// rows), sharegpt.json (two-turn conversations), prefs.jsonl and
// prefs-val.jsonl (prompt/chosen/rejected), rl-prompts.jsonl and
// rl-val-prompts.jsonl (the RL step's), prompts.json, the
// multiple-choice task (story_cloze.yaml and .jsonl), and base.gguf
// (the model at base, "" for the embedded stories260K, with its
// tokenizer, which it returns). in, when not nil, receives the counts.
func WriteData(dir, base string, in *Info, log io.Writer) (tokenizer.Tokenizer, error) {
	if in == nil {
		in = &Info{}
	}
	if log == nil {
		log = io.Discard
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	train, err := stories("stories-train.jsonl.gz")
	if err != nil {
		return nil, err
	}
	val, err := stories("stories-val.jsonl.gz")
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"stories-train.jsonl.gz", "stories-val.jsonl.gz", clozeData, clozeTask} {
		b, _ := shipped.ReadFile("data/" + f)
		if err := writeFile(filepath.Join(dir, f), b); err != nil {
			return nil, err
		}
	}
	if err := writeFile(filepath.Join(dir, "held-out.txt"), []byte(strings.Join(val, "\n")+"\n")); err != nil {
		return nil, err
	}
	if err := writeInstructions(dir, train, val, in, log); err != nil {
		return nil, err
	}
	m, tok, err := checkpoint.Load(base, "")
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return tok, checkpoint.SaveGGUF(filepath.Join(dir, "base.gguf"), m, tok, checkpoint.SaveOptions{Name: "road base"})
}

// writeInstructions writes sft.json, sft-val.json, prefs.jsonl,
// prefs-val.jsonl and prompts.json.
func writeInstructions(dir string, train, val []string, in *Info, log io.Writer) error {
	idb, err := shipped.ReadFile("data/identity.json")
	if err != nil {
		return err
	}
	var ident []alpacaRow
	if err := json.Unmarshal(idb, &ident); err != nil {
		return fmt.Errorf("identity.json: %w", err)
	}
	sftRows := append(instructions(train), ident[:len(ident)*4/5]...)
	sftVal := append(instructions(val), ident[len(ident)*4/5:]...)
	pr, prVal := preferences(train, 1), preferences(val, 2)
	ps := prompts(val)
	for _, w := range []struct {
		name string
		v    any
	}{{"sft.json", sftRows}, {"sft-val.json", sftVal}, {"prompts.json", ps}, {"sharegpt.json", conversations(train)}} {
		if err := writeJSON(filepath.Join(dir, w.name), w.v); err != nil {
			return err
		}
	}
	if err := writeJSONL(filepath.Join(dir, "prefs.jsonl"), pr); err != nil {
		return err
	}
	if err := writeJSONL(filepath.Join(dir, "prefs-val.jsonl"), prVal); err != nil {
		return err
	}
	// the RL step's prompts: the preference pairs' (its own rollouts are
	// the answers), the held-out ones for its before/after reward
	rlp := func(rows []prefRow, n int) []map[string]string {
		var out []map[string]string
		for _, r := range rows[:min(n, len(rows))] {
			out = append(out, map[string]string{"prompt": r.Prompt})
		}
		return out
	}
	if err := writeJSONL(filepath.Join(dir, "rl-prompts.jsonl"), rlp(pr, len(pr))); err != nil {
		return err
	}
	if err := writeJSONL(filepath.Join(dir, "rl-val-prompts.jsonl"), rlp(prVal, 16)); err != nil {
		return err
	}
	in.figure("sft_examples", float64(len(sftRows)))
	in.figure("sft_val_examples", float64(len(sftVal)))
	in.figure("pref_pairs", float64(len(pr)))
	in.figure("pref_val_pairs", float64(len(prVal)))
	fmt.Fprintf(log, "   %d instructions (%d held out), %d preference pairs (%d held out), %d evaluation prompts\n",
		len(sftRows), len(sftVal), len(pr), len(prVal), len(ps))
	return nil
}
