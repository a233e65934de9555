package road

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// storyCloze makes the road's multiple-choice task from the held-out
// stories, in HellaSwag's layout: the context is a story's first two
// sentences, the endings its own third sentence and the third sentences
// of three other held-out stories (fixed offsets), the gold ending's
// place rotating through the four.
func storyCloze(val []string) []byte {
	var ok [][]string
	for _, s := range val {
		if sent := sentences(s); len(sent) >= 3 {
			ok = append(ok, sent)
		}
	}
	var b bytes.Buffer
	for i, sent := range ok {
		n := len(ok)
		endings := []string{ok[(i+7)%n][2], ok[(i+19)%n][2], ok[(i+31)%n][2]}
		gold := i % 4
		endings = append(endings[:gold], append([]string{sent[2]}, endings[gold:]...)...)
		row, _ := json.Marshal(map[string]any{"ind": i, "ctx": sent[0] + " " + sent[1], "endings": endings, "label": gold})
		b.Write(append(row, '\n'))
	}
	return b.Bytes()
}

// TestStoryClozeFileIsCurrent checks that the shipped task file is what
// storyCloze makes of the shipped held-out stories (HERD_REGEN=1
// rewrites it).
func TestStoryClozeFileIsCurrent(t *testing.T) {
	val, err := stories("stories-val.jsonl.gz")
	if err != nil {
		t.Fatal(err)
	}
	want := storyCloze(val)
	if os.Getenv("HERD_REGEN") != "" {
		if err := os.WriteFile("data/"+clozeData, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := shipped.ReadFile("data/" + clozeData)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("data/%s is not what the held-out stories make (HERD_REGEN=1 go test ./road -run StoryCloze rewrites it)", clozeData)
	}
	if n := bytes.Count(got, []byte("\n")); n < 50 {
		t.Errorf("%d documents, want one for nearly every held-out story", n)
	}
	for _, d := range bytes.Split(bytes.TrimSpace(got), []byte("\n")) {
		var row struct {
			Endings []string
			Label   int
		}
		if err := json.Unmarshal(d, &row); err != nil || len(row.Endings) != 4 {
			t.Fatalf("%s: %v", d, err)
		}
		seen := map[string]bool{}
		for _, e := range row.Endings {
			if seen[e] {
				t.Errorf("%s: ending %q twice", d, e)
			}
			seen[e] = true
		}
	}
}
