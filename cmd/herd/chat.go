package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/herd-llm/herd/chat"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/generate"
	"github.com/herd-llm/herd/kernels"
	"github.com/spf13/cobra"
)

func chatCmd() *cobra.Command {
	var g genFlags
	var template, system string
	cmd := &cobra.Command{
		Use:   "chat [MODEL]",
		Short: "talk with a model through its chat template, streaming its replies",
		Long: `An interactive loop: each line you type becomes a user message; the
conversation is rendered with the chat template and the model's reply streams
until a stop token or stop string of the template, or -n tokens. The KV cache
keeps the conversation, so each turn only processes its new tokens. Ctrl-D ends.

The template is --template, else the GGUF file's tokenizer.chat_template, else
raw (messages joined as plain text, for models that were not tuned to chat).
Templates: ` + strings.Join(chat.Names(), ", ") + `.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kernels.SetThreads(g.threads)
			path := ""
			if len(args) == 1 {
				path = args[0]
			}
			tp, err := templateFor(path, template)
			if err != nil {
				return err
			}
			m, tok, err := checkpoint.Load(path, g.tokenizer)
			if err != nil {
				return err
			}
			defer m.Close()
			if err := applyKVType(g.kvType, m); err != nil {
				return err
			}
			if err := applyLoRAs(m, g.loras); err != nil {
				return err
			}
			return chatLoop(&generate.Generator{Model: m, Tok: tok}, tp, system, g, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	g.add(cmd, 0.8)
	cmd.Flags().StringVar(&template, "template", "", "chat template: a name or a tokenizer_config.json (default: the model's own, else raw)")
	cmd.Flags().StringVar(&system, "system", "", "system prompt (default: the template's)")
	return cmd
}

func chatLoop(gen *generate.Generator, tp *chat.Template, system string, g genFlags, in io.Reader, w io.Writer) error {
	sess := gen.NewSession(g.ctx)
	smp := generate.NewSampler(g.sampler)
	stop := generate.Stop{IDs: tp.StopIDs(gen.Tok), Strings: tp.Stop}
	var msgs []chat.Message
	if system != "" {
		msgs = append(msgs, chat.Message{Role: chat.System, Content: system})
	}
	out := bufio.NewWriter(w)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	full := func() error {
		fmt.Fprintln(out, "[the context is full; start a new chat]")
		return out.Flush()
	}
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
		msgs = append(msgs, chat.Message{Role: chat.User, Content: line})
		r, err := tp.Render(msgs, true)
		if err != nil {
			return err
		}
		ids := r.Encode(gen.Tok).IDs
		if len(ids) >= sess.Cap() {
			return full()
		}
		if err := sess.SetTokens(ids); err != nil {
			return err
		}
		reply, _, st, err := sess.Reply(g.n, smp, stop, func(s string) error {
			_, err := out.WriteString(s)
			if err == nil {
				err = out.Flush()
			}
			return err
		})
		if err != nil {
			return err
		}
		fmt.Fprintln(out)
		msgs = append(msgs, chat.Message{Role: chat.Assistant, Content: reply})
		if st.ContextFull {
			return full()
		}
	}
}
