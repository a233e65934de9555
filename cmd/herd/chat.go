package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/kernels"
	"github.com/spf13/cobra"
)

func chatCmd() *cobra.Command {
	var g genFlags
	cmd := &cobra.Command{
		Use:   "chat [MODEL]",
		Short: "talk with a model in a plain-text loop (the conversation stays in the KV cache)",
		Long: `An interactive loop: each line you type is appended to the conversation and
the model continues it until it ends its turn (EOS) or writes -n tokens.
Plain text for now; chat templates come with the serving work. Ctrl-D ends.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kernels.SetThreads(g.threads)
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			m, tok, err := checkpoint.Load(path, g.tokenizer)
			if err != nil {
				return err
			}
			defer m.Close()
			return chatLoop(&generate.Generator{Model: m, Tok: tok}, g, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	g.add(cmd, 0.8)
	return cmd
}

func chatLoop(gen *generate.Generator, g genFlags, in io.Reader, w io.Writer) error {
	sess := gen.NewSession(g.ctx)
	smp := generate.NewSampler(g.sampler)
	out := bufio.NewWriter(w)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for {
		fmt.Fprint(out, "> ")
		out.Flush()
		if !sc.Scan() {
			fmt.Fprintln(out)
			out.Flush()
			return sc.Err()
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if _, _, err := sess.Append(line, true); err != nil {
			return err
		}
		st, err := sess.Continue(g.n, smp, func(p []byte) error {
			_, err := out.Write(p)
			if err == nil {
				err = out.Flush()
			}
			return err
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(out)
		if st.ContextFull {
			fmt.Fprintln(out, "[the context is full; start a new chat]")
			out.Flush()
			return nil
		}
	}
}
