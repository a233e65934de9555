package road

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"os"
	"strings"
	"time"
)

// Report is what a run of the road found: report.json's content.
type Report struct {
	Dir     string             `json:"dir"`
	Minutes float64            `json:"minutes"`
	Quant   string             `json:"quant"`
	Written string             `json:"written"` // RFC 3339
	Steps   []*Info            `json:"steps"`
	Stages  []Stage            `json:"stages"`
	Prompts []string           `json:"prompts"`
	RM      map[string]float64 `json:"reward_model"` // validation accuracy and margin
	DPO     map[string]float64 `json:"dpo"`          // validation rewards accuracy and margin
	RL      map[string]float64 `json:"rl"`           // held-out reward before and after, KL
	GPTQ    map[string]float64 `json:"gptq"`         // matrices, windows, sizes
	Seconds float64            `json:"seconds"`      // the steps' time, summed
	Model   string             `json:"model"`        // the road's result, relative to Dir
}

// report reads the run's records into a Report (the report step has run).
func (r *Road) report() (*Report, error) {
	b, err := os.ReadFile(r.Path("report.json"))
	if err != nil {
		return nil, err
	}
	var rep Report
	return &rep, json.Unmarshal(b, &rep)
}

// collect assembles the Report from the steps' records.
func (r *Road) collect() (*Report, error) {
	rep := &Report{Dir: r.Dir, Minutes: r.Minutes, Quant: r.quantType(), Written: time.Now().UTC().Format(time.RFC3339),
		Model: "quantize/" + r.quantName()}
	for _, s := range Steps {
		if in := r.infos[s.Name]; in != nil {
			rep.Steps = append(rep.Steps, in)
			rep.Seconds += in.Seconds
		}
	}
	b, err := os.ReadFile(r.Path("eval", "stages.json"))
	if err == nil {
		err = json.Unmarshal(b, &rep.Stages)
	}
	if err != nil {
		return nil, fmt.Errorf("eval/stages.json: %w", err)
	}
	if b, err = os.ReadFile(r.Path("data", "prompts.json")); err == nil {
		err = json.Unmarshal(b, &rep.Prompts)
	}
	if err != nil {
		return nil, fmt.Errorf("data/prompts.json: %w", err)
	}
	if in := r.infos["rm"]; in != nil {
		rep.RM = in.Figures
	}
	if in := r.infos["dpo"]; in != nil {
		rep.DPO = in.Figures
	}
	if in := r.infos["rl"]; in != nil {
		rep.RL = in.Figures
	}
	if in := r.infos["gptq"]; in != nil {
		rep.GPTQ = in.Figures
	}
	return rep, nil
}

func runReport(r *Road, in *Info) error {
	rep, err := r.collect()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", " ")
	if err != nil {
		return err
	}
	if err := writeFile(r.Path("report.json"), append(b, '\n')); err != nil {
		return err
	}
	html, err := renderHTML(rep)
	if err != nil {
		return err
	}
	if err := writeFile(r.Path("report.html"), html); err != nil {
		return err
	}
	in.Outputs = append(in.Outputs, "report.html", "report.json")
	fmt.Fprintf(r.log, "   wrote %s and %s\n", r.Path("report.html"), r.Path("report.json"))
	return nil
}

// roadSVG draws the steps as boxes joined by arrows.
func roadSVG() template.HTML {
	const w, h, gap = 96, 44, 18
	var b strings.Builder
	width := len(Steps)*(w+gap) - gap + 4
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="the road">`, width, h+30)
	b.WriteString(`<defs><marker id="arr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#555"/></marker></defs>`)
	for i, s := range Steps {
		x := 2 + i*(w+gap)
		fmt.Fprintf(&b, `<rect x="%d" y="2" width="%d" height="%d" rx="8" fill="#e8f0fe" stroke="#3367d6"/>`, x, w, h)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" font-size="14" font-weight="bold">%d. %s</text>`, x+w/2, 2+h/2+5, i+1, template.HTMLEscapeString(s.Name))
		if i > 0 {
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555" stroke-width="2" marker-end="url(#arr)"/>`, x-gap, 2+h/2, x-2, 2+h/2)
		}
	}
	fmt.Fprintf(&b, `<text x="2" y="%d" font-size="12" fill="#555">raw text → tokens → pretrained → instruction-tuned → reward model → aligned (DPO, then GRPO) → quantized (k-quant, GPTQ) → measured</text></svg>`, h+24)
	return template.HTML(b.String())
}

