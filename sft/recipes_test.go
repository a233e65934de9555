package sft

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestRecipesPortable checks that no recipe in recipes/ names an absolute
// path: data is a parameter (--data), so a recipe works on any machine
// (they named /work/shared/... before).
func TestRecipesPortable(t *testing.T) {
	files, _ := filepath.Glob("recipes/*.yaml")
	if len(files) == 0 {
		t.Fatal("no recipes")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var kv map[string]any
		if err := yaml.Unmarshal(b, &kv); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for k, v := range kv {
			if s, ok := v.(string); ok && (filepath.IsAbs(s) || strings.Contains(s, ":/")) {
				t.Errorf("%s: %s is an absolute path %q", f, k, s)
			}
		}
		if !strings.Contains(string(b), "--data") {
			t.Errorf("%s: the comment does not show how to give --data", f)
		}
	}
}
