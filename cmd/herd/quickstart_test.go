package main

import (
	"strings"
	"testing"
)

// TestQuickstartFlags checks the command's wiring to road.Run: the step
// names --from accepts and a bad --minutes (the road itself is tested in
// package road).
func TestQuickstartFlags(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"quickstart", "-o", dir, "--from", "nope"}, "steps: data, pretrain, sft, rm, dpo, quantize, eval, report"},
		{[]string{"quickstart", "-o", dir, "--from", "eval"}, "--from data"},
		{[]string{"quickstart", "-o", dir, "--minutes", "-1"}, "minutes"},
	} {
		root := newRoot()
		root.SetArgs(c.args)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
