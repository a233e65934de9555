package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGPTQCommand runs herd gptq on the embedded model end to end and
// checks its bad-input errors: calibration text shorter than one window,
// a bits/group combination no GGUF type holds, a --type whose grid is not
// the one asked for, and an AutoGPTQ group the model's rows do not hold.
func TestGPTQCommand(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "s.gguf")
	if _, stderr, err := herd(t, "", "convert", "../../assets/stories260K.bin", "--tokenizer", "../../assets/tok512.bin", "--dtype", "f16", "-o", model); err != nil {
		t.Fatal(err, stderr)
	}
	calib := filepath.Join(dir, "calib.txt")
	if err := os.WriteFile(calib, []byte(strings.Repeat(golden(t)+"\n", 4)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "q.gguf")
	_, stderr, err := herd(t, "", "gptq", model, "--calib", calib, "-o", out, "--act-order", "--calib-samples", "4", "--calib-ctx", "64", "-t", "2")
	if err != nil {
		t.Fatal(err, stderr)
	}
	if !strings.Contains(stderr, "30 of 30 layer matrices by GPTQ") {
		t.Errorf("gptq: summary missing in\n%s", stderr)
	}
	if _, stderr, err := herd(t, "", "run", out, "-p", "Once", "-n", "8", "--temp", "0"); err != nil {
		t.Fatal(err, stderr)
	}
	short := filepath.Join(dir, "short.txt")
	if err := os.WriteFile(short, []byte("Once upon a time."), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--calib", short, "--calib-ctx", "64"}, "shorter than one window of 64"},
		{[]string{"--calib", calib, "--bits", "3", "--group", "64"}, "no llama.cpp type holds 3-bit"},
		{[]string{"--calib", calib, "--type", "Q4_0", "--group", "128"}, "--type Q4_0 is 4-bit groups of 32"},
		{[]string{"--calib", calib, "--type", "Q4_K_M", "--bits", "4"}, "drop --bits"},
		{[]string{"--calib", calib, "--format", "autogptq", "--group", "128"}, "not whole groups of 128"},
	} {
		args := append([]string{"gptq", model, "-o", filepath.Join(dir, "bad.gguf")}, c.args...)
		_, stderr, err := herd(t, "", args...)
		if err == nil || !strings.Contains(err.Error()+stderr, c.want) {
			t.Errorf("%v: got %v, want an error containing %q in\n%s", c.args, err, c.want, stderr)
		}
	}
}
