package tokenizer

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The oracle is the reference C++ SentencePiece: Debian's spm_encode and
// spm_decode. Tests that need it skip when it is not installed; the
// 32000-piece LLaMA vocabulary is read from the shared data kit, also
// skipped when absent.

const (
	llamaModelPath = "/work/shared/data/tokenizers/llama2c-tokenizer.model"
	llamaBinPath   = "/work/shared/data/tokenizers/llama2c-tokenizer.bin"
)

// needOracle skips the test unless spm_encode and spm_decode are installed.
func needOracle(tb testing.TB) {
	tb.Helper()
	for _, tool := range []string{"spm_encode", "spm_decode"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("%s not installed (apt-get install sentencepiece): no reference to compare with", tool)
		}
	}
}

// loadLlama returns the LLaMA vocabulary from llama2.c's tokenizer.bin,
// skipping the test when the shared data kit is absent.
func loadLlama(tb testing.TB) *SPM {
	tb.Helper()
	data, err := os.ReadFile(llamaBinPath)
	if err != nil {
		tb.Skipf("LLaMA vocabulary not available (%v); it cannot be shipped in testdata (Llama 2 licence)", err)
	}
	tk, err := FromLlama2c(data, 32000)
	if err != nil {
		tb.Fatal(err)
	}
	return tk
}

// writeModel writes tk as a .model file into a temporary directory.
func writeModel(tb testing.TB, tk *SPM) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "test.model")
	if err := os.WriteFile(path, tk.MarshalModelProto(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// spmEncode runs spm_encode on lines (none may contain '\n') and returns
// the ids of each.
func spmEncode(tb testing.TB, model string, lines []string) [][]int {
	tb.Helper()
	for _, l := range lines {
		if strings.Contains(l, "\n") {
			tb.Fatalf("spm_encode reads lines: %q has a newline", l)
		}
	}
	out := runTool(tb, "spm_encode", []string{"--model=" + model, "--output_format=id"}, strings.Join(lines, "\n")+"\n")
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(got) != len(lines) {
		tb.Fatalf("spm_encode: %d lines in, %d out", len(lines), len(got))
	}
	ids := make([][]int, len(lines))
	for i, l := range got {
		var err error
		if ids[i], err = parseIDs(l); err != nil {
			tb.Fatalf("spm_encode output line %d: %v", i, err)
		}
	}
	return ids
}

// spmDecode runs spm_decode on id sequences and returns one text each; the
// texts must not contain '\n' unless there is only one sequence.
func spmDecode(tb testing.TB, model string, ids [][]int) []string {
	tb.Helper()
	var in strings.Builder
	for _, s := range ids {
		in.WriteString(formatIDs(s))
		in.WriteByte('\n')
	}
	out := strings.TrimSuffix(runTool(tb, "spm_decode", []string{"--model=" + model, "--input_format=id"}, in.String()), "\n")
	if len(ids) == 1 {
		return []string{out}
	}
	got := strings.Split(out, "\n")
	if len(got) != len(ids) {
		tb.Fatalf("spm_decode: %d lines in, %d out", len(ids), len(got))
	}
	return got
}

func runTool(tb testing.TB, tool string, args []string, stdin string) string {
	tb.Helper()
	in := filepath.Join(tb.TempDir(), "input.txt")
	if err := os.WriteFile(in, []byte(stdin), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(tool, append(args, "--input="+in)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %v: %v\n%s", tool, args, err, stderr.String())
	}
	return stdout.String()
}

func parseIDs(s string) ([]int, error) {
	fields := strings.Fields(s)
	ids := make([]int, len(fields))
	for i, f := range fields {
		v, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("id %q: %w", f, err)
		}
		ids[i] = v
	}
	return ids, nil
}

func formatIDs(ids []int) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(id))
	}
	return b.String()
}

// spmEncodeText encodes text that may contain newlines with spm_encode,
// which reads one line at a time. When no piece of the vocabulary contains
// '\n' (true of LLaMA's), BPE never merges across a newline, so the
// encoding of the whole text is the encoding of its lines joined by the
// newline's piece — the first line with the dummy prefix, the others
// without. noPrefix is a copy of the model without the dummy prefix; the
// first line is encoded through it as " "+line, which normalises to the
// same "▁"+line (an empty first line still gives "▁" when text goes on).
func spmEncodeText(tb testing.TB, tk *SPM, model, noPrefix string, text string) []int {
	tb.Helper()
	if tk.Options().RemoveExtraWhitespaces {
		tb.Fatalf("spmEncodeText cannot split lines when extra whitespace is removed")
	}
	if !strings.Contains(text, "\n") {
		return spmEncode(tb, model, []string{text})[0]
	}
	for id := range tk.VocabSize() {
		if p := tk.Piece(id); p != "\n" && strings.Contains(p, "\n") && tk.Type(id) != TypeControl {
			tb.Fatalf("piece %d %q contains a newline: lines cannot be encoded apart", id, p)
		}
	}
	nl := tk.PieceID("\n")
	if nl < 0 || tk.Type(nl) == TypeUnused {
		nl = tk.PieceID("<0x0A>")
	}
	lines := strings.Split(text, "\n")
	if tk.Options().AddDummyPrefix {
		lines[0] = " " + lines[0]
	}
	var ids []int
	for i, seg := range spmEncode(tb, noPrefix, lines) {
		if i > 0 {
			ids = append(ids, nl)
		}
		ids = append(ids, seg...)
	}
	return ids
}

// variant rebuilds tk after edit has changed its pieces, types or options.
func variant(tb testing.TB, tk *SPM, edit func(pieces []string, types []Type, opt *SPMOptions)) *SPM {
	tb.Helper()
	n := tk.VocabSize()
	pieces, scores, types := make([]string, n), make([]float32, n), make([]Type, n)
	for i := range n {
		pieces[i], scores[i], types[i] = tk.Piece(i), tk.Score(i), tk.Type(i)
	}
	opt := tk.Options()
	edit(pieces, types, &opt)
	v, err := NewSPM(pieces, scores, types, opt)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}
