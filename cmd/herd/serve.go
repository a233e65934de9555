package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/llama"
	"github.com/herd-llm/herd/serve"
	"github.com/spf13/cobra"
)

func serveCmd() *cobra.Command {
	var addr, apiKey, template, tok, logFormat, kvType string
	var noMmap bool
	var parallel, ctx, threads, maxConns, defMax int
	var maxBody, kvBudgetMiB int64
	var bodyTimeout, writeTimeout, idleTimeout time.Duration
	var loras []string
	cmd := &cobra.Command{
		Use:   "serve [MODEL[=NAME]]...",
		Short: "serve models over an OpenAI-compatible HTTP API with continuous batching, and a web chat at /",
		Long: `Serves each MODEL (a GGUF file or a llama2.c checkpoint; none: the embedded
stories260K) under NAME (default: the file name without its extension) at

  POST /v1/chat/completions, /v1/completions, /v1/embeddings; GET /v1/models
  GET /health, GET /metrics (Prometheus), GET / (a web chat)

Requests to a model share forward passes: up to --parallel sequences are
decoded together, more wait in a queue. The server listens on 127.0.0.1
unless --addr says otherwise; with --api-key (or HERD_API_KEY) every /v1
route needs "Authorization: Bearer KEY". The chat template is --template,
else the GGUF file's tokenizer.chat_template, else "raw" (messages joined).
Templates: ` + strings.Join(chat.Names(), ", ") + `.

Each model's sequences share a KV cache budget (--kv-budget): a request
reserves what its prompt and max_tokens can fill and waits in the queue while
the budget is taken; the context of a sequence is at most what the budget
holds. A request without max_tokens may write --default-max-tokens. Slow
clients are cut off by --body-timeout, --write-timeout and --idle-timeout;
beyond --max-conns open connections a client gets a 503.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			kernels.SetThreads(threads)
			if apiKey == "" {
				apiKey = os.Getenv("HERD_API_KEY")
			}
			if len(args) == 0 {
				args = []string{""}
			}
			var models []*serve.Model
			defer func() {
				for _, m := range models {
					m.Sched.Close()
					m.Model.Close()
				}
			}()
			var h slog.Handler = slog.NewTextHandler(cmd.ErrOrStderr(), nil)
			if logFormat == "json" {
				h = slog.NewJSONHandler(cmd.ErrOrStderr(), nil)
			}
			log := slog.New(h)
			for _, a := range args {
				m, err := loadServed(a, tok, template, loras, generate.SchedulerConfig{Parallel: parallel, Context: ctx,
					KVBudget: kvBudgetMiB << 20, Log: log},
					func(m *llama.Model) error { m.NoMmap = noMmap; return applyKVType(kvType, m) })
				if err != nil {
					return err
				}
				models = append(models, m)
			}
			srv, err := serve.New(serve.Config{APIKey: apiKey, MaxBodyBytes: maxBody, Log: log, BodyTimeout: bodyTimeout,
				WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxConns: maxConns, DefaultMaxTokens: defMax}, models...)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			names := make([]string, len(models))
			for i, m := range models {
				names[i] = fmt.Sprintf("%s (%s, %d parallel, context %d)", m.Name, m.Template.Name, m.Sched.Config().Parallel, m.Sched.Config().Context)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "herd serve: listening on http://%s; models: %s\n", ln.Addr(), strings.Join(names, ", "))
			stop, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			return srv.Serve(stop, ln)
		},
	}
	f := cmd.Flags()
	addLoRAFlag(f, &loras)
	f.StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on (port 0: any free port)")
	f.StringVar(&apiKey, "api-key", "", "require this bearer token on /v1 routes (default $HERD_API_KEY)")
	f.IntVar(&parallel, "parallel", 8, "sequences of one model decoded together")
	f.IntVarP(&ctx, "ctx", "c", 0, "context (KV cache positions) per sequence; 0: the model's context length")
	f.StringVar(&template, "template", "", "chat template for every model: a name or a tokenizer_config.json (default: the model's own, else raw)")
	f.StringVar(&tok, "tokenizer", "", "tokenizer for llama2.c checkpoints (GGUF files carry their own)")
	f.IntVarP(&threads, "threads", "t", 0, "threads (0: all cores)")
	f.Int64Var(&maxBody, "max-body", 8<<20, "largest request body accepted, in bytes")
	f.StringVar(&logFormat, "log", "text", "request log format on stderr: text or json")
	f.Int64Var(&kvBudgetMiB, "kv-budget", generate.DefaultKVBudget>>20, "KV cache memory the sequences of one model may hold together, in MiB")
	f.DurationVar(&bodyTimeout, "body-timeout", serve.DefaultBodyTimeout, "time a client has to send a request body")
	f.DurationVar(&writeTimeout, "write-timeout", serve.DefaultWriteTimeout, "time one write of a response may take (each streamed event has its own)")
	f.DurationVar(&idleTimeout, "idle-timeout", serve.DefaultIdleTimeout, "time a kept-alive connection may wait for its next request")
	f.IntVar(&maxConns, "max-conns", serve.DefaultMaxConns, "connections open at once; more get a 503")
	f.IntVar(&defMax, "default-max-tokens", serve.DefaultMaxTokens, "token budget of a request without max_tokens (-1: the rest of the context)")
	addKVFlag(f, &kvType)
	addNoMmapFlag(f, &noMmap)
	return cmd
}

// loadServed loads one MODEL[=NAME] argument; each of prepare runs on the
// model before its scheduler starts (the KV cache type, which the budget
// depends on).
func loadServed(arg, tokPath, template string, loras []string, cfg generate.SchedulerConfig, prepare ...func(*llama.Model) error) (*serve.Model, error) {
	path, name := arg, ""
	if i := strings.LastIndex(arg, "="); i >= 0 {
		path, name = arg[:i], arg[i+1:]
		if name == "" {
			return nil, fmt.Errorf("%q: the name after = is empty", arg)
		}
	}
	if name == "" {
		name = "stories260K"
		if path != "" {
			name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
		}
	}
	if kind, _ := llama.Format(path); kind == "gguf" {
		tokPath = "" // a GGUF file carries its own tokenizer
	}
	m, tok, err := checkpoint.Load(path, tokPath)
	if err != nil {
		return nil, err
	}
	for _, p := range prepare {
		if err := p(m); err != nil {
			m.Close()
			return nil, err
		}
	}
	if err := applyLoRAs(m, loras); err != nil {
		m.Close()
		return nil, err
	}
	packWeights(m)
	tp, err := chat.ForModel(path, template)
	if err != nil {
		m.Close()
		return nil, err
	}
	if cfg.Context <= 0 {
		cfg.Context = m.Config.ContextLen
	}
	return &serve.Model{Name: name, Model: m, Tok: tok, Template: tp, Sched: generate.NewScheduler(m, tok, cfg)}, nil
}
