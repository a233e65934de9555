package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/format/gguf"
)

// valLosses reads the loss on the validation data before the first step
// and after the last from herd sft's log.
func valLosses(t *testing.T, log string) (start, end float64) {
	t.Helper()
	m := regexp.MustCompile(`; val loss ([0-9.]+) \(([0-9.]+) at the start\)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no validation loss in the log:\n%s", log)
	}
	end, _ = strconv.ParseFloat(m[1], 64)
	start, _ = strconv.ParseFloat(m[2], 64)
	return start, end
}

// countTokens is the number of tokens the vocabulary at tok (any file herd
// tokenize reads) encodes the file text into, without BOS.
func countTokens(t *testing.T, tok, text string) int {
	t.Helper()
	out, _, err := herd(t, "", "tokenize", tok, "--count", "--no-bos", "-f", text)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("tokenize --count said %q", out)
	}
	return n
}

// TestChinesePath walks Chinese-LLaMA's road on stories260K with the real
// subcommands: a Chinese SentencePiece vocabulary trained on a chapter of
// 红楼梦 and the Chinese Alpaca rows (herd tokenizer train) extends the
// model's 512-piece tok512 (herd tokenizer extend), the model gets rows for
// the new tokens (herd resize-vocab), the embedding alone trains on Chinese
// Alpaca data (herd sft --method embed, stage 1), then LoRA on top (herd sft
// --method lora), and the result answers a Chinese prompt with Chinese
// characters (herd run --lora). Checked on the way: the extended vocabulary
// spells the Chinese text in under a third of tok512's tokens (which spells
// each character as three UTF-8 bytes); resizing leaves the old tokens'
// logits bit for bit; stage 1 changes the token embedding only (the output
// head is tied to it) and lowers the validation loss; the LoRA stage
// starts from stage 1's loss and lowers it further. About 6 s: 30 steps a
// stage is what it takes for Chinese characters to lead the reply (after
// 10 steps a stage it is punctuation), so -short runs it whole.
func TestChinesePath(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	zhData := "../../sft/testdata/alpaca_zh.json"
	var rows []struct{ Instruction, Input, Output string }
	if err := json.Unmarshal(mustRead(t, zhData), &rows); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, r := range rows {
		for _, s := range []string{r.Instruction, r.Input, r.Output} {
			if s != "" {
				sb.WriteString(strings.ReplaceAll(s, "\n", " ") + "\n")
			}
		}
	}
	zhText := path("alpaca_zh.txt")
	if err := os.WriteFile(zhText, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string) {
		t.Helper()
		out, se, err := herd(t, "", args...)
		if err != nil {
			t.Fatalf("herd %s: %v\n%s", strings.Join(args, " "), err, se)
		}
		return out, se
	}

	// the vocabularies
	run("tokenizer", "train", "-i", "testdata/hongloumeng-1.txt", zhText, "--vocab-size", "2000", "-o", path("zh.model"))
	run("convert", "", "-o", path("base.gguf")) // stories260K with tok512 inside
	run("tokenizer", "extend", path("base.gguf"), path("zh.model"), "-o", path("merged.model"))
	chars := len([]rune(sb.String()))
	before, after := countTokens(t, path("base.gguf"), zhText), countTokens(t, path("merged.model"), zhText)
	t.Logf("Chinese Alpaca text, %d characters: %d tokens with tok512 (%.2f a character), %d extended (%.2f)",
		chars, before, float64(before)/float64(chars), after, float64(after)/float64(chars))
	if 3*after >= before {
		t.Errorf("the extended vocabulary spells the Chinese text in %d tokens, tok512 in %d: want under a third", after, before)
	}

	// resize-vocab keeps the old tokens' logits
	out, _ := run("resize-vocab", path("base.gguf"), path("merged.model"), "-o", path("resized.gguf"))
	if !strings.Contains(out, "vocabulary 512 → ") {
		t.Errorf("resize-vocab said %q", out)
	}
	m0, tok0, err := checkpoint.Load(path("base.gguf"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer m0.Close()
	m1, tok1, err := checkpoint.Load(path("resized.gguf"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	if m1.Config.VocabSize != tok1.VocabSize() || tok1.VocabSize() <= 512 {
		t.Fatalf("resized model: vocabulary %d, tokenizer %d", m1.Config.VocabSize, tok1.VocabSize())
	}
	prompt := tok0.Encode("Once upon a time, a girl", true, false)
	l0, l1 := lastLogits(t, m0, prompt), lastLogits(t, m1, prompt)
	for i := range l0 {
		if l0[i] != l1[i] {
			t.Fatalf("token %d: logit %g before resize-vocab, %g after", i, l0[i], l1[i])
		}
	}

	// stage 1: the embedding alone
	val := []string{"--data", zhData, "--val-data", zhData, "--eval-every", "0", "--template", "vicuna", "--steps", "30", "--batch", "4", "--lr", "1e-2", "--seed", "1", "--quiet"}
	_, log := run(append([]string{"sft", "--method", "embed", "--embed-tensors", "embed", "--base", path("resized.gguf"), "-o", path("stage1")}, val...)...)
	start1, end1 := valLosses(t, log)
	t.Logf("embed stage: val loss %.4f → %.4f", start1, end1)
	if !(end1 < start1/2) {
		t.Errorf("embed stage: val loss %.4f → %.4f, want it at least halved", start1, end1)
	}
	onlyEmbedChanged(t, path("resized.gguf"), filepath.Join(path("stage1"), "model.gguf"))

	// stage 2: LoRA on the stage-1 model
	tuned := filepath.Join(path("stage1"), "model.gguf")
	_, log = run(append([]string{"sft", "--method", "lora", "--base", tuned, "-o", path("stage2")}, val...)...)
	start2, end2 := valLosses(t, log)
	t.Logf("LoRA stage: val loss %.4f → %.4f", start2, end2)
	if math.Abs(start2-end1) > 1e-4 {
		t.Errorf("the LoRA stage starts at val loss %.4f, stage 1 ended at %.4f", start2, end1)
	}
	if !(end2 < start2) {
		t.Errorf("LoRA stage: val loss %.4f → %.4f", start2, end2)
	}

	// the tuned model answers a Chinese instruction in Chinese
	tmpl, err := chat.Lookup("vicuna")
	if err != nil {
		t.Fatal(err)
	}
	r, err := tmpl.Render([]chat.Message{{Role: chat.User, Content: "写一个关于春天的简短故事。"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	p := r.Text()
	out, _ = run("run", tuned, "--lora", path("stage2"), "-p", p, "--temp", "0", "-n", "40")
	reply, ok := strings.CutPrefix(out, p)
	if !ok {
		t.Fatalf("herd run does not echo the prompt: %q", out)
	}
	han := 0
	for _, c := range reply {
		if unicode.Is(unicode.Han, c) {
			han++
		}
	}
	t.Logf("reply: %q", reply)
	if han < 5 {
		t.Errorf("the reply has %d Chinese characters: %q", han, reply)
	}
}

// onlyEmbedChanged: the GGUF files a and b hold the same tensors, of the
// same types and shapes, with the same bytes except the token embedding,
// which differs.
func onlyEmbedChanged(t *testing.T, a, b string) {
	t.Helper()
	fa, err := gguf.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := gguf.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	if len(fa.Tensors) != len(fb.Tensors) {
		t.Fatalf("%d tensors before the embed stage, %d after", len(fa.Tensors), len(fb.Tensors))
	}
	for _, ta := range fa.Tensors {
		tb, ok := fb.Tensor(ta.Name)
		if !ok {
			t.Errorf("tensor %s is gone after the embed stage", ta.Name)
			continue
		}
		if ta.DType != tb.DType || !slices.Equal(ta.Dims, tb.Dims) {
			t.Errorf("tensor %s: %v %v before the embed stage, %v %v after", ta.Name, ta.DType, ta.Dims, tb.DType, tb.Dims)
			continue
		}
		same := string(ta.Data) == string(tb.Data)
		if ta.Name == "token_embd.weight" {
			if same {
				t.Error("the embed stage left the token embedding as it was")
			}
		} else if !same {
			t.Errorf("the embed stage changed tensor %s", ta.Name)
		}
	}
}
