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
	var template, system, onFull string
	cmd := &cobra.Command{
		Use:   "chat [MODEL]",
		Short: "talk with a model through its chat template, streaming its replies",
		Long: `An interactive loop: each line you type becomes a user message; the
conversation is rendered with the chat template and the model's reply streams
until a stop token or stop string of the template, or -n tokens. The KV cache
keeps the conversation, so each turn only processes its new tokens. Ctrl-D ends.

When the conversation outgrows the context, --context-full says what happens:
roll (the default) drops the oldest turns and keeps the system prompt, reset
starts over with the system prompt and the new message, stop ends the chat.

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
			full, err := parseContextFull(onFull)
			if err != nil {
				return err
			}
			smp, err := g.samplerConfig(cmd)
			if err != nil {
				return err
			}
			g.sampler = smp
			tp, err := chat.ForModel(path, template)
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
			m.NoMmap = g.noMmap
			packWeights(m)
			c := &chatter{gen: &generate.Generator{Model: m, Tok: tok}, tp: tp, g: g, full: full}
			return c.loop(system, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	g.add(cmd, 0.8)
	cmd.Flags().StringVar(&template, "template", "", "chat template: a name or a tokenizer_config.json (default: the model's own, else raw)")
	cmd.Flags().StringVar(&system, "system", "", "system prompt (default: the template's)")
	cmd.Flags().StringVar(&onFull, "context-full", "roll", "when the conversation outgrows the context: roll (drop the oldest turns, keep the system prompt), reset, or stop")
	return cmd
}

// contextFull is what herd chat does when the conversation outgrows the
// context.
type contextFull int

const (
	fullRoll  contextFull = iota // drop the oldest turns, keep the system prompt
	fullReset                    // start over with the system prompt and the new message
	fullStop                     // end the chat
)

func parseContextFull(s string) (contextFull, error) {
	switch s {
	case "roll":
		return fullRoll, nil
	case "reset":
		return fullReset, nil
	case "stop":
		return fullStop, nil
	}
	return 0, fmt.Errorf("--context-full %q: want roll, reset or stop", s)
}

// chatter is one herd chat session.
type chatter struct {
	gen  *generate.Generator
	tp   *chat.Template
	g    genFlags
	full contextFull
	out  *bufio.Writer
}

func (c *chatter) loop(system string, in io.Reader, w io.Writer) error {
	sess := c.gen.NewSession(c.g.ctx)
	smp := generate.NewSampler(c.g.sampler)
	stop := generate.Stop{IDs: c.tp.StopIDs(c.gen.Tok), Strings: c.tp.Stop}
	var msgs []chat.Message
	if system != "" {
		msgs = append(msgs, chat.Message{Role: chat.System, Content: system})
	}
	c.out = bufio.NewWriter(w)
	out := c.out
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
		msgs = append(msgs, chat.Message{Role: chat.User, Content: line})
		ids, kept, err := c.fit(msgs, sess.Cap())
		if err != nil || ids == nil {
			return err
		}
		msgs = kept
		if err := sess.SetTokens(ids); err != nil {
			return err
		}
		reply, _, st, err := sess.Reply(c.g.n, smp, stop, func(s string) error {
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
		if st.ContextFull && c.full == fullStop {
			return c.say("[the context is full; start a new chat]")
		}
	}
}

// fit renders msgs and, when they leave the reply no room in a context of
// cap positions, applies the --context-full policy. It returns the tokens
// and the messages kept, or nil tokens when the chat is to end.
func (c *chatter) fit(msgs []chat.Message, cap int) ([]int, []chat.Message, error) {
	room := max(1, min(c.g.n, cap/4)) // what a reply should have at least
	render := func(ms []chat.Message) ([]int, error) {
		r, err := c.tp.Render(ms, true)
		if err != nil {
			return nil, err
		}
		return r.Encode(c.gen.Tok).IDs, nil
	}
	ids, err := render(msgs)
	if err != nil || len(ids)+room <= cap {
		return ids, msgs, err
	}
	sys := 0
	if msgs[0].Role == chat.System {
		sys = 1
	}
	switch c.full {
	case fullStop:
		if len(ids) < cap {
			return ids, msgs, nil // as before: the reply may be cut short
		}
		return nil, nil, c.say("[the context is full; start a new chat]")
	case fullReset:
		msgs = append(msgs[:sys:sys], msgs[len(msgs)-1])
		if err := c.say("[the context is full: the conversation starts over]"); err != nil {
			return nil, nil, err
		}
	case fullRoll:
		dropped := 0
		for len(msgs) > sys+1 && len(ids)+room > cap {
			// a user message and the reply to it go together, so the
			// roles still alternate as templates demand
			n := 1
			if msgs[sys+1].Role == chat.Assistant && len(msgs) > sys+2 {
				n = 2
			}
			msgs = append(msgs[:sys:sys], msgs[sys+n:]...)
			dropped += n
			if ids, err = render(msgs); err != nil {
				return nil, nil, err
			}
		}
		if err := c.say(fmt.Sprintf("[the context is full: %d of the oldest messages dropped]", dropped)); err != nil {
			return nil, nil, err
		}
	}
	if ids, err = render(msgs); err != nil {
		return nil, nil, err
	}
	if len(ids) >= cap {
		return nil, nil, fmt.Errorf("the message alone needs %d positions; the context holds %d (raise it with -c)", len(ids), cap)
	}
	return ids, msgs, nil
}

func (c *chatter) say(s string) error {
	fmt.Fprintln(c.out, s)
	return c.out.Flush()
}
