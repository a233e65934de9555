package chat

import (
	"fmt"
	"strings"
)

// builder collects the parts of a rendering.
type builder struct{ parts []Part }

func (b *builder) text(s string, msg int) {
	if s != "" {
		b.parts = append(b.parts, Part{Text: s, Kind: Text, Msg: msg})
	}
}

func (b *builder) special(s string, tok Token, msg int, learn bool) {
	b.parts = append(b.parts, Part{Text: s, Kind: Special, Token: tok, Msg: msg, Learn: learn})
}

// content adds an assistant's text; learned.
func (b *builder) content(s string, msg int) {
	b.parts = append(b.parts, Part{Text: s, Kind: Content, Msg: msg, Learn: true})
}

// eot adds end-of-turn text after an assistant's message; learned.
func (b *builder) eot(s string, msg int) {
	b.parts = append(b.parts, Part{Text: s, Kind: Text, Msg: msg, Learn: true})
}

// colonTwo is FastChat's ADD_COLON_TWO style (Vicuna v1.1, Alpaca): the
// system prompt and sep, then "ROLE: message" followed by sep after a user
// message and sep2 (here the EOS token) after an assistant's; the
// generation prompt is "ROLE:" without a space.
func colonTwo(userRole, asstRole, sep string) func(t *Template, msgs []Message, gen bool) ([]Part, error) {
	return func(t *Template, msgs []Message, gen bool) ([]Part, error) {
		var b builder
		sys, rest, off := t.system(msgs)
		b.text(sys+sep, -1)
		for i, m := range rest {
			i += off
			if m.Role == User {
				b.text(userRole+": "+m.Content+sep, i)
				continue
			}
			b.text(asstRole+": ", i)
			b.content(m.Content, i)
			b.special("</s>", EOS, i, true)
		}
		if gen {
			b.text(asstRole+":", -1)
		}
		return b.parts, nil
	}
}

// llama2 is Meta's Llama-2 chat format (llama/generation.py,
// chat_completion): the system prompt wrapped in <<SYS>> … <</SYS>> joins
// the first user message; every exchange is BOS "[INST] user [/INST] answer "
// EOS with messages stripped; the last user message is BOS
// "[INST] user [/INST]". FastChat's llama-2 template prints the same text.
func llama2(t *Template, msgs []Message, gen bool) ([]Part, error) {
	var b builder
	sys, rest, off := t.system(msgs)
	for i, m := range rest {
		if want := []string{User, Assistant}[i%2]; m.Role != want {
			return nil, fmt.Errorf("message %d is %s: Llama-2 needs user and assistant messages alternating, user first", i+off, m.Role)
		}
	}
	if gen && (len(rest) == 0 || rest[len(rest)-1].Role != User) {
		return nil, fmt.Errorf("Llama-2 generates after a user message; the conversation ends with %s", lastRole(msgs))
	}
	for i, m := range rest {
		k := i + off
		if m.Role == User {
			c := m.Content
			if i == 0 && sys != "" {
				c = "<<SYS>>\n" + sys + "\n<</SYS>>\n\n" + c
			}
			if i > 0 {
				b.special("<s>", BOS, -1, false)
			}
			b.text("[INST] "+strings.TrimSpace(c)+" [/INST]", k)
			continue
		}
		b.text(" ", k)
		b.content(strings.TrimSpace(m.Content), k)
		b.eot(" ", k)
		b.special("</s>", EOS, k, true)
	}
	return b.parts, nil
}

func lastRole(msgs []Message) string {
	if len(msgs) == 0 {
		return "no messages"
	}
	return "a " + msgs[len(msgs)-1].Role + " message"
}

// llama3 is Meta's Llama-3 format (llama3 tokenizer.py, ChatFormat): BOS
// <|begin_of_text|>, then per message <|start_header_id|>ROLE<|end_header_id|>
// "\n\n" + the stripped content + <|eot_id|>; the generation prompt is the
// assistant's header. FastChat's llama-3 template prints the same text.
func llama3(t *Template, msgs []Message, gen bool) ([]Part, error) {
	var b builder
	b.special("<|begin_of_text|>", BOS, -1, false)
	header := func(role string, msg int) {
		b.special("<|start_header_id|>", Named, msg, false)
		b.text(role, msg)
		b.special("<|end_header_id|>", Named, msg, false)
		b.text("\n\n", msg)
	}
	sys, rest, off := t.system(msgs)
	if sys != "" {
		header(System, 0)
		b.text(strings.TrimSpace(sys), 0)
		b.special("<|eot_id|>", Named, 0, false)
	}
	for i, m := range rest {
		i += off
		header(m.Role, i)
		if m.Role == User {
			b.text(strings.TrimSpace(m.Content), i)
			b.special("<|eot_id|>", Named, i, false)
			continue
		}
		b.content(strings.TrimSpace(m.Content), i)
		b.special("<|eot_id|>", Named, i, true)
	}
	if gen {
		header(Assistant, -1)
	}
	return b.parts, nil
}