// curveSVG plots a step's training loss (blue) and validation loss
// (orange dots) against the step; an RL step's mean reward per rollout
// batch in their place.
func curveSVG(in *Info) template.HTML {
	if len(in.Loss) == 0 {
		return ""
	}
	what := "train (line), validation (dots)"
	if len(in.Reward) == len(in.Loss) {
		in = &Info{Step: in.Step, Loss: in.Reward, ValLoss: make([]*float64, len(in.Reward))}
		what = "mean reward of the rollout batch"
	}
	const w, h, pad = 360, 160, 34
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, l := range in.Loss {
		lo, hi = math.Min(lo, l), math.Max(hi, l)
		if v := in.ValLoss[i]; v != nil {
			lo, hi = math.Min(lo, *v), math.Max(hi, *v)
		}
	}
	if hi-lo < 1e-9 {
		hi = lo + 1
	}
	n := max(1, len(in.Loss)-1)
	px := func(i int) float64 { return pad + float64(i)*(w-pad-8)/float64(n) }
	py := func(v float64) float64 { return 8 + (hi-v)*(h-pad-8)/(hi-lo) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="%s loss">`, w, h, in.Step)
	fmt.Fprintf(&b, `<rect x="%d" y="8" width="%d" height="%d" fill="#fafafa" stroke="#ccc"/>`, pad, w-pad-8, h-pad-8)
	b.WriteString(`<polyline fill="none" stroke="#3367d6" stroke-width="1.5" points="`)
	for i, l := range in.Loss {
		fmt.Fprintf(&b, "%.1f,%.1f ", px(i), py(l))
	}
	b.WriteString(`"/>`)
	for i, v := range in.ValLoss {
		if v != nil {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="#e8710a"/>`, px(i), py(*v))
		}
	}
	fmt.Fprintf(&b, `<text x="2" y="14" font-size="10">%.3g</text><text x="2" y="%d" font-size="10">%.3g</text>`, hi, h-pad, lo)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11">step 1 … %d · %s</text></svg>`, pad, h-12, len(in.Loss), what)
	return template.HTML(b.String())
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"curve": curveSVG, "pct": func(p *float64) string {
		if p == nil {
			return "—"
		}
		return fmt.Sprintf("%.0f%%", 100**p)
	},
	"f": func(x float64) string { return fmt.Sprintf("%.3f", x) },
	"opt": func(p, e *float64, digits int) string {
		if p == nil {
			return "—"
		}
		if e == nil {
			return fmt.Sprintf("%.*f", digits, *p)
		}
		return fmt.Sprintf("%.*f ± %.*f", digits, *p, digits, *e)
	},
	"answer": func(st Stage, i int) string {
		if i < len(st.Answers) {
			return st.Answers[i]
		}
		return ""
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>herd quickstart report</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}.num{text-align:right;font-variant-numeric:tabular-nums}
.curves{display:flex;flex-wrap:wrap;gap:16px}.curves figure{margin:0}figcaption{font-size:13px;font-weight:bold}
.ans{max-width:260px;white-space:pre-wrap;font-size:12px}
</style></head><body>
<h1>herd quickstart: the whole road in one run</h1>
<p>The road took {{printf "%.0f" .Seconds}} s (--minutes {{.Minutes}}), result: <code>{{.Model}}</code> ({{.Quant}}). Written {{.Written}}.</p>
<h2>The road</h2>
{{.Road}}
<h2>Evaluation across stages</h2>
<table id="eval"><tr><th>stage</th><th>model</th><th>perplexity (held-out stories)</th><th>KLD vs the float rl model</th><th>same top token</th><th>story_cloze acc</th><th>story_cloze acc_norm</th><th>mean reward of its answers</th><th>empty answers</th><th>win rate vs previous stage</th></tr>
{{range .Stages}}<tr><td>{{.Name}}</td><td><code>{{.Model}}</code></td><td class="num">{{f .Perplexity}} ± {{f .PerplexityErr}}</td><td class="num">{{opt .KLD .KLDErr 4}}</td><td class="num">{{pct .SameTop}}</td><td class="num">{{f .Acc}} ± {{f .AccErr}}</td><td class="num">{{f .AccNorm}} ± {{f .AccNormErr}}</td><td class="num">{{f .Reward}}</td><td class="num">{{.Empty}} of {{len .Answers}}</td><td class="num">{{pct .WinRate}}</td></tr>
{{end}}</table>
<p>Reward model on held-out pairs: accuracy {{index .RM "val_accuracy_start" | f}} before training → {{index .RM "val_accuracy" | f}} after (margin {{index .RM "val_margin" | f}}).
DPO on held-out pairs: rewards accuracy {{index .DPO "val_rewards_accuracy_start" | f}} → {{index .DPO "val_rewards_accuracy" | f}} (margin {{index .DPO "val_rewards_margin" | f}}).
GRPO on 16 held-out prompts: mean reward {{index .RL "val_reward_start" | f}} → {{index .RL "val_reward" | f}}, KL to the DPO model {{index .RL "val_kl" | f}} nats per answer.
GPTQ: {{index .GPTQ "gptq_matrices"}} layer matrices from {{index .GPTQ "windows"}} calibration windows; rtn-q4_0 is the same grid rounded to nearest.</p>
<p>Rewards are the reward model's scores of each stage's greedy answers to {{len .Prompts}} prompts; the win rate counts the prompts where a stage's answer scores above the previous stage's (ties half). An empty answer is scored as it is (the prompt and the end of the turn); the preference pairs include answers stopped after a few words and bare full stops as rejected, so the reward model does not prefer them.
story_cloze is a multiple-choice task made from the held-out stories (road/data/story_cloze.jsonl): after a story's first two sentences, its own third sentence among three other stories' (HellaSwag's layout and scoring, zero-shot, herd eval's task machinery); chance is 0.25.
KLD and the same-top share are llama-perplexity --kl-divergence's, on the held-out stories.</p>
<h2>Loss curves</h2>
<div class="curves">{{range .Steps}}{{if .Loss}}<figure><figcaption>{{.Step}} ({{len .Loss}} steps)</figcaption>{{curve .}}</figure>{{end}}{{end}}</div>
<h2>Sample answers</h2>
<table id="answers"><tr><th>prompt</th>{{range .Stages}}<th>{{.Name}}</th>{{end}}</tr>
{{range $i, $p := .Show}}<tr><td class="ans">{{$p}}</td>{{range $.Stages}}<td class="ans">{{answer . $i}}</td>{{end}}</tr>
{{end}}</table>
<h2>Steps</h2>
<table id="steps"><tr><th>step</th><th>seconds</th><th>figures</th></tr>
{{range .Steps}}<tr><td>{{.Step}}</td><td class="num">{{printf "%.1f" .Seconds}}</td><td>{{range $k, $v := .Figures}}{{$k}} = {{printf "%.4g" $v}}; {{end}}</td></tr>
{{end}}</table>
</body></html>
`))

// renderHTML is the one-page report: no external assets, the diagram and
// the curves inline SVG.
func renderHTML(rep *Report) ([]byte, error) {
	show := rep.Prompts[:min(len(rep.Prompts), len(ShowPrompts))]
	var b bytes.Buffer
	err := page.Execute(&b, struct {
		*Report
		Road template.HTML
		Show []string
	}{rep, roadSVG(), show})
	return b.Bytes(), err
}
