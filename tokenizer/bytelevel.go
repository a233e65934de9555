package tokenizer

import "strings"

// GPT-2's byte-level alphabet writes each byte as one printable character
// so that vocabularies are text: the printable ASCII and Latin-1 bytes
// ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves, the other 68 bytes
// (controls, space, DEL, NBSP, soft hyphen) become U+0100 onwards in byte
// order: ' ' is 'Ġ', '\n' is 'Ċ'.
var (
	byteRune [256]rune     // byte → its character
	runeByte map[rune]byte // character → byte
)

func init() {
	runeByte = make(map[rune]byte, 256)
	n := 0
	for b := range 256 {
		r := rune(b)
		if !('!' <= b && b <= '~' || 0xA1 <= b && b <= 0xAC || 0xAE <= b && b <= 0xFF) {
			r = rune(256 + n)
			n++
		}
		byteRune[b] = r
		runeByte[r] = byte(b)
	}
}

// ByteLevel writes raw bytes in GPT-2's byte-level alphabet, as byte-level
// BPE vocabularies (encoder.json, tokenizer.json, GGUF) store tokens:
// ByteLevel(" the") is "Ġthe".
func ByteLevel(raw string) string {
	var b strings.Builder
	b.Grow(2 * len(raw))
	for i := 0; i < len(raw); i++ {
		b.WriteRune(byteRune[raw[i]])
	}
	return b.String()
}

// fromByteLevel reads a byte-level token back into raw bytes; ok is false
// when a character is outside the alphabet.
func fromByteLevel(tok string) (string, bool) {
	out := make([]byte, 0, len(tok))
	for _, r := range tok {
		b, ok := runeByte[r]
		if !ok {
			return "", false
		}
		out = append(out, b)
	}
	return string(out), true
}
