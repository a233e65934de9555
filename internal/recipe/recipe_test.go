package recipe

import (
	"strings"
	"testing"
)

type sample struct {
	Ctx  int      `yaml:"ctx"`
	LR   float64  `yaml:"lr"`
	Tags []string `yaml:"tags"`
}

// Decode keeps the defaults of keys a file does not set, renames aliases,
// and names the file and line of an unknown key.
func TestDecode(t *testing.T) {
	s := sample{Ctx: 7, LR: 1}
	if err := Decode("r.yaml", []byte("seq: 64\ntags: [a, b]\n"), &s, map[string]string{"seq": "ctx"}); err != nil {
		t.Fatal(err)
	}
	if s.Ctx != 64 || s.LR != 1 || len(s.Tags) != 2 {
		t.Errorf("%+v", s)
	}
	err := Decode("r.yaml", []byte("ctx: 1\n\nlearning_rate: 2\n"), &s, nil)
	if err == nil || !strings.Contains(err.Error(), "r.yaml") || !strings.Contains(err.Error(), "learning_rate") || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("unknown key: %v", err)
	}
	if err := Decode("r.yaml", []byte("ctx: [1\n"), &s, nil); err == nil {
		t.Error("malformed YAML accepted")
	}
	if err := Decode("r.yaml", nil, &s, nil); err != nil {
		t.Errorf("an empty file: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("seq: 64\ntags: [a, b]\n"))
	f.Add([]byte("ctx: 1\nlr: x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s sample
		_ = Decode("fuzz.yaml", b, &s, map[string]string{"seq": "ctx"})
	})
}
