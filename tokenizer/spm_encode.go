package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// scratch holds the buffers of one Encode call, reused through a sync.Pool.
type scratch struct {
	norm  []byte
	syms  []symbol
	words []word
	heap  []pair
	// split records, for unused pieces formed by a merge, the length of the
	// left part of the last pair pushed with that text (spm's rev_merge).
	split map[string]int
}

// symbol is a run norm[start:end] of the normalised text in a doubly linked
// list; an empty run (start == end) has been merged into its left neighbour.
type symbol struct {
	start, end int32
	prev, next int32
	id         int32 // id of the text among mergeable pieces, -1 if none
	freeze     bool  // a user-defined piece: never merged
}

// pair is a candidate merge of adjacent symbols left and right into the
// piece id of the given score, whose text was size bytes long when pushed.
type pair struct {
	score       float32
	left, right int32
	size        int32
	id          int32
}

// before orders the agenda: highest score first, leftmost on ties.
func (a *pair) before(b *pair) bool {
	return a.score > b.score || (a.score == b.score && a.left < b.left)
}

func (s *scratch) push(p pair) {
	h := append(s.heap, p)
	i := len(h) - 1
	for i > 0 {
		up := (i - 1) / 2
		if !h[i].before(&h[up]) {
			break
		}
		h[i], h[up] = h[up], h[i]
		i = up
	}
	s.heap = h
}

func (s *scratch) pop() pair {
	h := s.heap
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		c := l
		if r := l + 1; r < n && h[r].before(&h[l]) {
			c = r
		}
		if !h[c].before(&h[i]) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	s.heap = h
	return top
}

// Encode returns the ids of text, with BOS first and EOS last when asked
// (and the vocabulary has them). It never fails: every byte of text is
// spelled by some piece, a byte piece or <unk>.
func (t *SPM) Encode(text string, addBOS, addEOS bool) []int {
	s := t.scratchers.Get().(*scratch)
	defer t.scratchers.Put(s)
	out := make([]int, 0, len(text)/3+3)
	if addBOS && t.opt.BOS >= 0 {
		out = append(out, t.opt.BOS)
	}
	s.norm = t.normalize(s.norm[:0], text)
	out = t.bpe(s, out)
	if addEOS && t.opt.EOS >= 0 {
		out = append(out, t.opt.EOS)
	}
	return out
}

// normalize appends to dst the text as the model sees it (see SPM).
func (t *SPM) normalize(dst []byte, text string) []byte {
	if text == "" {
		return dst
	}
	extra := t.opt.RemoveExtraWhitespaces
	i := 0
	if extra {
		for i < len(text) {
			u, n := t.unit(text[i:])
			if u != " " {
				break
			}
			i += n
		}
		if i == len(text) {
			return dst
		}
	}
	if t.opt.AddDummyPrefix {
		dst = append(dst, spaceSymbol...)
	}
	if !extra && !t.hasUser {
		return appendEscaped(dst, text[i:])
	}
	prevSpace := extra
	for i < len(text) {
		u, n := t.unit(text[i:])
		i += n
		if prevSpace {
			for len(u) > 0 && u[0] == ' ' {
				u = u[1:]
			}
		}
		if u != "" {
			dst = appendEscaped(dst, u)
			prevSpace = u[len(u)-1] == ' '
		}
		if !extra {
			prevSpace = false
		}
	}
	if extra {
		for len(dst) >= len(spaceSymbol) && string(dst[len(dst)-len(spaceSymbol):]) == spaceSymbol {
			dst = dst[:len(dst)-len(spaceSymbol)]
		}
	}
	return dst
}

