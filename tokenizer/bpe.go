package tokenizer

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
)

// BPEOptions are the settings of a byte-level BPE vocabulary besides its
// tokens and merges. Ids are -1 when there is no such token.
type BPEOptions struct {
	// Pre cuts text into the chunks BPE merges within. Required.
	Pre Pretokenizer
	// IgnoreMerges emits a chunk that is itself a token as that token,
	// without merging (tiktoken's rule, Llama 3's tokenizer.json
	// "ignore_merges": true).
	IgnoreMerges bool
	// BOS and EOS are the ids Encode adds when asked to.
	BOS, EOS int
	// AddBOS says whether the model expects BOS before every text
	// (tokenizer_config.json add_bos_token, GGUF tokenizer.ggml.add_bos_token).
	AddBOS bool
	// ChatTemplate is the Jinja chat template the vocabulary ships with
	// (tokenizer_config.json chat_template), kept for serving; "" if none.
	ChatTemplate string
}

// BPE is a byte-level BPE tokenizer (GPT-2, Llama 3): text is cut into
// chunks by a split pattern (Pretokenizer), each chunk is read as UTF-8
// bytes, and within a chunk the adjacent pair of tokens whose merge has
// the lowest rank is merged, the leftmost on ties, until no pair merges. A
// merge's rank is the position of the first merge rule that makes its
// token, which for vocabularies converted from tiktoken (Llama 3) is
// tiktoken's rank. Every byte has a token, so any text, valid UTF-8 or not,
// encodes and decodes back to the same bytes.
//
// Added tokens (types Control and UserDefined, whose text is their literal
// content) are never produced by merges: user-defined ones are cut out of
// the text wherever they occur; control ones (<|begin_of_text|>,
// <|eot_id|>, …) only by EncodeSpecial, never by Encode, so user text
// cannot forge them.
//
// A BPE is immutable and safe for concurrent use.
type BPE struct {
	tokens []string // as given: byte-level text, or the content of added tokens
	raw    []string // the bytes each token stands for
	types  []Type
	merges []string // "left right", as given
	opt    BPEOptions

	rawID  map[string]int32 // bytes → id of mergeable tokens
	byText map[string]int32 // byte-level text → id of mergeable tokens
	byteID [256]int32
	pairs  pairTable // (left, right) → merged id
	rank   []int32   // rank of a merged token, MaxInt32 for the others

	// added lists the added tokens by the first byte of their content,
	// longest first; byContent finds them by text.
	added     [256][]int32
	byContent map[string]int32
	hasUser   bool // user-defined tokens: cut out of every text

	scratchers sync.Pool
}

