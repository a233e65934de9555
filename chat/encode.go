package chat

import (
	"strings"
	"sync"

	"github.com/herd-llm/herd/tokenizer"
)

// Encoded is a rendered conversation as token ids, with the assistant
// messages a model should learn.
type Encoded struct {
	IDs   []int
	Spans []Span
}

// Span locates one assistant message in Encoded.IDs: IDs[Start:Stop] spell
// its text and IDs[Stop:End] its end-of-turn marker. Supervised fine-tuning
// learns IDs[Start:End] and nothing else.
type Span struct {
	Msg              int // index of the message in the conversation
	Start, Stop, End int
}

// pieces is what the encoder needs of a vocabulary beyond the Tokenizer
// interface: special pieces by text (tokenizer.SPM has it).
type pieces interface {
	PieceID(piece string) int
	Type(id int) tokenizer.Type
}

// twins caches, per SentencePiece tokenizer, the same vocabulary without
// the dummy prefix, for text that continues a fragment.
var twins sync.Map // *tokenizer.SPM → *tokenizer.SPM

func continuation(tok tokenizer.Tokenizer) tokenizer.Tokenizer {
	spm, ok := tok.(*tokenizer.SPM)
	if !ok || !spm.Options().AddDummyPrefix {
		return tok
	}
	if t, ok := twins.Load(spm); ok {
		return t.(*tokenizer.SPM)
	}
	n := spm.VocabSize()
	ps, scores, types := make([]string, n), make([]float32, n), make([]tokenizer.Type, n)
	for i := range ps {
		ps[i], scores[i], types[i] = spm.Piece(i), spm.Score(i), spm.Type(i)
	}
	opt := spm.Options()
	opt.AddDummyPrefix = false
	twin, err := tokenizer.NewSPM(ps, scores, types, opt)
	if err != nil { // unreachable: the same vocabulary built spm
		return tok
	}
	twins.Store(spm, twin)
	return twin
}

// specialID resolves a Special part to a token id: the vocabulary's control
// or user-defined piece of that text, else for BOS and EOS the tokenizer's
// own. ok is false when the part must be spelled as text.
func specialID(tok tokenizer.Tokenizer, p Part) (int, bool) {
	if v, ok := tok.(pieces); ok {
		if id := v.PieceID(p.Text); id >= 0 {
			if t := v.Type(id); t == tokenizer.TypeControl || t == tokenizer.TypeUserDefined {
				return id, true
			}
		}
	}
	switch {
	case p.Token == BOS && tok.BOS() >= 0:
		return tok.BOS(), true
	case p.Token == EOS && tok.EOS() >= 0:
		return tok.EOS(), true
	}
	return -1, false
}

// Encode turns the rendering into token ids as llama.cpp tokenizes a
// chat prompt with special tokens parsed, except that only the template's
// own special tokens become control tokens (text in messages is always
// text): text between control tokens is one fragment, and a fragment gets
// SentencePiece's dummy-prefix space only at the start or right after a
// control token. Assistant messages are fragments of their own, so that
// their spans are exact; a space that separates a role header from the
// message goes with the message ("ASSISTANT:" + " Hi"), as a tokenizer
// reading the whole text would join them.
func (r *Rendered) Encode(tok tokenizer.Tokenizer) *Encoded {
	cont := continuation(tok)
	e := &Encoded{}
	if r.BOS && tok.BOS() >= 0 {
		e.IDs = append(e.IDs, tok.BOS())
	}
	start := true // the next fragment follows a control token or the start
	var buf strings.Builder
	bufLearn := false
	flush := func() {
		if buf.Len() == 0 {
			return
		}
		t := buf.String()
		buf.Reset()
		if start {
			e.IDs = append(e.IDs, tok.Encode(t, false, false)...)
		} else {
			e.IDs = append(e.IDs, cont.Encode(t, false, false)...)
		}
		start = false
	}
	span := func(msg int) *Span {
		if n := len(e.Spans); n > 0 && e.Spans[n-1].Msg == msg {
			return &e.Spans[n-1]
		}
		e.Spans = append(e.Spans, Span{Msg: msg, Start: len(e.IDs), Stop: len(e.IDs), End: len(e.IDs)})
		return &e.Spans[len(e.Spans)-1]
	}
	for _, p := range r.Parts {
		if p.Learn != bufLearn || p.Kind == Content {
			// a learned run starts or ends: cut the fragment there
			carry := ""
			if p.Kind == Content && !bufLearn && p.Text != "" && !strings.HasPrefix(p.Text, " ") {
				if t := buf.String(); strings.HasSuffix(t, " ") && len(t) > 1 {
					buf.Reset()
					buf.WriteString(t[:len(t)-1])
					carry = " "
				}
			}
			flush()
			buf.WriteString(carry)
			bufLearn = p.Learn
		}
		switch p.Kind {
		case Content:
			s := span(p.Msg)
			s.Start = len(e.IDs)
			buf.WriteString(p.Text)
			flush()
			s.Stop, s.End = len(e.IDs), len(e.IDs)
			bufLearn = false
			continue
		case Special:
			if id, ok := specialID(tok, p); ok {
				flush()
				e.IDs = append(e.IDs, id)
				start = true
			} else {
				buf.WriteString(p.Text)
			}
		default:
			buf.WriteString(p.Text)
		}
		if p.Learn {
			flush()
			span(p.Msg).End = len(e.IDs)
		}
	}
	flush()
	return e
}

// StopIDs returns the tokens that end an assistant's turn in tok's
// vocabulary: EOS and the template's stop pieces that the vocabulary has.
func (t *Template) StopIDs(tok tokenizer.Tokenizer) []int {
	var ids []int
	if tok.EOS() >= 0 {
		ids = append(ids, tok.EOS())
	}
	v, ok := tok.(pieces)
	if !ok {
		return ids
	}
	for _, s := range t.StopTokens {
		if id := v.PieceID(s); id >= 0 && id != tok.EOS() {
			ids = append(ids, id)
		}
	}
	return ids
}
