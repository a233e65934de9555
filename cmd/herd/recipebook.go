package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/internal/fileio"
	"github.com/herd-llm/herd/recipes"
	"github.com/herd-llm/herd/road"
	"github.com/herd-llm/herd/serve"
	"github.com/spf13/cobra"
)

func recipeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recipe list | show NAME | run NAME [FLAG=VALUE | STEP.FLAG=VALUE ...]",
		Short: "the recipe book: each LLaMA-road project (Alpaca, Vicuna, QLoRA, StackLLaMA, DPO, llama.cpp …) as herd commands",
		Long: `Every recipe says what the original project did (data, method,
hyperparameters, hardware, source) and what its scaled-down default does
here, as herd commands on the data herd quickstart ships (written to
OUT/data) or on your own: STEP.FLAG=VALUE overrides one step's flag
(sft.data=alpaca_data.json), FLAG=VALUE every step that sets FLAG.
--short runs the few-step variant the test suite runs; after the run the
recipe's claims (the loss falls, the margin rises …) are checked against
the metrics the steps wrote.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "the recipes, one line each", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			all, err := recipes.All()
			if err != nil {
				return err
			}
			w := 0
			for _, r := range all {
				w = max(w, len(r.Name))
			}
			for _, r := range all {
				fmt.Fprintf(cmd.OutOrStdout(), "%-*s  %-12s %s\n", w, r.Name, r.Stage, r.Summary)
			}
			return nil
		},
	}, &cobra.Command{
		Use: "show NAME", Short: "a recipe and the commands it runs", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := recipes.Get(args[0])
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), recipes.Show(r))
			return nil
		},
	}, recipeRunCmd())
	return cmd
}

func recipeRunCmd() *cobra.Command {
	var out, endpoint, teacher string
	var short bool
	cmd := &cobra.Command{
		Use:   "run NAME [FLAG=VALUE | STEP.FLAG=VALUE ...] [-o DIR] [--short] [--endpoint URL --teacher NAME]",
		Short: "run a recipe's commands and check its claims",
		Long: `Runs a recipe's commands under DIR (default recipe-NAME) on the shipped
data, written to DIR/data first, and checks its claims. A recipe with a
teacher (the synth recipes: wizardlm, gpt4all, koala, baize) asks it at
{endpoint}: with --endpoint URL and --teacher NAME any OpenAI-compatible
server (herd serve, llama-server, vLLM, a hosted API, with
$OPENAI_API_KEY); without them, herd serves the recipe's own teacher model
in-process on a free local port for the steps that need it.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := recipes.Get(args[0])
			if err != nil {
				return err
			}
			if out == "" {
				out = "recipe-" + r.Name
			}
			if (endpoint == "") != (teacher == "") {
				return fmt.Errorf("give --endpoint and --teacher together")
			}
			env := recipes.Env{Endpoint: endpoint, Teacher: teacher}
			var local *localTeacher
			if r.Teacher != nil && endpoint == "" {
				if local, err = listenTeacher(); err != nil {
					return err
				}
				defer local.close()
				env = recipes.Env{Endpoint: local.url, Teacher: r.Teacher.Name}
			}
			plan, err := recipes.PlanEnv(r, out, short, args[1:], env)
			if err != nil {
				return err
			}
			errw := cmd.ErrOrStderr()
			data := filepath.Join(out, "data")
			if _, err := road.WriteData(data, "", nil, errw); err != nil {
				return err
			}
			if err := recipes.WriteData(data); err != nil {
				return err
			}
			for i, in := range plan {
				if local != nil && !local.started && in.UsesTeacher(env) {
					model := recipes.Subst(r.Teacher.Model, out, env)
					fmt.Fprintf(errw, "\n== recipe %s: serving the teacher %s as %q at %s\n", r.Name, model, r.Teacher.Name, local.url)
					if err := local.start(cmd.Context(), model, r.Teacher.Name, r.Teacher.Template); err != nil {
						return fmt.Errorf("recipe %s: the teacher: %w", r.Name, err)
					}
				}
				fmt.Fprintf(errw, "\n== recipe %s %d/%d: %s\n", r.Name, i+1, len(plan), in)
				if err := os.MkdirAll(in.Dir, 0o755); err != nil {
					return err
				}
				root := newRoot()
				root.SetArgs(in.Args)
				var stdout bytes.Buffer
				if r.Steps[i].Stdout {
					root.SetOut(io.MultiWriter(cmd.OutOrStdout(), &stdout))
				} else {
					root.SetOut(cmd.OutOrStdout())
				}
				root.SetErr(errw)
				if err := root.ExecuteContext(cmd.Context()); err != nil {
					return fmt.Errorf("recipe %s step %s: %w (the earlier steps' outputs are in %s)", r.Name, in.ID, err, out)
				}
				if r.Steps[i].Stdout {
					if err := fileio.WriteAtomic(filepath.Join(in.Dir, "stdout"), func(w io.Writer) error { _, err := w.Write(stdout.Bytes()); return err }); err != nil {
						return err
					}
				}
			}
			held, err := recipes.Check(r, out, short)
			for _, h := range held {
				fmt.Fprintf(errw, "claim held: %s\n", h)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "output directory (default recipe-NAME)")
	cmd.Flags().BoolVar(&short, "short", false, "the few-step variant the test suite runs")
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "the teacher's OpenAI-compatible endpoint (default: the recipe's teacher served in-process)")
	cmd.Flags().StringVar(&teacher, "teacher", "", "the teacher's model name at --endpoint")
	return cmd
}

// localTeacher is a recipe's teacher served in-process: the listener is
// opened before the plan (its URL goes into the command lines), the model
// loaded when the first step that asks it comes (an earlier step may
// write it).
type localTeacher struct {
	ln      net.Listener
	url     string
	started bool
	stop    context.CancelFunc
	done    chan error
	model   *serve.Model
}

func listenTeacher() (*localTeacher, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return &localTeacher{ln: ln, url: "http://" + ln.Addr().String()}, nil
}

func (t *localTeacher) start(ctx context.Context, model, name, template string) error {
	m, err := loadServed(model+"="+name, "", template, nil, generate.SchedulerConfig{Parallel: 4})
	if err != nil {
		return err
	}
	srv, err := serve.New(serve.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, m)
	if err != nil {
		m.Sched.Close()
		m.Model.Close()
		return err
	}
	ctx, t.stop = context.WithCancel(ctx)
	t.done, t.model, t.started = make(chan error, 1), m, true
	go func() { t.done <- srv.Serve(ctx, t.ln) }()
	return nil
}

func (t *localTeacher) close() {
	if !t.started {
		t.ln.Close()
		return
	}
	t.stop()
	<-t.done
	t.model.Sched.Close()
	t.model.Model.Close()
}
