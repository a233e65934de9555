package recipes

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/herd-llm/herd/road"
)

func TestBookParses(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range all {
		names = append(names, r.Name)
		o := r.Original
		if o.Data == "" || o.Method == "" || o.Hyperparameters == "" || o.Hardware == "" {
			t.Errorf("%s: the original's data, method, hyperparameters and hardware must all be said", r.Name)
		}
		for _, short := range []bool{false, true} {
			plan, err := Plan(r, "OUT", short, nil)
			if err != nil || len(plan) != len(r.Steps) {
				t.Errorf("%s: plan %v (%d steps)", r.Name, err, len(plan))
			}
		}
	}
	// the projects of issue 20's list, every stage of the road
	for _, want := range []string{"redpajama", "openllama", "baichuan", "alpaca", "belle", "openalpaca", "gpt4-x-alpaca", "vicuna",
		"wizardlm", "tulu", "gpt4all", "koala", "openbuddy", "pygmalion", "alpaca-lora", "qlora", "baize", "llama-adapter", "30b-lazarus",
		"chinese-llama-alpaca", "chinese-vicuna", "stackllama", "stablevicuna", "dpo", "llama.cpp", "gptq"} {
		if !slices.Contains(names, want) {
			t.Errorf("the book lacks %s", want)
		}
	}
	if _, err := Get("nope"); err == nil || !strings.Contains(err.Error(), "alpaca") {
		t.Errorf("Get(nope): %v, want the list of names", err)
	}
}

func TestPlanOverrides(t *testing.T) {
	r, err := Get("dpo")
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plan(r, "/o", true, []string{"lr=0.01", "dpo.beta=0.5", "sft.data=my.json"})
	if err != nil {
		t.Fatal(err)
	}
	sft, dpo := strings.Join(plan[0].Args, " "), strings.Join(plan[2].Args, " ")
	for _, want := range []string{"--lr=0.01", "--data=my.json", "--steps=4", "-o /o/sft"} {
		if !strings.Contains(sft, want) {
			t.Errorf("sft %q lacks %q", sft, want)
		}
	}
	for _, want := range []string{"--lr=0.01", "--beta=0.5", "--data=/o/data/prefs.jsonl", "--base=/o/merge/model.gguf"} {
		if !strings.Contains(dpo, want) {
			t.Errorf("dpo %q lacks %q", dpo, want)
		}
	}
	for _, bad := range []string{"nosuchflag=1", "nostep.lr=1", "lr"} {
		if _, err := Plan(r, "/o", false, []string{bad}); err == nil {
			t.Errorf("override %q accepted", bad)
		}
	}
}

func TestClaims(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "s"), 0o755)
	os.WriteFile(filepath.Join(dir, "s", "metrics.jsonl"), []byte(`{"step":1,"loss":2,"acc":0.4}
{"step":2,"loss":1.5}
{"step":3,"loss":1,"acc":0.7}
`), 0o644)
	os.WriteFile(filepath.Join(dir, "big"), make([]byte, 10), 0o644)
	os.WriteFile(filepath.Join(dir, "small"), make([]byte, 5), 0o644)
	os.WriteFile(filepath.Join(dir, "one.json"), []byte("{\n \"r\": {\"ppl\": 7.5}\n}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "two.json"), []byte(`{"r": {"ppl": 7.7}}`), 0o644)
	a, b, c9 := 0.6, 0.9, 9.0
	r := &Recipe{Name: "t", Steps: []Step{{ID: "s"}}}
	for _, c := range []struct {
		claim Claim
		holds bool
	}{
		{Claim{Step: "s", Metric: "loss", Falls: true}, true},
		{Claim{Step: "s", Metric: "loss", Rises: true}, false},
		{Claim{Step: "s", Metric: "acc", Rises: true}, true},
		{Claim{Step: "s", Metric: "acc", Above: &a}, true},
		{Claim{Step: "s", Metric: "acc", Above: &b}, false},
		{Claim{Step: "s", Metric: "nope", Falls: true}, false},
		{Claim{Step: "s", File: "small", SmallerThan: "big"}, true},
		{Claim{Step: "s", File: "big", SmallerThan: "small"}, false},
		{Claim{Step: "s", File: "missing"}, false},
		{Claim{Step: "s", File: "one.json", Metric: "r.ppl", Below: &b}, false},
		{Claim{Step: "s", File: "one.json", Metric: "r.ppl", Below: &c9}, true},
		{Claim{Step: "s", File: "one.json", Metric: "r.ppl", NotAbove: "two.json"}, true},
		{Claim{Step: "s", File: "two.json", Metric: "r.ppl", NotAbove: "one.json"}, false},
	} {
		r.Claims = []Claim{c.claim}
		if r.Claims[0].Full = true; !c.holds {
			if _, err := Check(r, dir, true); err != nil {
				t.Errorf("a full claim checked after the short run: %v", err)
			}
		}
		r.Claims[0].Full = false
		if _, err := Check(r, dir, false); (err == nil) != c.holds {
			t.Errorf("claim %+v: %v, want holding %v", c.claim, err, c.holds)
		}
	}
}

// WriteData writes every file the book's steps name under {data}, each a
// layout herd reads: the Chinese rows are Chinese, the GPTeacher rows keep
// an input, the two-choice task has a right answer in both places.
func TestWriteData(t *testing.T) {
	dir := t.TempDir()
	if _, err := road.WriteData(dir, "", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteData(dir); err != nil {
		t.Fatal(err)
	}
	all, _ := All()
	re := regexp.MustCompile(`\{data\}/([A-Za-z0-9._-]+)`)
	for _, r := range all {
		for _, m := range re.FindAllStringSubmatch(r.Text, -1) {
			if fi, err := os.Stat(filepath.Join(dir, m[1])); err != nil || fi.Size() == 0 {
				t.Errorf("%s names {data}/%s: %v", r.Name, m[1], err)
			}
		}
	}
	var zh []alpacaRow
	if err := readJSON(filepath.Join(dir, "zh-sft.json"), &zh); err != nil || len(zh) < 100 {
		t.Fatalf("zh-sft.json: %d rows, %v", len(zh), err)
	}
	for _, r := range zh[:5] {
		if !utf8.ValidString(r.Output) || !strings.ContainsFunc(r.Output, func(c rune) bool { return unicode.Is(unicode.Han, c) }) {
			t.Errorf("a Chinese row without Chinese: %+v", r)
		}
	}
	var gp []map[string]string
	readJSON(filepath.Join(dir, "gpteacher.json"), &gp)
	if len(gp) == 0 || gp[0]["input"] == "" || gp[0]["response"] == "" {
		t.Errorf("gpteacher.json: %v", gp[:min(1, len(gp))])
	}
	var choice []struct {
		Choices []string
		Label   int
	}
	if err := readJSONL(filepath.Join(dir, "choice.jsonl"), &choice); err != nil || len(choice) < 10 {
		t.Fatalf("choice.jsonl: %d items, %v", len(choice), err)
	}
	if choice[0].Label != 0 || choice[1].Label != 1 || choice[0].Choices[0] == choice[0].Choices[1] {
		t.Errorf("choice items: %+v", choice[:2])
	}
}
