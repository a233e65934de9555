package tokenizer

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Pretokenizer names the rule that cuts text into chunks before byte-level
// BPE merges inside each chunk. Merges never cross a chunk boundary.
type Pretokenizer int

// The split patterns herd knows, written as the regular expressions their
// models publish. Both are implemented by hand (Go's regexp has no
// look-ahead); \s is Unicode White_Space, \p{L} letters, \p{N} numbers.
const (
	// PreLlama3 is Llama 3's (and tiktoken cl100k_base's) pattern:
	//
	//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
	//	 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
	PreLlama3 Pretokenizer = iota + 1
	// PreGPT2 is GPT-2's pattern:
	//
	//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
	PreGPT2
)

// Llama3Pattern and GPT2Pattern are the regular expressions of PreLlama3
// and PreGPT2 as tokenizer.json files spell them.
const (
	Llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	GPT2Pattern   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

// String returns the llama.cpp tokenizer.ggml.pre name of the pattern.
func (p Pretokenizer) String() string {
	switch p {
	case PreLlama3:
		return "llama-bpe"
	case PreGPT2:
		return "gpt-2"
	}
	return fmt.Sprintf("Pretokenizer(%d)", int(p))
}

// PretokenizerByName maps a GGUF tokenizer.ggml.pre value to a pattern.
// llama.cpp writes "llama-bpe" for Llama 3 (older files "llama3" or
// "llama-v3"; Falcon 3 uses the same pattern); "gpt-2" is GPT-2's.
func PretokenizerByName(name string) (Pretokenizer, error) {
	switch name {
	case "llama-bpe", "llama3", "llama-v3", "falcon3":
		return PreLlama3, nil
	case "gpt-2", "gpt2":
		return PreGPT2, nil
	}
	return 0, fmt.Errorf("pre-tokenizer %q is not supported (herd splits text as \"llama-bpe\" (Llama 3) or \"gpt-2\")", name)
}

// PretokenizerByPattern maps a split regular expression, as tokenizer.json
// stores it, to a pattern.
func PretokenizerByPattern(re string) (Pretokenizer, error) {
	switch re {
	case Llama3Pattern:
		return PreLlama3, nil
	case GPT2Pattern:
		return PreGPT2, nil
	}
	return 0, fmt.Errorf("split pattern %q is not supported (herd knows Llama 3's and GPT-2's)", re)
}

// split calls fn with each chunk of text in order; the chunks concatenate
// to text. A byte that is not UTF-8 counts as a character that is neither
// a letter, a number nor a space.
func (p Pretokenizer) split(text string, fn func(chunk string)) {
	next := llama3Next
	if p == PreGPT2 {
		next = gpt2Next
	}
	for i := 0; i < len(text); {
		j := next(text, i)
		fn(text[i:j])
		i = j
	}
}

// decode returns the character at s[i:] and its length in bytes (U+FFFD
// and 1 for a byte that does not start a valid character), or -1, 0 at
// the end of s.
func decode(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
	}
	return unicode.IsLetter(r)
}

func isNumber(r rune) bool {
	if r < utf8.RuneSelf {
		return '0' <= r && r <= '9'
	}
	return unicode.IsNumber(r)
}

// isSpace is Unicode White_Space, the \s of the patterns.
func isSpace(r rune) bool { return r >= 0 && unicode.IsSpace(r) }

// isOther is [^\s\p{L}\p{N}].
func isOther(r rune) bool { return r >= 0 && !isSpace(r) && !isLetter(r) && !isNumber(r) }

// skip returns the end of the run of characters from i for which in holds.
func skip(s string, i int, in func(rune) bool) int {
	for {
		r, n := decode(s, i)
		if n == 0 || !in(r) {
			return i
		}
		i += n
	}
}

// contraction returns the length of 's, 't, 're, 've, 'm, 'll or 'd at
// s[i:] (i at the apostrophe), 0 if none. With fold, letters match in any
// case, as (?i) does under Unicode simple case folding (ſ is an s).
func contraction(s string, i int, fold bool) int {
	lower := func(k int) rune {
		r, _ := decode(s, k)
		if !fold {
			return r
		}
		switch r {
		case 'S', 'ſ':
			return 's'
		case 'T', 'R', 'E', 'V', 'M', 'L', 'D':
			return r + 'a' - 'A'
		}
		return r
	}
	switch lower(i + 1) {
	case 's':
		_, n := decode(s, i+1)
		return 1 + n
	case 't', 'm', 'd':
		return 2
	case 'r':
		if lower(i+2) == 'e' {
			return 3
		}
	case 'v':
		if lower(i+2) == 'e' {
			return 3
		}
	case 'l':
		if lower(i+2) == 'l' {
			return 3
		}
	}
	return 0
}

// spaceRun handles the three whitespace alternatives shared by both
// patterns, at a whitespace character s[i:]: with crlf, \s*[\r\n]+ (the
// run up to its last line break), then \s+(?!\S) (the run, less its last
// character when a non-space follows and the run is longer than one
// character), then \s+.
func spaceRun(s string, i int, crlf bool) int {
	j := skip(s, i, isSpace)
	if crlf {
		for k := j - 1; k >= i; k-- {
			if s[k] == '\r' || s[k] == '\n' {
				return k + 1
			}
		}
	}
	if j == len(s) {
		return j
	}
	_, last := utf8.DecodeLastRuneInString(s[i:j])
	if j-last > i {
		return j - last
	}
	return j
}

// llama3Next returns the end of the PreLlama3 chunk that starts at s[i].
func llama3Next(s string, i int) int {
	c, w := decode(s, i)
	if c == '\'' {
		if n := contraction(s, i, true); n > 0 {
			return i + n
		}
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if isLetter(c) {
		return skip(s, i+w, isLetter)
	}
	if c != '\r' && c != '\n' && !isNumber(c) {
		if c2, w2 := decode(s, i+w); isLetter(c2) {
			return skip(s, i+w+w2, isLetter)
		}
	}
	// \p{N}{1,3}
	if isNumber(c) {
		j := i + w
		for range 2 {
			r, n := decode(s, j)
			if !isNumber(r) {
				break
			}
			j += n
		}
		return j
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	j := i
	if c == ' ' {
		j++
	}
	if r, _ := decode(s, j); isOther(r) {
		j = skip(s, j, isOther)
		return skip(s, j, func(r rune) bool { return r == '\r' || r == '\n' })
	}
	return spaceRun(s, i, true)
}

// gpt2Next returns the end of the PreGPT2 chunk that starts at s[i].
func gpt2Next(s string, i int) int {
	c, _ := decode(s, i)
	if c == '\'' {
		if n := contraction(s, i, false); n > 0 {
			return i + n
		}
	}
	j := i
	if c == ' ' {
		j++
	}
	r, _ := decode(s, j)
	switch {
	case isLetter(r):
		return skip(s, j, isLetter)
	case isNumber(r):
		return skip(s, j, isNumber)
	case isOther(r):
		return skip(s, j, isOther)
	}
	return spaceRun(s, i, false)
}
