package road

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tinyMinutes makes every training step the shortest (2 steps).
const tinyMinutes = 0.01

// walked is one tiny run of the road shared by the tests (a quarter of a
// minute on 2 cores).
var walked struct {
	dir string
	rep *Report
	err error
}

func walk(t *testing.T) (string, *Report) {
	t.Helper()
	if walked.dir == "" {
		walked.dir, walked.err = os.MkdirTemp("", "road-test-")
		if walked.err == nil {
			walked.rep, walked.err = Run(Options{Dir: walked.dir, Minutes: tinyMinutes, Threads: 2})
		}
	}
	if walked.err != nil {
		t.Fatal(walked.err)
	}
	return walked.dir, walked.rep
}

func TestMain(m *testing.M) {
	code := m.Run()
	if walked.dir != "" {
		os.RemoveAll(walked.dir)
	}
	os.Exit(code)
}

func TestRoadWritesEveryStage(t *testing.T) {
	dir, rep := walk(t)
	for _, s := range Steps {
		if _, err := os.Stat(filepath.Join(dir, s.Name, "step.json")); err != nil {
			t.Errorf("step %s: %v", s.Name, err)
		}
	}
	for _, f := range []string{"pretrain/model.gguf", "sft/model.gguf", "sft/adapter.gguf", "rm/reward.gguf",
		"dpo/model.gguf", "rl/model.gguf", "rl/adapter.gguf", "quantize/model-Q4_K_M.gguf", "gptq/" + gptqName, "gptq/" + rtnName,
		"data/" + clozeTask, "data/" + clozeData, "report.html", "report.json"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: missing or empty (%v)", f, err)
		}
	}
	if len(rep.Stages) != 8 {
		t.Fatalf("%d stages evaluated, want 8", len(rep.Stages))
	}
	kld := map[string]float64{}
	for i, st := range rep.Stages {
		if !(st.Perplexity > 1 && st.Perplexity < 512) {
			t.Errorf("stage %s: perplexity %g outside (1, vocabulary)", st.Name, st.Perplexity)
		}
		if len(st.Answers) != len(rep.Prompts) || len(st.Rewards) != len(rep.Prompts) {
			t.Errorf("stage %s: %d answers, %d rewards for %d prompts", st.Name, len(st.Answers), len(st.Rewards), len(rep.Prompts))
		}
		if !(st.Acc >= 0 && st.Acc <= 1 && st.AccNorm >= 0 && st.AccNorm <= 1 && st.AccErr > 0) {
			t.Errorf("stage %s: story_cloze acc %g ± %g, acc_norm %g", st.Name, st.Acc, st.AccErr, st.AccNorm)
		}
		q := strings.HasPrefix(st.Model, "quantize/") || strings.HasPrefix(st.Model, "gptq/")
		if q != (st.KLD != nil) {
			t.Errorf("stage %s: KLD %v (only the quantized stages have one)", st.Name, st.KLD)
		}
		if st.KLD != nil {
			if !(*st.KLD > 0 && *st.KLD < 1 && *st.SameTop > 0.5 && *st.SameTop <= 1) {
				t.Errorf("stage %s: KLD %g, same top %g", st.Name, *st.KLD, *st.SameTop)
			}
			kld[st.Name] = *st.KLD
		}
		if (i == 0) != (st.WinRate == nil) {
			t.Errorf("stage %s: win rate %v (only the first stage has none)", st.Name, st.WinRate)
		}
	}
	// stories260K, trained on TinyStories, does better than chance (one
	// in four) at picking a story's own next sentence.
	if acc := rep.Stages[0].AccNorm; !(acc > 0.3) {
		t.Errorf("the base model's story_cloze acc_norm %g, want above chance", acc)
	}
	// GPTQ's error correction beats rounding to nearest on the same grid.
	if !(kld["gptq-q4_0"] < kld["rtn-q4_0"]) {
		t.Errorf("KLD of GPTQ %g, of round-to-nearest %g: want GPTQ's lower", kld["gptq-q4_0"], kld["rtn-q4_0"])
	}
	// Two steps of the reward model on pairs whose rejected side is
	// shuffled words already tell most held-out pairs apart.
	if acc := rep.RM["val_accuracy"]; !(acc > 0.5) {
		t.Errorf("reward model's held-out accuracy %g, want above chance", acc)
	}
	for _, name := range []string{"pretrain", "sft", "rm", "dpo", "rl"} {
		found := false
		for _, in := range rep.Steps {
			if in.Step == name {
				found = true
				if len(in.Loss) != in.Steps || in.Steps == 0 {
					t.Errorf("%s: %d losses for %d steps", name, len(in.Loss), in.Steps)
				}
				if name == "rl" && len(in.Reward) != in.Steps {
					t.Errorf("rl: %d rewards for %d steps", len(in.Reward), in.Steps)
				}
			}
		}
		if !found {
			t.Errorf("no step %s in the report", name)
		}
	}
	if _, ok := rep.RL["val_reward"]; !ok {
		t.Errorf("the report lacks the RL step's held-out reward: %v", rep.RL)
	}
}