// chatML is OpenAI's ChatML as FastChat's CHATML style and the Hugging Face
// chatml template print it: "<|im_start|>ROLE\ncontent<|im_end|>\n" per
// message (the system's only when there is one) and "<|im_start|>assistant\n"
// to generate.
func chatML(t *Template, msgs []Message, gen bool) ([]Part, error) {
	var b builder
	sys, rest, off := t.system(msgs)
	if sys != "" {
		b.special("<|im_start|>", Named, 0, false)
		b.text("system\n"+sys, 0)
		b.special("<|im_end|>", Named, 0, false)
		b.text("\n", 0)
	}
	for i, m := range rest {
		i += off
		b.special("<|im_start|>", Named, i, false)
		if m.Role == User {
			b.text("user\n"+m.Content, i)
			b.special("<|im_end|>", Named, i, false)
		} else {
			b.text("assistant\n", i)
			b.content(m.Content, i)
			b.special("<|im_end|>", Named, i, true)
		}
		b.text("\n", i)
	}
	if gen {
		b.special("<|im_start|>", Named, -1, false)
		b.text("assistant\n", -1)
	}
	return b.parts, nil
}

// noColonSingle is FastChat's NO_COLON_SINGLE style with an empty separator
// (Baichuan, Metharme, raw): the system prompt (after sysTag), then each
// message right after its role marker; the generation prompt is the
// assistant's marker.
func noColonSingle(sysTag, userTag, asstTag string) func(t *Template, msgs []Message, gen bool) ([]Part, error) {
	return func(t *Template, msgs []Message, gen bool) ([]Part, error) {
		var b builder
		tag := func(s string, msg int) {
			if s != "" {
				b.special(s, Named, msg, false)
			}
		}
		sys, rest, off := t.system(msgs)
		tag(sysTag, 0)
		b.text(sys, 0)
		for i, m := range rest {
			i += off
			if m.Role == User {
				tag(userTag, i)
				b.text(m.Content, i)
				continue
			}
			tag(asstTag, i)
			b.content(m.Content, i)
		}
		if gen {
			tag(asstTag, -1)
		}
		return b.parts, nil
	}
}

func init() {
	register(&Template{
		Name:   "vicuna_v1.1",
		Origin: "FastChat fastchat/conversation.py, vicuna_v1.1 (ADD_COLON_TWO, sep \" \", sep2 \"</s>\")",
		DefaultSystem: "A chat between a curious user and an artificial intelligence assistant. " +
			"The assistant gives helpful, detailed, and polite answers to the user's questions.",
		bos:    true,
		render: colonTwo("USER", "ASSISTANT", " "),
	}, "vicuna")
	register(&Template{
		Name:          "alpaca",
		Origin:        "FastChat fastchat/conversation.py, alpaca (ADD_COLON_TWO, sep \"\\n\\n\", sep2 \"</s>\")",
		DefaultSystem: "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
		bos:           true,
		render:        colonTwo("### Instruction", "### Response", "\n\n"),
	})
	register(&Template{
		Name:   "llama-2",
		Origin: "Meta llama/generation.py chat_completion (B_INST, B_SYS); FastChat llama-2",
		bos:    true,
		render: llama2,
	}, "llama2")
	register(&Template{
		Name:       "llama-3",
		Origin:     "Meta llama3 tokenizer.py ChatFormat; FastChat llama-3 (stop_str <|eot_id|>, stop_token_ids 128001, 128009)",
		Stop:       []string{"<|eot_id|>"},
		StopTokens: []string{"<|eot_id|>", "<|end_of_text|>"},
		render:     llama3,
	}, "llama3")
	register(&Template{
		Name:       "chatml",
		Origin:     "OpenAI ChatML; FastChat CHATML style; Hugging Face chatml chat_template",
		Stop:       []string{"<|im_end|>"},
		StopTokens: []string{"<|im_end|>"},
		bos:        true,
		render:     chatML,
	})
	register(&Template{
		Name:   "baichuan",
		Origin: "FastChat fastchat/conversation.py, baichuan-chat (roles <reserved_102> <reserved_103>, NO_COLON_SINGLE)",
		render: noColonSingle("", "<reserved_102>", "<reserved_103>"),
	}, "baichuan-chat")
	register(&Template{
		Name:   "metharme",
		Origin: "FastChat fastchat/conversation.py, metharme (Pygmalion-2 role-play; NO_COLON_SINGLE, stop_str <|user|>)",
		DefaultSystem: "Enter RP mode. You shall reply to the user while staying \n" +
			"        in character. Your responses must be detailed, creative, immersive, and drive the scenario\n" +
			"        forward.",
		Stop:   []string{"<|user|>"},
		bos:    true,
		render: noColonSingle("<|system|>", "<|user|>", "<|model|>"),
	}, "pygmalion")
	register(&Template{
		Name:   "raw",
		Origin: "FastChat fastchat/conversation.py, raw (messages joined with nothing between)",
		bos:    true,
		render: noColonSingle("", "", ""),
	})
}
