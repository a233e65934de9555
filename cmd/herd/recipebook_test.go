package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/herd-llm/herd/recipes"
)

// quickRecipes run in -short too (a few seconds each on 2 cores); the
// others run without -short.
var quickRecipes = []string{"alpaca-lora", "llama.cpp", "redpajama"}

// TestRecipeShortVariants runs every recipe's short variant through the
// CLI and checks its claims (herd recipe run fails when one is not met).
func TestRecipeShortVariants(t *testing.T) {
	all, err := recipes.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		t.Run(r.Name, func(t *testing.T) {
			if testing.Short() && !strings.Contains(strings.Join(quickRecipes, " "), r.Name) {
				t.Skip("-short: only", quickRecipes)
			}
			var log bytes.Buffer
			root := newRoot()
			root.SetArgs([]string{"recipe", "run", r.Name, "--short", "-o", t.TempDir()})
			root.SetErr(&log)
			root.SetOut(&log)
			if err := root.Execute(); err != nil {
				t.Fatalf("%v\n%s", err, tail(log.String(), 3000))
			}
			if !strings.Contains(log.String(), "claim held") {
				t.Errorf("no claim checked:\n%s", tail(log.String(), 2000))
			}
		})
	}
}

func TestRecipeListShowsEveryRecipe(t *testing.T) {
	var out bytes.Buffer
	root := newRoot()
	root.SetArgs([]string{"recipe", "list"})
	root.SetOut(&out)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	all, _ := recipes.All()
	if n := strings.Count(out.String(), "\n"); n != len(all) || len(all) < 10 {
		t.Errorf("%d lines for %d recipes:\n%s", n, len(all), out.String())
	}
	root = newRoot()
	root.SetArgs([]string{"recipe", "run", "nope"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "alpaca") {
		t.Errorf("recipe run nope: %v", err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
