package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// Decode returns the text of ids as spm_decode prints it: control pieces
// vanish, <unk> reads " ⁇ ", '▁' reads ' ', the first piece that starts with
// '▁' loses it when nothing has been printed before it (the dummy prefix;
// with RemoveExtraWhitespaces every leading '▁' is dropped), and each run of
// byte pieces is read as UTF-8, a byte that does not form a valid character
// giving U+FFFD. Ids outside the vocabulary are skipped (spm_decode
// rejects them).
func (t *SPM) Decode(ids []int) string {
	var sb strings.Builder
	sb.Grow(len(ids) * 4)
	var bytes []byte   // pending run of byte pieces
	bosWS := true      // a leading '▁' may still be consumed
	bosWSSeen := false // the previous piece consumed one
	strip := t.opt.AddDummyPrefix || t.opt.RemoveExtraWhitespaces
	for _, id := range ids {
		if id < 0 || id >= len(t.pieces) {
			continue
		}
		if t.types[id] == TypeByte {
			bytes = append(bytes, byte(t.byteVal[id]))
			continue
		}
		bytes = flushBytes(&sb, bytes)
		if bosWSSeen || sb.Len() > 0 {
			bosWS = false
		}
		bosWSSeen = false
		switch t.types[id] {
		case TypeControl:
		case TypeUnknown:
			sb.WriteString(t.unkSurface)
		default:
			s := t.text[id]
			if bosWS && strip && strings.HasPrefix(t.pieces[id], spaceSymbol) {
				s = s[1:] // the dummy prefix
				bosWSSeen = !t.opt.RemoveExtraWhitespaces
			}
			sb.WriteString(s)
		}
	}
	flushBytes(&sb, bytes)
	return sb.String()
}

// flushBytes writes a run of byte pieces as UTF-8, U+FFFD for each byte
// that does not start a valid character, and returns the emptied run.
func flushBytes(sb *strings.Builder, b []byte) []byte {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			sb.WriteString("\uFFFD")
		} else {
			sb.Write(b[i : i+n])
		}
		i += n
	}
	return b[:0]
}

// DecodePiece renders token id for streaming output as llama2.c's run.c
// does: a piece right after BOS (prev) loses one leading space, a byte piece
// <0xNN> is the raw byte, '▁' reads ' '. Beyond run.c: control pieces and
// ids outside the vocabulary give nothing and <unk> reads " ⁇ ", as in
// Decode. A byte piece may be part of a multi-byte character, so a stream
// of these pieces can cut a character in two; printers that need whole
// characters should buffer (run.c prints the bytes as they come, skipping
// single non-printable bytes).
func (t *SPM) DecodePiece(prev, id int) []byte {
	if id < 0 || id >= len(t.pieces) {
		return nil
	}
	switch t.types[id] {
	case TypeControl:
		return nil
	case TypeByte:
		return []byte{byte(t.byteVal[id])}
	case TypeUnknown:
		return []byte(t.unkSurface)
	}
	s := t.text[id]
	if prev == t.opt.BOS && prev >= 0 && strings.HasPrefix(s, " ") {
		s = s[1:]
	}
	return []byte(s)
}
