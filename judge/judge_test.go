package judge

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-llm/herd/oai"
)

// rule answers a judge prompt that contains match.
type rule struct{ match, output string }

// scriptedJudge answers each request with the output of the first rule
// whose text the last message contains; dropAfter > 0 closes every
// connection after that many requests.
type scriptedJudge struct {
	t         *testing.T
	rules     []rule
	requests  atomic.Int64
	dropAfter atomic.Int64
	mu        sync.Mutex
	seen      []string
}

func (s *scriptedJudge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := s.requests.Add(1); s.dropAfter.Load() > 0 && n > s.dropAfter.Load() {
		c, _, _ := w.(http.Hijacker).Hijack()
		c.Close()
		return
	}
	var req struct {
		Messages    []oai.Message `json:"messages"`
		Temperature float64       `json:"temperature"`
	}
	json.NewDecoder(r.Body).Decode(&req)
	last := req.Messages[len(req.Messages)-1].Content
	s.mu.Lock()
	s.seen = append(s.seen, last)
	s.mu.Unlock()
	for _, rl := range s.rules {
		if strings.Contains(last, rl.match) {
			b, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"message": map[string]any{"role": "assistant", "content": rl.output}, "finish_reason": "stop"}},
				"usage": map[string]any{"prompt_tokens": 7, "completion_tokens": 2}})
			w.Write(b)
			return
		}
	}
	s.t.Errorf("unscripted judge request: %q", last)
	w.WriteHeader(400)
	io.WriteString(w, `{"error":{"message":"unscripted"}}`)
}

