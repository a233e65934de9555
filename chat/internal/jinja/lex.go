// Package jinja renders the subset of Jinja2 that chat templates use (the
// templates herd ships and the common Hugging Face ones), with every
// render bounded: evaluation steps, output and string size, list length,
// call depth, nesting depth and wall time. A chat template comes from a
// model file, which is untrusted input; a template that would run out of
// memory, loop for ever or recurse without end fails with an *Error
// instead. Templates are parsed as Hugging Face's apply_chat_template
// configures Jinja2: trim_blocks and lstrip_blocks on, the loop-control
// extension (break, continue) on.
package jinja

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is a template that failed to parse or render, with the line it
// failed on (1-based; 0 when unknown).
type Error struct {
	Line  int
	Msg   string
	Limit bool // a resource limit stopped it (size, steps, time, depth)
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

func errorf(line int, format string, args ...any) *Error {
	return &Error{Line: line, Msg: fmt.Sprintf(format, args...)}
}

// tokKind is the kind of a lexical token inside a tag.
type tokKind int

const (
	tName tokKind = iota
	tString
	tInt
	tFloat
	tOp
	tEnd // the end of a tag
)

type token struct {
	kind tokKind
	s    string
	line int
}

// piece is a stretch of the source: text, an {{ expression }} or a
// {% statement %}, its tokens lexed.
type piece struct {
	kind byte // 't' text, 'e' expression, 's' statement
	text string
	toks []token
	line int
}

// split cuts src into pieces, applying the whitespace control of '-' and
// '+' markers, trim_blocks and lstrip_blocks.
func split(src string) ([]piece, error) {
	var out []piece
	line := 1
	trimNext := false // strip the whitespace before the next piece (a '-' marker)
	lineStart := true // the text now starting begins a line of the source
	for len(src) > 0 {
		i := strings.Index(src, "{")
		for i >= 0 && (i+1 >= len(src) || !strings.ContainsRune("{%#", rune(src[i+1]))) {
			j := strings.Index(src[i+1:], "{")
			if j < 0 {
				i = -1
				break
			}
			i += 1 + j
		}
		if i < 0 {
			out = appendText(out, src, trimNext, line)
			break
		}
		text, open := src[:i], src[i+1]
		rest := src[i+2:]
		lead := byte(0)
		if len(rest) > 0 && (rest[0] == '-' || rest[0] == '+') {
			lead, rest = rest[0], rest[1:]
		}
		if lead == '-' {
			text = strings.TrimRight(text, " \t\r\n")
		} else if open != '{' && lead != '+' {
			text = lstrip(text, lineStart) // lstrip_blocks: a block tag alone on its line takes its indentation
		}
		out = appendText(out, text, trimNext, line)
		line += strings.Count(src[:i], "\n")
		closeTag := map[byte]string{'{': "}}", '%': "%}", '#': "#}"}[open]
		body, after, trail, err := tagBody(rest, closeTag, open, line)
		if err != nil {
			return nil, err
		}
		consumed := len(src) - len(after)
		tagLine := line
		line += strings.Count(src[i:consumed], "\n")
		src = after
		trimNext = trail == '-'
		lineStart = false
		if open != '{' && trail != '-' && trail != '+' { // trim_blocks: the newline after a block tag goes
			if strings.HasPrefix(src, "\r\n") {
				src = src[2:]
				line++
				lineStart = true
			} else if strings.HasPrefix(src, "\n") {
				src = src[1:]
				line++
				lineStart = true
			}
		}
		if open == '#' {
			continue
		}
		if open == '%' && strings.TrimSpace(body) == "raw" {
			raw, rest, err := rawBlock(src, tagLine)
			if err != nil {
				return nil, err
			}
			out = append(out, piece{kind: 't', text: raw, line: line})
			line += strings.Count(src[:len(src)-len(rest)], "\n")
			src = rest
			continue
		}
		toks, err := lex(body, tagLine)
		if err != nil {
			return nil, err
		}
		kind := byte('e')
		if open == '%' {
			kind = 's'
		}
		out = append(out, piece{kind: kind, toks: toks, line: tagLine})
	}
	return out, nil
}

// rawBlock returns the text of a {% raw %} block that src starts inside,
// and what follows its {% endraw %}.
func rawBlock(src string, line int) (raw, rest string, err error) {
	end := strings.Index(src, "endraw")
	k := strings.LastIndex(src[:max(end, 0)], "{%")
	if end < 0 || k < 0 {
		return "", "", errorf(line, "raw without endraw")
	}
	c := strings.Index(src[end:], "%}")
	if c < 0 {
		return "", "", errorf(line, "unclosed endraw tag")
	}
	return src[:k], src[end+c+2:], nil
}

func appendText(out []piece, text string, trimLeft bool, line int) []piece {
	if trimLeft {
		text = strings.TrimLeft(text, " \t\r\n")
	}
	if text == "" {
		return out
	}
	return append(out, piece{kind: 't', text: text, line: line})
}

// lstrip removes the spaces and tabs that stand between the last newline
// of text (or its start, when it starts a line of the source) and a block
// tag.
func lstrip(text string, lineStart bool) string {
	k := strings.LastIndexByte(text, '\n')
	if k < 0 && !lineStart {
		return text
	}
	tail := text[k+1:]
	if strings.Trim(tail, " \t") != "" {
		return text
	}
	return text[:k+1]
}

// tagBody finds the end of a tag whose body starts at rest: it returns the
// body, what follows the tag and the whitespace marker before the close.
// Strings and bracketed expressions inside the tag may hold the close
// sequence.
func tagBody(rest, closeTag string, open byte, line int) (body, after string, trail byte, err error) {
	var quote byte
	depth := 0 // brackets open: "}}" inside a dict literal does not close the tag
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case (c == '\'' || c == '"') && open != '#':
			quote = c
		case open != '#' && (c == '(' || c == '[' || c == '{'):
			depth++
		case open != '#' && depth > 0 && (c == ')' || c == ']' || c == '}'):
			depth--
		case strings.HasPrefix(rest[i:], closeTag):
			body = rest[:i]
			if n := len(body); n > 0 && (body[n-1] == '-' || body[n-1] == '+') {
				trail = body[n-1]
				body = body[:n-1]
			}
			return body, rest[i+len(closeTag):], trail, nil
		}
	}
	return "", "", 0, errorf(line, "a tag is not closed with %s", closeTag)
}