// unit returns the next normalisation unit of text and how many bytes of
// text it consumes: a user-defined piece, one UTF-8 character, or U+FFFD
// for one byte that does not start a valid character.
func (t *SPM) unit(text string) (string, int) {
	if t.hasUser {
		if n := matchUser(&t.user, text); n > 0 {
			return text[:n], n
		}
	}
	if text[0] < utf8.RuneSelf {
		return text[:1], 1
	}
	r, n := utf8.DecodeRuneInString(text)
	if r == utf8.RuneError && n == 1 {
		return "\uFFFD", 1
	}
	return text[:n], n
}

// appendEscaped appends s with ' ' written as '▁' and each invalid UTF-8
// byte as U+FFFD.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == ' ' {
				dst = append(dst, spaceSymbol...)
			} else {
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, "\uFFFD"...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return dst
}

// matchUser returns the length of the longest user-defined piece that
// prefixes s, 0 if none.
func matchUser[S string | []byte](user *[256][]string, s S) int {
	for _, u := range user[s[0]] {
		if len(u) <= len(s) && string(s[:len(u)]) == u {
			return len(u)
		}
	}
	return 0
}

// charLen is the length of the UTF-8 sequence that lead byte c announces,
// as SentencePiece's OneCharLen reads it (1 for a stray continuation byte).
func charLen(c byte) int {
	switch {
	case c < 0xC0:
		return 1
	case c < 0xE0:
		return 2
	case c < 0xF0:
		return 3
	}
	return 4
}

// linearMax is the longest word (in symbols) that BPE merges by scanning
// all its pairs at each step: O(n²), but faster than a heap for short words.
const linearMax = 24

// bpe appends to out the ids of the normalised text in s.norm.
func (t *SPM) bpe(s *scratch, out []int) []int {
	norm := s.norm
	if len(norm) == 0 {
		return out
	}
	prevUnk := false
	if !t.fastPairs || !t.cutAtSpace || t.hasUser || t.hasUnused {
		syms := s.syms[:0]
		for i := 0; i < len(norm); {
			n, id, freeze := t.nextSymbol(norm[i:])
			k := int32(len(syms))
			syms = append(syms, symbol{start: int32(i), end: int32(i + n), prev: k - 1, next: k + 1, id: id, freeze: freeze})
			i += n
		}
		s.syms = syms
		if t.hasUnused {
			clear(s.split)
			if s.split == nil {
				s.split = make(map[string]int)
			}
		}
		t.heapBPE(s, 0, int32(len(syms)))
		return t.output(s, 0, out, &prevUnk)
	}
	// Word by word: a word starts at a '▁' that follows another character.
	ws := s.words[:0]
	prevSpace := false
	for i := 0; i < len(norm); {
		n, id, _ := t.nextSymbol(norm[i:])
		space := n == len(spaceSymbol) && string(norm[i:i+n]) == spaceSymbol
		if space && !prevSpace && len(ws) > 0 {
			out = t.mergeWord(s, ws, out, &prevUnk)
			ws = ws[:0]
		}
		ws = append(ws, word{start: int32(i), end: int32(i + n), id: id, pair: -1})
		prevSpace = space
		i += n
	}
	s.words = ws
	return t.mergeWord(s, ws, out, &prevUnk)
}

// nextSymbol returns the length of the initial symbol at the start of norm
// (a user-defined piece, frozen, or one character) and its merge id (-1 if
// it is not a mergeable piece).
func (t *SPM) nextSymbol(norm []byte) (n int, id int32, freeze bool) {
	if t.hasUser {
		n = matchUser(&t.user, norm)
		freeze = n > 0
	}
	if c := norm[0]; n == 0 && c < utf8.RuneSelf {
		return 1, t.asciiID[c], false
	} else if n == 0 {
		n = min(charLen(c), len(norm))
	}
	if m, ok := t.merge[string(norm[:n])]; ok {
		return n, m, freeze
	}
	return n, -1, freeze
}