func TestRoadFromKeepsEarlierSteps(t *testing.T) {
	dir, _ := walk(t)
	before, err := os.Stat(filepath.Join(dir, "pretrain", "model.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	rep, err := Run(Options{Dir: dir, Minutes: tinyMinutes, From: "quantize", To: "gptq", Threads: 2})
	if err != nil || rep != nil {
		t.Fatalf("--from quantize --to gptq: %v, report %v (want none: the road stopped before it)", err, rep)
	}
	after, err := os.Stat(filepath.Join(dir, "pretrain", "model.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("--from quantize rewrote pretrain/model.gguf")
	}
	q, err := os.Stat(filepath.Join(dir, "quantize", "step.json"))
	if err != nil || !q.ModTime().After(before.ModTime()) {
		t.Errorf("--from quantize did not re-run quantize (%v)", err)
	}
}

func TestRoadFailingStepSaysWhereToResume(t *testing.T) {
	dir, _ := walk(t)
	bad := t.TempDir()
	// a copy of the finished data step, with the instructions broken
	for _, f := range []string{"data", "pretrain"} {
		if err := exec.Command("cp", "-r", filepath.Join(dir, f), bad).Run(); err != nil {
			t.Skip("cp:", err)
		}
	}
	if err := os.WriteFile(filepath.Join(bad, "data", "sft.json"), []byte("[{\"instruction\": 3}]"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Run(Options{Dir: bad, Minutes: tinyMinutes, From: "sft", Threads: 2})
	if err == nil || !strings.Contains(err.Error(), "--from sft") || !strings.Contains(err.Error(), "sft.json") {
		t.Fatalf("error %v: want the failing step, its file and --from sft", err)
	}
	if _, err := os.Stat(filepath.Join(bad, "pretrain", "model.gguf")); err != nil {
		t.Errorf("the failed sft step removed the pretrain output: %v", err)
	}
	if _, err := Run(Options{Dir: t.TempDir(), From: "dpo"}); err == nil || !strings.Contains(err.Error(), "--from data") {
		t.Errorf("from dpo in an empty directory: %v, want the first unfinished step", err)
	}
	if _, err := Run(Options{Dir: bad, From: "nope"}); err == nil || !strings.Contains(err.Error(), "pretrain") {
		t.Errorf("an unknown step: %v, want the list of steps", err)
	}
	if _, err := Run(Options{Dir: bad, From: "rl", To: "sft"}); err == nil || !strings.Contains(err.Error(), "before") {
		t.Errorf("--to before --from: %v", err)
	}
}

func TestReportHasNoExternalAssets(t *testing.T) {
	dir, rep := walk(t)
	b, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?i)(src|href)\s*=|url\(\s*["']?(https?:|//)|<link|<script`).Find(b); m != nil {
		t.Errorf("report.html refers to something outside itself: %q", m)
	}
	for _, want := range []string{`id="eval"`, `id="answers"`, htmlEscape(ShowPrompts[2]), htmlEscape(rep.Stages[2].Answers[0])} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if n := bytes.Count(b, []byte("<svg")); n < 6 {
		t.Errorf("%d inline SVGs, want the road and five curves", n)
	}
	var back Report
	jb, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil || json.Unmarshal(jb, &back) != nil || len(back.Stages) != len(rep.Stages) {
		t.Errorf("report.json does not read back (%v)", err)
	}
}

func htmlEscape(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString("&#34;")
		case '\'':
			b.WriteString("&#39;")
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestReportInChromium renders report.html in headless Chromium: the DOM
// it builds has the evaluation table with every stage and the SVGs, and
// it paints a screenshot. HERD_SCREENSHOT=PATH keeps the screenshot
// (docs/quickstart-report.png is the same command on a default run's
// report, at --window-size=1280,2750).
func TestReportInChromium(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if bin, err = exec.LookPath("chromium-browser"); err != nil {
			t.Skip("no chromium (apt-get install -y chromium)")
		}
	}
	dir, rep := walk(t)
	page := "file://" + filepath.Join(dir, "report.html")
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"}
	dom, err := exec.Command(bin, append(args, "--dump-dom", page)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	rows := regexp.MustCompile(`(?s)<table id="eval">.*?</table>`).Find(dom)
	if got := bytes.Count(rows, []byte("<tr>")); got != len(rep.Stages)+1 {
		t.Errorf("the rendered evaluation table has %d rows, want %d", got, len(rep.Stages)+1)
	}
	if bytes.Count(dom, []byte("<svg")) < 6 || !bytes.Contains(dom, []byte("polyline")) {
		t.Errorf("the rendered page lacks the road diagram or the loss curves")
	}
	shot := filepath.Join(t.TempDir(), "report.png")
	if keep := os.Getenv("HERD_SCREENSHOT"); keep != "" {
		shot = keep
	}
	if out, err := exec.Command(bin, append(args, "--screenshot="+shot, page)...).CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, out)
	}
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 10000 || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("screenshot %s: %d bytes (%v), want a painted PNG", shot, len(png), err)
	}
}