// ops are the operators, longest first.
var ops = []string{"//", "**", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ",", ":", ".", "|", "+", "-", "*", "/", "%", "~", "<", ">", "="}

func lex(s string, line int) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '\'' || c == '"':
			str, n, err := unquote(s[i:], line)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tString, str, line})
			line += strings.Count(s[i:i+n], "\n")
			i += n
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '_') {
				j++
			}
			kind := tInt
			if j+1 < len(s) && s[j] == '.' && s[j+1] >= '0' && s[j+1] <= '9' {
				kind = tFloat
				j++
				for j < len(s) && s[j] >= '0' && s[j] <= '9' {
					j++
				}
			}
			toks = append(toks, token{kind, strings.ReplaceAll(s[i:j], "_", ""), line})
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			toks = append(toks, token{tName, s[i:j], line})
			i = j
		default:
			op := ""
			for _, o := range ops {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, errorf(line, "unexpected character %q", c)
			}
			toks = append(toks, token{tOp, op, line})
			i += len(op)
		}
	}
	return append(toks, token{tEnd, "", line}), nil
}

// unquote reads a Python string literal at the start of s and returns its
// value and length.
func unquote(s string, line int) (string, int, error) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c == q {
			return b.String(), i + 1, nil
		}
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\', '\'', '"':
			b.WriteByte(s[i])
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[s[i]]
			if i+n < len(s) {
				if r, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32); err == nil && utf8.ValidRune(rune(r)) {
					b.WriteRune(rune(r))
					i += n
					continue
				}
			}
			b.WriteByte('\\')
			b.WriteByte(s[i])
		case '\n':
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return "", 0, errorf(line, "unterminated string")
}