// mergeWord runs BPE on one word and appends its ids: by linear scans when
// it is short, with the heap otherwise.
func (t *SPM) mergeWord(s *scratch, ws []word, out []int, prevUnk *bool) []int {
	if len(ws) <= linearMax {
		return t.linearBPE(s, ws, out, prevUnk)
	}
	syms := s.syms[:0]
	for k, w := range ws {
		syms = append(syms, symbol{start: w.start, end: w.end, prev: int32(k - 1), next: int32(k + 1), id: w.id})
	}
	s.syms = syms
	t.heapBPE(s, 0, int32(len(syms)))
	return t.output(s, 0, out, prevUnk)
}

// heapBPE merges symbols i0..i1-1 as sentencepiece does: a priority queue
// of candidate pairs, stale entries skipped when popped.
func (t *SPM) heapBPE(s *scratch, i0, i1 int32) {
	syms := s.syms
	syms[i0].prev, syms[i1-1].next = -1, -1
	s.heap = s.heap[:0]
	for i := i0 + 1; i < i1; i++ {
		t.addPair(s, i-1, i)
	}
	for len(s.heap) > 0 {
		p := s.pop()
		l, r := &syms[p.left], &syms[p.right]
		if l.start == l.end || r.start == r.end || (l.end-l.start)+(r.end-r.start) != p.size {
			continue // stale: one side has changed since the pair was pushed
		}
		l.end = r.end
		l.id = p.id
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = p.left
		}
		r.start = r.end
		t.addPair(s, l.prev, p.left)
		t.addPair(s, p.left, l.next)
	}
}

// output appends the ids of the symbols linked from index first.
func (t *SPM) output(s *scratch, first int32, out []int, prevUnk *bool) []int {
	for i := first; i >= 0; i = s.syms[i].next {
		sym := &s.syms[i]
		out = t.emitSymbol(s, s.norm[sym.start:sym.end], sym.id, out, prevUnk)
	}
	return out
}

// emitSymbol appends the ids of one finished symbol w whose merge id (-1:
// not a mergeable piece) is id.
func (t *SPM) emitSymbol(s *scratch, w []byte, id int32, out []int, prevUnk *bool) []int {
	if id >= 0 {
		id = t.final[id]
	} else {
		id = t.symbolID(w)
	}
	if t.hasUnused && id >= 0 && t.types[id] == TypeUnused {
		out, *prevUnk = t.resegment(s, string(w), out, *prevUnk)
		return out
	}
	out, *prevUnk = t.emit(w, id, out, *prevUnk)
	return out
}

// word is a symbol of linearBPE with the candidate merge of it and its
// right neighbour (pair -1: none).
type word struct {
	start, end int32
	id, pair   int32
	score      float32
}

// linearBPE merges the symbols of a short word by scanning for the best
// pair at each step — the same order as the heap: highest score, leftmost
// on ties — and appends their ids. It reuses ws.
func (t *SPM) linearBPE(s *scratch, ws []word, out []int, prevUnk *bool) []int {
	for k := 0; k+1 < len(ws); k++ {
		ws[k].pair, ws[k].score = t.pairOf(ws[k].id, ws[k+1].id)
	}
	for {
		best := -1
		var score float32
		for k := 0; k+1 < len(ws); k++ {
			if ws[k].pair >= 0 && (best < 0 || ws[k].score > score) {
				best, score = k, ws[k].score
			}
		}
		if best < 0 {
			break
		}
		w := &ws[best]
		w.end, w.id = ws[best+1].end, w.pair
		ws = append(ws[:best+1], ws[best+2:]...)
		w.pair = -1
		if best+1 < len(ws) {
			w.pair, w.score = t.pairOf(w.id, ws[best+1].id)
		}
		if best > 0 {
			ws[best-1].pair, ws[best-1].score = t.pairOf(ws[best-1].id, w.id)
		}
	}
	for _, w := range ws {
		out = t.emitSymbol(s, s.norm[w.start:w.end], w.id, out, prevUnk)
	}
	return out
}