// NewBPE builds a byte-level BPE tokenizer from tokens (byte-level text,
// 'Ġ' for a space; for added tokens of type Control or UserDefined the
// literal content), their types (nil: all normal) and the merge rules in
// rank order, each "left right" with both halves tokens.
func NewBPE(tokens []string, types []Type, merges []string, opt BPEOptions) (*BPE, error) {
	n := len(tokens)
	if n == 0 {
		return nil, fmt.Errorf("tokenizer: empty vocabulary")
	}
	if n > math.MaxInt32 {
		return nil, fmt.Errorf("tokenizer: vocabulary of %d tokens is too large", n)
	}
	if types != nil && len(types) != n {
		return nil, fmt.Errorf("tokenizer: %d types for %d tokens", len(types), n)
	}
	if opt.Pre != PreLlama3 && opt.Pre != PreGPT2 {
		return nil, fmt.Errorf("tokenizer: no pre-tokenizer (split pattern) given")
	}
	for name, id := range map[string]int{"BOS": opt.BOS, "EOS": opt.EOS} {
		if id < -1 || id >= n {
			return nil, fmt.Errorf("tokenizer: %s id %d outside the vocabulary of %d tokens", name, id, n)
		}
	}
	t := &BPE{
		tokens:    append([]string(nil), tokens...),
		raw:       make([]string, n),
		types:     make([]Type, n),
		merges:    append([]string(nil), merges...),
		opt:       opt,
		rawID:     make(map[string]int32, n),
		rank:      make([]int32, n),
		byContent: make(map[string]int32),
	}
	byText := make(map[string]int32, n)
	t.byText = byText
	for i, tok := range tokens {
		ty := TypeNormal
		if types != nil {
			ty = types[i]
			if ty < TypeUndefined || ty > TypeByte {
				return nil, fmt.Errorf("tokenizer: token %d %q: unknown type %d", i, tok, ty)
			}
			if ty == TypeUndefined {
				ty = TypeNormal
			}
		}
		t.types[i] = ty
		t.rank[i] = math.MaxInt32
		if ty == TypeControl || ty == TypeUserDefined || ty == TypeUnknown {
			t.raw[i] = tok
			if tok == "" {
				continue
			}
			if _, dup := t.byContent[tok]; !dup {
				t.byContent[tok] = int32(i)
				t.added[tok[0]] = append(t.added[tok[0]], int32(i))
			}
			t.hasUser = t.hasUser || ty == TypeUserDefined
			continue
		}
		raw, ok := fromByteLevel(tok)
		if !ok {
			// Not byte-level text: it can be decoded, never encoded.
			t.raw[i] = tok
			continue
		}
		t.raw[i] = raw
		if _, dup := byText[tok]; !dup {
			byText[tok] = int32(i)
		}
		if _, dup := t.rawID[raw]; !dup && raw != "" {
			t.rawID[raw] = int32(i)
		}
	}
	for b := range t.added {
		a := t.added[b]
		sort.SliceStable(a, func(i, j int) bool { return len(t.raw[a[i]]) > len(t.raw[a[j]]) })
	}
	for b := range 256 {
		id, ok := t.rawID[string([]byte{byte(b)})]
		if !ok {
			return nil, fmt.Errorf("tokenizer: no token for byte 0x%02X (%q): a byte-level vocabulary needs all 256", b, string(byteRune[b]))
		}
		t.byteID[b] = id
	}
	t.pairs = newPairTable(len(merges))
	for r, m := range merges {
		left, right, ok := strings.Cut(m, " ")
		if !ok {
			return nil, fmt.Errorf("tokenizer: merge %d %q is not two tokens separated by a space", r, m)
		}
		a, okA := byText[left]
		b, okB := byText[right]
		c, okC := byText[left+right]
		switch {
		case !okA:
			return nil, fmt.Errorf("tokenizer: merge %d %q: %q is not in the vocabulary", r, m, left)
		case !okB:
			return nil, fmt.Errorf("tokenizer: merge %d %q: %q is not in the vocabulary", r, m, right)
		case !okC:
			return nil, fmt.Errorf("tokenizer: merge %d %q: the merged token %q is not in the vocabulary", r, m, left+right)
		}
		t.pairs.put(a, b, c)
		t.rank[c] = min(t.rank[c], int32(r))
	}
	t.scratchers.New = func() any { return new(bpeScratch) }
	return t, nil
}

// VocabSize is the number of tokens.
func (t *BPE) VocabSize() int { return len(t.tokens) }

// BOS is the beginning-of-sequence id, -1 if none.
func (t *BPE) BOS() int { return t.opt.BOS }

// EOS is the end-of-sequence id, -1 if none.
func (t *BPE) EOS() int { return t.opt.EOS }

// Options returns the options the tokenizer was built with.
func (t *BPE) Options() BPEOptions { return t.opt }

// ChatTemplate is the Jinja chat template the vocabulary came with, "" if none.
func (t *BPE) ChatTemplate() string { return t.opt.ChatTemplate }

