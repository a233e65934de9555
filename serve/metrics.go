package serve

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// histogram is a Prometheus histogram: cumulative bucket counts, sum, count.
type histogram struct {
	bounds []float64
	counts []int64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	n      int64
}

func newHistogram(bounds ...float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]int64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v) // first bound ≥ v
	h.counts[i]++
	h.sum += v
	h.n++
}

// metrics counts what /metrics reports.
type metrics struct {
	mu        sync.Mutex
	requests  map[[3]string]int64 // endpoint, model, status
	prompt    map[string]int64
	generated map[string]int64
	ttft      map[string]*histogram
	rate      map[string]*histogram
	refusedN  int64 // connections refused beyond the cap
}

// refused counts a connection answered 503 because too many were open.
func (m *metrics) refused() {
	m.mu.Lock()
	m.refusedN++
	m.mu.Unlock()
}

func newMetrics() *metrics {
	return &metrics{requests: map[[3]string]int64{}, prompt: map[string]int64{}, generated: map[string]int64{},
		ttft: map[string]*histogram{}, rate: map[string]*histogram{}}
}

func (m *metrics) request(endpoint, model string, status int) {
	m.mu.Lock()
	m.requests[[3]string{endpoint, model, fmt.Sprint(status)}]++
	m.mu.Unlock()
}

// generation records a finished generation: tokens in and out, the time to
// its first token and its generation speed.
func (m *metrics) generation(model string, prompt, gen int, ttft, total time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prompt[model] += int64(prompt)
	m.generated[model] += int64(gen)
	if gen == 0 {
		return
	}
	if m.ttft[model] == nil {
		m.ttft[model] = newHistogram(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
		m.rate[model] = newHistogram(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
	}
	m.ttft[model].observe(ttft.Seconds())
	if d := total - ttft; gen > 1 && d > 0 {
		m.rate[model].observe(float64(gen-1) / d.Seconds())
	}
}

func label(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request, _ *reqLog) {
	m := s.metrics
	var b strings.Builder
	head := func(name, kind, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, kind)
	}
	m.mu.Lock()
	head("herd_requests_total", "counter", "HTTP requests answered, by endpoint, model and status code.")
	keys := make([][3]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return strings.Join(keys[i][:], "\x00") < strings.Join(keys[j][:], "\x00") })
	for _, k := range keys {
		fmt.Fprintf(&b, "herd_requests_total{endpoint=\"%s\",model=\"%s\",status=\"%s\"} %d\n", label(k[0]), label(k[1]), k[2], m.requests[k])
	}
	head("herd_prompt_tokens_total", "counter", "Prompt (input) tokens processed.")
	for _, n := range s.names {
		fmt.Fprintf(&b, "herd_prompt_tokens_total{model=\"%s\"} %d\n", label(n), m.prompt[n])
	}
	head("herd_generated_tokens_total", "counter", "Tokens generated (output).")
	for _, n := range s.names {
		fmt.Fprintf(&b, "herd_generated_tokens_total{model=\"%s\"} %d\n", label(n), m.generated[n])
	}
	hist := func(name, help string, hs map[string]*histogram) {
		head(name, "histogram", help)
		for _, n := range s.names {
			h := hs[n]
			if h == nil {
				continue
			}
			var cum int64
			for i, bound := range h.bounds {
				cum += h.counts[i]
				fmt.Fprintf(&b, "%s_bucket{model=\"%s\",le=\"%g\"} %d\n", name, label(n), bound, cum)
			}
			fmt.Fprintf(&b, "%s_bucket{model=\"%s\",le=\"+Inf\"} %d\n", name, label(n), h.n)
			fmt.Fprintf(&b, "%s_sum{model=\"%s\"} %g\n%s_count{model=\"%s\"} %d\n", name, label(n), h.sum, name, label(n), h.n)
		}
	}
	head("herd_connections_refused_total", "counter", "Connections answered 503 and closed because the connection cap was reached.")
	fmt.Fprintf(&b, "herd_connections_refused_total %d\n", m.refusedN)
	hist("herd_time_to_first_token_seconds", "Time from a request's arrival to its first generated token.", m.ttft)
	hist("herd_generation_tokens_per_second", "Generation speed of each request after its first token.", m.rate)
	m.mu.Unlock()
	head("herd_queue_depth", "gauge", "Requests waiting for a slot.")
	var act strings.Builder
	for _, n := range s.names {
		q, a := s.models[n].Sched.Load()
		fmt.Fprintf(&b, "herd_queue_depth{model=\"%s\"} %d\n", label(n), q)
		fmt.Fprintf(&act, "herd_active_sequences{model=\"%s\"} %d\n", label(n), a)
	}
	head("herd_active_sequences", "gauge", "Sequences being generated together.")
	b.WriteString(act.String())
	head("herd_kv_cache_reserved_bytes", "gauge", "KV cache bytes reserved by the sequences in flight.")
	var budget strings.Builder
	for _, n := range s.names {
		held, max := s.models[n].Sched.Reserved()
		fmt.Fprintf(&b, "herd_kv_cache_reserved_bytes{model=\"%s\"} %d\n", label(n), held)
		fmt.Fprintf(&budget, "herd_kv_cache_budget_bytes{model=\"%s\"} %d\n", label(n), max)
	}
	head("herd_kv_cache_budget_bytes", "gauge", "KV cache bytes the sequences of a model may reserve together.")
	b.WriteString(budget.String())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write([]byte(b.String()))
}