// pairOf returns the merge of pieces a and b and its score; -1 if none.
func (t *SPM) pairOf(a, b int32) (int32, float32) {
	if a < 0 || b < 0 {
		return -1, 0
	}
	id := t.pairs.get(a, b)
	if id < 0 {
		return -1, 0
	}
	return id, t.scores[id]
}

// symbolID is the output id of a symbol's text (spm's PieceToId), -1 when
// no piece has that text.
func (t *SPM) symbolID(w []byte) int32 {
	if id, ok := t.reserved[string(w)]; ok {
		return id
	}
	if id, ok := t.merge[string(w)]; ok {
		return id
	}
	return -1
}

// addPair pushes the merge of symbols left and right when their
// concatenation is a piece.
func (t *SPM) addPair(s *scratch, left, right int32) {
	if left < 0 || right < 0 {
		return
	}
	l, r := &s.syms[left], &s.syms[right]
	if l.freeze || r.freeze {
		return
	}
	size := r.end - l.start
	var id int32
	if t.fastPairs {
		if id, _ = t.pairOf(l.id, r.id); id < 0 {
			return
		}
	} else {
		if int(size) > t.maxMerge {
			return
		}
		var ok bool
		if id, ok = t.merge[string(s.norm[l.start:r.end])]; !ok {
			return
		}
	}
	s.push(pair{score: t.scores[id], left: left, right: right, size: size, id: id})
	if t.hasUnused && t.types[id] == TypeUnused {
		s.split[string(s.norm[l.start:r.end])] = int(l.end - l.start)
	}
}

// resegment splits an unused piece back into the pieces it was merged
// from, recursively, and emits them.
func (t *SPM) resegment(s *scratch, w string, out []int, prevUnk bool) ([]int, bool) {
	id := t.symbolID([]byte(w))
	if id >= 0 && t.types[id] == TypeUnused {
		if k, ok := s.split[w]; ok {
			out, prevUnk = t.resegment(s, w[:k], out, prevUnk)
			return t.resegment(s, w[k:], out, prevUnk)
		}
	}
	return t.emit([]byte(w), id, out, prevUnk)
}

// emit appends the id of one finished symbol w (id -1: not a piece). An
// unknown symbol becomes its bytes with byte fallback, otherwise <unk>, one
// for a whole run of unknown symbols.
func (t *SPM) emit(w []byte, id int32, out []int, prevUnk bool) ([]int, bool) {
	if id >= 0 && t.types[id] != TypeUnknown {
		return append(out, int(id)), false
	}
	if t.opt.ByteFallback {
		for _, b := range w {
			out = append(out, int(t.byteID[b]))
		}
		return out, true
	}
	if prevUnk {
		return out, true
	}
	if id < 0 {
		id = int32(t.unk)
	}
	return append(out, int(id)), true
}

// EncodeSpecial is Encode with the text of control and unknown pieces
// ("<s>", "</s>", "<unk>") read as those pieces, longest match first, as
// llama.cpp's parse_special does. The text between them is encoded as
// Encode encodes a whole text, so each stretch gets the dummy prefix, as
// in llama.cpp and Hugging Face's Llama tokenizer.
func (t *SPM) EncodeSpecial(text string, addBOS, addEOS bool) []int {
	var out []int
	if addBOS && t.opt.BOS >= 0 {
		out = append(out, t.opt.BOS)
	}
	start := 0
	for i := 0; i < len(text); {
		n, id := 0, -1
		for _, sid := range t.special[text[i]] {
			if p := t.pieces[sid]; strings.HasPrefix(text[i:], p) {
				n, id = len(p), int(sid)
				break
			}
		}
		if n == 0 {
			i++
			continue
		}
		out = append(out, t.Encode(text[start:i], false, false)...)
		out = append(out, id)
		i += n
		start = i
	}
	out = append(out, t.Encode(text[start:], false, false)...)
	if addEOS && t.opt.EOS >= 0 {
		out = append(out, t.opt.EOS)
	}
	return out
}