func (s *scriptedJudge) client(t *testing.T) *oai.Client {
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	c, err := oai.New(oai.Config{Endpoint: hs.URL, Model: "judge", Concurrency: 3, Retries: 1, Backoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const questions = `{"question_id": 1, "category": "writing", "turns": ["Write a haiku about rain.", "Now make it about snow."]}
{"question_id": 2, "category": "roleplay", "turns": ["Pretend to be a pirate.", "Say goodbye."]}
{"question_id": "m3", "category": "math", "turns": ["What is 17 × 3?"], "reference": ["51"]}
{"question_id": 4, "category": "writing", "turns": ["Unanswered question."]}
{"question_id": 5, "category": "reasoning", "turns": ["Which is heavier, a kilo of iron or a kilo of feathers?"]}
`

const answersA = `{"question_id": 1, "model_id": "mine", "choices": [{"index": 0, "turns": ["Grey drops on the roof", "White flakes on the roof"]}]}
{"question_id": 2, "model_id": "mine", "choices": [{"index": 0, "turns": ["Arr, matey!", "Fair winds!"]}]}
{"question_id": "m3", "model_id": "mine", "choices": [{"index": 0, "turns": ["It is 41."]}]}
{"question_id": 5, "model_id": "mine", "choices": [{"index": 0, "turns": ["They weigh the same."]}]}
`

const answersB = `{"question_id": 1, "model_id": "base", "choices": [{"index": 0, "turns": ["Rain.", "Snow."]}]}
{"question_id": 2, "model_id": "base", "choices": [{"index": 0, "turns": ["I am a pirate.", "Bye."]}]}
{"question_id": "m3", "model_id": "base", "choices": [{"index": 0, "turns": ["51"]}]}
{"question_id": 5, "model_id": "base", "choices": [{"index": 0, "turns": ["Iron."]}]}
`

func writeFiles(t *testing.T, dir string) (q, a, b string) {
	q, a, b = filepath.Join(dir, "q.jsonl"), filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	for p, s := range map[string]string{q: questions, a: answersA, b: answersB} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return
}

func TestParseScore(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"Rating: [[8]]", 8, true},
		{"first [[3]] then, on reflection, [[ 7.5 ]]", 7.5, true},
		{"I would say [9].", 9, true},
		{"Rating: 6/10", 6, true},
		{"rating = 4", 4, true},
		{"[[11]]", 0, false},
		{"[[0]]", 0, false},
		{"no score at all", 0, false},
		{"", 0, false},
	} {
		got, ok := ParseScore(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseScore(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	for _, c := range []struct{ g1, g2, want string }{
		{"A", "B", Win}, {"B", "A", Loss}, {"A", "A", Tie}, {"B", "B", Tie}, {"C", "C", Tie}, {"A", "C", Tie}, {"C", "B", Tie}, {"", "B", Malformed}, {"A", "", Malformed},
	} {
		if got := Combine(c.g1, c.g2); got != c.want {
			t.Errorf("Combine(%q, %q) = %q, want %q", c.g1, c.g2, got, c.want)
		}
	}
	if ParseVerdict("A seems better... final: [[ B ]]") != "B" || ParseVerdict("[A]") != "" {
		t.Error("ParseVerdict")
	}
}

func scriptSingle() []rule {
	return []rule{
		{"(turn 2):\nWhite flakes on the roof", "Good follow-up. Rating: [[7.5]]"},
		{"(turn 2):\nFair winds!", "It is fine but I will not rate it."},
		{"(turn 1):\nGrey drops on the roof", "Rating: [[8]]"},
		{"(turn 1):\nArr, matey!", "I give this [9]."},
		{"(turn 1):\nIt is 41.", "The reference says 51. Rating: 2/10"},
		{"(turn 1):\nThey weigh the same.", "[[11]]"},
	}
}

func TestSingle(t *testing.T) {
	dir := t.TempDir()
	q, a, _ := writeFiles(t, dir)
	s := &scriptedJudge{t: t, rules: scriptSingle()}
	c := s.client(t)
	out := filepath.Join(dir, "single.jsonl")
	rep, err := (&Single{Options: Options{Client: c, Out: out}, Questions: q, Answers: a}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Judged != 4 || rep.Malformed != 2 || rep.NoAnswer != 1 || rep.NoReference != 1 {
		t.Errorf("report %+v", rep)
	}
	if want := (8 + 7.5 + 9 + 2) / 4; math.Abs(rep.Mean-want) > 1e-12 || rep.ByTurn[2] != 7.5 || rep.ByCategory["math"] != 2 {
		t.Errorf("mean %v (want %v), by turn %v, by category %v", rep.Mean, want, rep.ByTurn, rep.ByCategory)
	}
	// every judgment is logged with the judge's raw output; the maths
	// question was shown its reference, the second turn the whole chat
	var js []Judgment
	for _, ln := range strings.Split(strings.TrimSpace(readText(t, out)), "\n") {
		var j Judgment
		json.Unmarshal([]byte(ln), &j)
		js = append(js, j)
	}
	if len(js) != 6 || js[1].Output != "Good follow-up. Rating: [[7.5]]" || js[3].Score != -1 || js[3].Output != "It is fine but I will not rate it." {
		t.Fatalf("log %+v", js)
	}
	if !js[4].Reference || !strings.Contains(js[4].Prompt, "[Reference answer, turn 1]\n51\n") || js[5].Reference {
		t.Errorf("references: %v %q / %v", js[4].Reference, js[4].Prompt, js[5].Reference)
	}
	if !strings.Contains(js[1].Prompt, "Write a haiku about rain.") || !strings.Contains(js[1].Prompt, "Grey drops on the roof") {
		t.Errorf("the second turn's prompt lacks the first: %q", js[1].Prompt)
	}
	t.Log(rep)
}

func scriptPairs() []rule {
	return []rule{
		// q1: the model is better in both orders, both turns
		{"Assistant A (turn 2):\nWhite flakes", "[[A]]"}, {"Assistant A (turn 2):\nSnow.", "[[B]]"},
		{"Assistant A (turn 1):\nGrey drops", "[[A]]"}, {"Assistant A (turn 1):\nRain.", "[[B]]"},
		// q2: a judge that always prefers the first answer: both turns tie
		{"Assistant A (turn 2):\nFair winds!", "[[A]]"}, {"Assistant A (turn 2):\nBye.", "[[A]]"},
		{"Assistant A (turn 1):\nArr", "[[A]]"}, {"Assistant A (turn 1):\nI am a pirate.", "[[A]]"},
		// m3: the model loses
		{"Assistant A (turn 1):\nIt is 41.", "B is right. [[B]]"}, {"Assistant A (turn 1):\n51", "[[A]]"},
		// 5: an unreadable verdict
		{"Assistant A (turn 1):\nThey weigh", "Both fine."}, {"Assistant A (turn 1):\nIron.", "[[C]]"},
	}
}

func TestPairwise(t *testing.T) {
	dir := t.TempDir()
	q, a, b := writeFiles(t, dir)
	s := &scriptedJudge{t: t, rules: scriptPairs()}
	out := filepath.Join(dir, "pairs.jsonl")
	rep, err := (&Pairwise{Options: Options{Client: s.client(t), Out: out}, Questions: q, Answers: a, Baseline: b}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Wins != 2 || rep.Losses != 1 || rep.Ties != 2 || rep.Inconsistent != 2 || rep.Malformed != 1 || rep.NoAnswer != 1 {
		t.Errorf("report %+v", rep)
	}
	if rep.WinRate != (2+1.0)/5 || rep.Model != "mine" || rep.Baseline != "base" {
		t.Errorf("win rate %v, %s vs %s", rep.WinRate, rep.Model, rep.Baseline)
	}
	// lengths over the six turns compared
	wantLen := float64(len("Grey drops on the roof")+len("White flakes on the roof")+len("Arr, matey!")+len("Fair winds!")+len("It is 41.")+len("They weigh the same.")) / 6
	if math.Abs(rep.Len-wantLen) > 1e-12 {
		t.Errorf("mean length %v, want %v", rep.Len, wantLen)
	}
	// the maths question's comparison shows the reference
	found := false
	for _, p := range s.seen {
		found = found || (strings.Contains(p, "It is 41.") && strings.Contains(p, "[Reference answer, turn 1]\n51"))
	}
	if !found {
		t.Error("the maths comparison did not show the reference")
	}
	t.Log(rep)
}

// TestJudgeResume cuts the judge's connections after every number of
// requests and resumes: the log and the report equal the uninterrupted
// run's.
func TestJudgeResume(t *testing.T) {
	dir := t.TempDir()
	q, a, b := writeFiles(t, dir)
	ref := &scriptedJudge{t: t, rules: scriptPairs()}
	refOut := filepath.Join(dir, "ref.jsonl")
	want, err := (&Pairwise{Options: Options{Client: ref.client(t), Out: refOut}, Questions: q, Answers: a, Baseline: b}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	total := ref.requests.Load()
	for cut := int64(1); cut < total; cut += 2 {
		s := &scriptedJudge{t: t, rules: scriptPairs()}
		s.dropAfter.Store(cut)
		c := s.client(t)
		out := filepath.Join(dir, "cut.jsonl")
		os.Remove(out)
		os.Remove(out + ".journal")
		run := &Pairwise{Options: Options{Client: c, Out: out}, Questions: q, Answers: a, Baseline: b}
		if _, err := run.Run(context.Background()); err == nil {
			t.Fatalf("cut after %d: no error", cut)
		}
		s.dropAfter.Store(0)
		run.Resume = true
		got, err := run.Run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if readText(t, out) != readText(t, refOut) || got.Wins != want.Wins || got.Ties != want.Ties || got.Malformed != want.Malformed || got.Stats.Requests != want.Stats.Requests {
			t.Errorf("cut after %d requests: resumed log or report differs: %+v vs %+v", cut, got, want)
		}
	}
}

// TestAnswersEndpoint answers two-turn questions through an endpoint: the
// second turn is asked after the first, with the first answer in the chat.
func TestAnswersEndpoint(t *testing.T) {
	dir := t.TempDir()
	q, _, _ := writeFiles(t, dir)
	s := &scriptedJudge{t: t, rules: []rule{{"Now make it about snow.", "Snow haiku"}, {"Say goodbye.", "Bye!"}, {"", "First answer"}}}
	c := s.client(t)
	out := filepath.Join(dir, "answers.jsonl")
	st, err := (&Answers{Options: Options{Out: out, Concurrency: 2}, Questions: q, Model: "teacher", Answerer: &Endpoint{Client: c}}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Kept != 5 || st.Requests != 7 {
		t.Errorf("stats %+v", st)
	}
	got, err := ReadAnswers(out)
	if err != nil {
		t.Fatal(err)
	}
	if tr := got["1"].Turns(); len(tr) != 2 || tr[0] != "First answer" || tr[1] != "Snow haiku" || got["m3"].Model != "teacher" {
		t.Errorf("answers %+v", got["1"])
	}
	// the answer file is an answer file the judge reads back, ids included
	if string(got["m3"].QuestionID) != `"m3"` || string(got["1"].QuestionID) != "1" {
		t.Errorf("question ids %s %s", got["m3"].QuestionID, got["1"].QuestionID)
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "q.jsonl")
	for _, c := range []struct{ body, want string }{
		{`{"question_id": 1, "turns": ["a"]}` + "\n" + `{"turns": ["b"]}`, "q.jsonl:2: field question_id"},
		{`{"question_id": 1, "turns": []}`, "q.jsonl:1: field turns"},
		{`{"question_id": 1, "turns": ["a", " "]}`, "field turns[1]: empty"},
		{`{"question_id": 1, "turns": ["a"]}` + "\n" + `{"question_id": 1, "turns": ["b"]}`, "1 twice"},
		{`{"question_id": 1, "turns": ["a"]` + "\n", "q.jsonl:1"},
	} {
		os.WriteFile(p, []byte(c.body), 0o644)
		if _, err := ReadQuestions(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v", c.body, err)
		}
	}
	os.WriteFile(p, []byte(`{"question_id": 1, "choices": []}`), 0o644)
	if _, err := ReadAnswers(p); err == nil || !strings.Contains(err.Error(), "q.jsonl:1: field choices") {
		t.Errorf("answers: %v", err)
	}
}

func readText(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func FuzzParseJudge(f *testing.F) {
	f.Add("Rating: [[8]]")
	f.Add("[[A]] [9] rating 3/10")
	f.Fuzz(func(t *testing.T, s string) {
		if v, ok := ParseScore(s); ok && (v < 1 || v > 10) {
			t.Fatalf("score %v accepted", v)
		}
		switch ParseVerdict(s) {
		case "", "A", "B", "C":
		default:
			t.Fatal("bad verdict")
		}
	})
}