// Piece returns token id as the vocabulary writes it (byte-level text,
// 'Ġ' for a space; an added token's content), "" outside the vocabulary.
func (t *BPE) Piece(id int) string {
	if id < 0 || id >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// Type returns the type of token id, TypeUndefined outside the vocabulary.
func (t *BPE) Type(id int) Type {
	if id < 0 || id >= len(t.tokens) {
		return TypeUndefined
	}
	return t.types[id]
}

// Merges returns the merge rules in rank order, each "left right".
func (t *BPE) Merges() []string { return append([]string(nil), t.merges...) }

// PieceID returns the id of an added token by its content or of a token
// by its byte-level text, -1 if none.
func (t *BPE) PieceID(piece string) int {
	if id, ok := t.byContent[piece]; ok {
		return int(id)
	}
	if id, ok := t.byText[piece]; ok {
		return int(id)
	}
	return -1
}

// Encode returns the ids of text, with BOS first and EOS last when asked
// (and the vocabulary has them). Control tokens written in the text are
// encoded as text; see EncodeSpecial.
func (t *BPE) Encode(text string, addBOS, addEOS bool) []int {
	return t.encode(text, addBOS, addEOS, false)
}

// EncodeSpecial is Encode with special tokens parsed (llama.cpp's
// parse_special): the content of a control token written in text, such as
// "<|eot_id|>", becomes that token.
func (t *BPE) EncodeSpecial(text string, addBOS, addEOS bool) []int {
	return t.encode(text, addBOS, addEOS, true)
}

func (t *BPE) encode(text string, addBOS, addEOS, special bool) []int {
	s := t.scratchers.Get().(*bpeScratch)
	defer t.scratchers.Put(s)
	out := make([]int, 0, len(text)/4+3)
	if addBOS && t.opt.BOS >= 0 {
		out = append(out, t.opt.BOS)
	}
	if !special && !t.hasUser {
		out = t.encodeText(s, text, out)
	} else {
		start := 0
		for i := 0; i < len(text); {
			id, n := t.matchAdded(text[i:], special)
			if n == 0 {
				i++
				continue
			}
			out = t.encodeText(s, text[start:i], out)
			out = append(out, int(id))
			i += n
			start = i
		}
		out = t.encodeText(s, text[start:], out)
	}
	if addEOS && t.opt.EOS >= 0 {
		out = append(out, t.opt.EOS)
	}
	return out
}

// matchAdded returns the longest added token that text starts with and
// its length; control and unknown tokens only when special is set.
func (t *BPE) matchAdded(text string, special bool) (int32, int) {
	for _, id := range t.added[text[0]] {
		if !special && t.types[id] != TypeUserDefined {
			continue
		}
		if c := t.raw[id]; strings.HasPrefix(text, c) {
			return id, len(c)
		}
	}
	return -1, 0
}

// encodeText appends the ids of text that holds no added token.
func (t *BPE) encodeText(s *bpeScratch, text string, out []int) []int {
	t.opt.Pre.split(text, func(chunk string) {
		out = t.encodeChunk(s, chunk, out)
	})
	return out
}

// bpeScratch holds the buffers of one Encode call.
type bpeScratch struct {
	syms []bpeSym
	heap []bpeMerge
}

// bpeSym is a token of a chunk being merged, with the merge of it and its
// right neighbour (pair -1: none) for the linear scan, and links for the
// heap.
type bpeSym struct {
	id, pair   int32
	rank       int32
	prev, next int32
}

// bpeMerge is a candidate merge of symbols left and right (holding ids a
// and b when pushed) into id, of the given rank.
type bpeMerge struct {
	rank, left  int32
	right, a, b int32
	id          int32
}

func (m *bpeMerge) before(o *bpeMerge) bool {
	return m.rank < o.rank || (m.rank == o.rank && m.left < o.left)
}

// bpeLinearMax is the longest chunk (in bytes) merged by scanning all its
// pairs at each step; longer chunks use a heap.
const bpeLinearMax = 48

// encodeChunk appends the ids of one chunk.
func (t *BPE) encodeChunk(s *bpeScratch, chunk string, out []int) []int {
	if len(chunk) == 1 {
		return append(out, int(t.byteID[chunk[0]]))
	}
	if t.opt.IgnoreMerges {
		if id, ok := t.rawID[chunk]; ok {
			return append(out, int(id))
		}
	}
	syms := s.syms[:0]
	for i := 0; i < len(chunk); i++ {
		syms = append(syms, bpeSym{id: t.byteID[chunk[i]], prev: int32(i - 1), next: int32(i + 1)})
	}
	s.syms = syms
	if len(syms) > bpeLinearMax {
		return t.heapMerge(s, out)
	}
	for k := 0; k+1 < len(syms); k++ {
		syms[k].pair, syms[k].rank = t.pairOf(syms[k].id, syms[k+1].id)
	}
	syms[len(syms)-1].pair = -1
	for {
		best := -1
		var rank int32
		for k := 0; k+1 < len(syms); k++ {
			if syms[k].pair >= 0 && (best < 0 || syms[k].rank < rank) {
				best, rank = k, syms[k].rank
			}
		}
		if best < 0 {
			break
		}
		syms[best].id = syms[best].pair
		syms = append(syms[:best+1], syms[best+2:]...)
		syms[best].pair = -1
		if best+1 < len(syms) {
			syms[best].pair, syms[best].rank = t.pairOf(syms[best].id, syms[best+1].id)
		}
		if best > 0 {
			syms[best-1].pair, syms[best-1].rank = t.pairOf(syms[best-1].id, syms[best].id)
		}
	}
	for _, sym := range syms {
		out = append(out, int(sym.id))
	}
	return out
}

// pairOf returns the merge of tokens a and b and its rank; -1 if none.
func (t *BPE) pairOf(a, b int32) (int32, int32) {
	id := t.pairs.get(a, b)
	if id < 0 {
		return -1, 0
	}
	return id, t.rank[id]
}

// heapMerge merges the symbols of a long chunk with a priority queue of
// candidate merges, skipping stale ones, and appends their ids.
func (t *BPE) heapMerge(s *bpeScratch, out []int) []int {
	syms := s.syms
	syms[len(syms)-1].next = -1
	h := s.heap[:0]
	push := func(l, r int32) {
		if l < 0 || r < 0 {
			return
		}
		id, rank := t.pairOf(syms[l].id, syms[r].id)
		if id < 0 {
			return
		}
		h = append(h, bpeMerge{rank: rank, left: l, right: r, a: syms[l].id, b: syms[r].id, id: id})
		for i := len(h) - 1; i > 0; {
			up := (i - 1) / 2
			if !h[i].before(&h[up]) {
				break
			}
			h[i], h[up] = h[up], h[i]
			i = up
		}
	}
	pop := func() bpeMerge {
		top := h[0]
		n := len(h) - 1
		h[0] = h[n]
		h = h[:n]
		for i := 0; ; {
			c := 2*i + 1
			if c >= n {
				break
			}
			if r := c + 1; r < n && h[r].before(&h[c]) {
				c = r
			}
			if !h[c].before(&h[i]) {
				break
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
		return top
	}
	for i := 0; i+1 < len(syms); i++ {
		push(int32(i), int32(i+1))
	}
	for len(h) > 0 {
		m := pop()
		l, r := &syms[m.left], &syms[m.right]
		if l.id != m.a || r.id != m.b || l.next != m.right || l.id < 0 || r.id < 0 {
			continue // stale: a side has merged since the pair was pushed
		}
		l.id = m.id
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = m.left
		}
		r.id = -1
		push(l.prev, m.left)
		push(m.left, l.next)
	}
	s.heap = h
	for i := int32(0); i >= 0; i = syms[i].next {
		out = append(out, int(syms[i].id))
	}
	return out
}

// Decode returns the bytes the ids stand for, concatenated: the exact text
// Encode was given (added tokens read as their content). Ids outside the
// vocabulary are skipped.
func (t *BPE) Decode(ids []int) string {
	n := 0
	for _, id := range ids {
		if id >= 0 && id < len(t.raw) {
			n += len(t.raw[id])
		}
	}
	var b strings.Builder
	b.Grow(n)
	for _, id := range ids {
		if id >= 0 && id < len(t.raw) {
			b.WriteString(t.raw[id])
		}
	}
	return b.String()
}

// DecodePiece returns the bytes of token id (prev does not matter for
// byte-level BPE); nil outside the vocabulary. A token may hold part of a
// multi-byte character.
func (t *BPE) DecodePiece(prev, id int) []byte {
	if id < 0 || id >= len(t.raw) {
		return nil
	}
	return []byte(t.raw[id])
}

var _ Tokenizer = (*BPE)(nil)
