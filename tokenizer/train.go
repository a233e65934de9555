package tokenizer

import (
	"bufio"
	"container/heap"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// TrainOptions set how Train learns a SentencePiece BPE vocabulary. The
// zero value of each field means the default given; the defaults are the
// settings of Meta's LLaMA tokenizer (identity normalisation, dummy prefix,
// whitespace kept, digits split, whitespace-only pieces allowed).
type TrainOptions struct {
	// VocabSize is the number of pieces of the result, meta pieces
	// (<unk>, <s>, </s>, user symbols, byte pieces) included. Required.
	VocabSize int
	// CharacterCoverage is the share of the characters of the text (by
	// count) that become pieces; rarer characters are left to byte
	// fallback or <unk>. Default 0.9995, spm_train's (LLaMA used 0.99995).
	CharacterCoverage float64
	// ByteFallback adds the 256 byte pieces <0x00>…<0xFF> after the meta
	// pieces, so no text ever needs <unk>.
	ByteFallback bool
	// UserSymbols are pieces always matched whole (TypeUserDefined), placed
	// after <unk>, <s>, </s>; the text never merges across them.
	UserSymbols []string
	// MaxPieceLength is the longest piece in characters; default 16.
	MaxPieceLength int
	// NoSplitDigits lets digits merge with each other (default: every
	// digit is its own piece, as in LLaMA).
	NoSplitDigits bool
	// RemoveExtraWhitespaces drops leading and trailing spaces and
	// collapses runs (default off, as in LLaMA).
	RemoveExtraWhitespaces bool
}

// TrainStats reports what Train saw and made.
type TrainStats struct {
	Lines, Words  int // non-empty lines read; distinct words
	Chars         int64
	RequiredChars int // characters kept as pieces (character coverage)
	Merges        int // pieces made by merging
}

// trainUnk stands for a character below the coverage in the training text: it
// never joins a piece.
const trainUnk = int32(-1)

// Train learns a SentencePiece BPE vocabulary from lines of text, each line
// one sentence, and returns it as an SPM (write it with MarshalModelProto:
// sentencepiece's spm_encode loads it and encodes as herd does). It follows
// sentencepiece's bpe_model_trainer: lines are normalised as the model will
// normalise text ('▁' for spaces, a dummy prefix), cut into words before
// each '▁' that follows another character, counted; the characters that
// cover CharacterCoverage of the text are the alphabet; then the most
// frequent adjacent pair of symbols whose concatenation is a valid piece is
// merged, again and again (ties: the shorter piece, then the smaller text).
// A valid piece has at most MaxPieceLength characters, '▁' only at its start
// (or only '▁'), one Unicode script (Hiragana and Katakana count as Han,
// combining marks take their base's), and a digit only alone unless
// NoSplitDigits. Scores are minus the merge order; the alphabet follows,
// most frequent first. Unlike spm_train, lines of any length are used, and
// the most frequent pair is found exactly each step (sentencepiece 0.1.97
// searches only the top 5% of pairs, refreshed every 100 merges).
func Train(r io.Reader, opt TrainOptions) (*SPM, TrainStats, error) {
	var st TrainStats
	if opt.CharacterCoverage == 0 {
		opt.CharacterCoverage = 0.9995
	}
	if opt.MaxPieceLength == 0 {
		opt.MaxPieceLength = 16
	}
	if opt.CharacterCoverage < 0 || opt.CharacterCoverage > 1 {
		return nil, st, fmt.Errorf("train: character coverage %g outside 0..1", opt.CharacterCoverage)
	}
	if opt.MaxPieceLength < 1 {
		return nil, st, fmt.Errorf("train: max piece length %d < 1", opt.MaxPieceLength)
	}
	meta := []string{"<unk>", "<s>", "</s>"}
	metaType := []Type{TypeUnknown, TypeControl, TypeControl}
	seen := map[string]bool{"<unk>": true, "<s>": true, "</s>": true}
	for _, u := range opt.UserSymbols {
		if u == "" || seen[u] {
			return nil, st, fmt.Errorf("train: user symbol %q is empty or given twice (or is <unk>, <s>, </s>)", u)
		}
		seen[u] = true
		meta, metaType = append(meta, u), append(metaType, TypeUserDefined)
	}
	if opt.ByteFallback {
		for b := range 256 {
			p := fmt.Sprintf("<0x%02X>", b)
			if seen[p] {
				return nil, st, fmt.Errorf("train: user symbol %q clashes with a byte piece", p)
			}
			meta, metaType = append(meta, p), append(metaType, TypeByte)
		}
	}
	if opt.VocabSize <= len(meta) {
		return nil, st, fmt.Errorf("train: vocabulary size %d leaves no room after %d meta pieces", opt.VocabSize, len(meta))
	}

	words, err := countWords(r, opt, &st)
	if err != nil {
		return nil, st, err
	}
	tr, err := newTrainer(words, opt)
	if err != nil {
		return nil, st, err
	}
	st.Words, st.Chars = len(words), tr.allChars
	required := tr.alphabet(opt.CharacterCoverage)
	st.RequiredChars = len(required)
	budget := opt.VocabSize - len(meta) - len(required)
	if budget < 0 {
		return nil, st, fmt.Errorf("train: vocabulary size %d is smaller than the %d meta pieces and %d characters; raise it or lower the character coverage", opt.VocabSize, len(meta), len(required))
	}
	merged := tr.merge(budget)
	st.Merges = len(merged)
	if len(merged) < budget {
		return nil, st, fmt.Errorf("train: the text yields only %d pieces, %d short of vocabulary size %d; lower --vocab-size to at most %d",
			len(meta)+len(required)+len(merged), budget-len(merged), opt.VocabSize, len(meta)+len(required)+len(merged))
	}
	pieces := append([]string(nil), meta...)
	types := append([]Type(nil), metaType...)
	scores := make([]float32, len(meta), opt.VocabSize)
	for i, p := range append(merged, required...) {
		pieces, types, scores = append(pieces, p), append(types, TypeNormal), append(scores, -float32(i))
	}
	spmOpt := SPMOptions{BOS: 1, EOS: 2, UNK: 0, AddDummyPrefix: true, ByteFallback: opt.ByteFallback, RemoveExtraWhitespaces: opt.RemoveExtraWhitespaces}
	tk, err := NewSPM(pieces, scores, types, spmOpt)
	if err != nil {
		return nil, st, fmt.Errorf("train: %w", err)
	}
	return tk, st, nil
}

// countWords reads lines, normalises them and counts their words. A word
// starts at the first character and at each '▁' that follows a character
// other than '▁'; user symbols are cut out and end a word.
func countWords(r io.Reader, opt TrainOptions, st *TrainStats) (map[string]int64, error) {
	words := make(map[string]int64)
	var user [256][]string
	for _, u := range opt.UserSymbols {
		user[u[0]] = append(user[u[0]], u)
	}
	for b := range user {
		sort.SliceStable(user[b], func(i, j int) bool { return len(user[b][i]) > len(user[b][j]) })
	}
	br := bufio.NewReaderSize(r, 1<<20)
	var buf []byte
	for {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("train: reading text: %w", err)
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line != "" {
			st.Lines++
			// Each stretch between user symbols is a sentence of its own.
			start := 0
			for i := 0; i < len(line); i++ {
				if n := matchUser(&user, line[i:]); n > 0 {
					buf = addWords(words, trainNormalize(buf[:0], line[start:i], start == 0, opt.RemoveExtraWhitespaces), buf)
					i += n - 1
					start = i + 1
				}
			}
			buf = addWords(words, trainNormalize(buf[:0], line[start:], start == 0, opt.RemoveExtraWhitespaces), buf)
		}
		if err == io.EOF {
			break
		}
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("train: no text")
	}
	return words, nil
}

// addWords counts the words of a normalised sentence.
func addWords(words map[string]int64, s []byte, buf []byte) []byte {
	start := 0
	prevSpace := true
	for i := 0; i < len(s); {
		n := min(charLen(s[i]), len(s)-i)
		space := n == len(spaceSymbol) && string(s[i:i+n]) == spaceSymbol
		if space && !prevSpace && i > start {
			words[string(s[start:i])]++
			start = i
		}
		prevSpace = space
		i += n
	}
	if start < len(s) {
		words[string(s[start:])]++
	}
	return s
}

// trainNormalize appends text as an identity SentencePiece model sees it:
// each invalid UTF-8 byte as U+FFFD, spaces as '▁', a '▁' in front when
// first (the dummy prefix), and with removeExtra leading, trailing and
// repeated spaces dropped.
func trainNormalize(dst []byte, text string, first, removeExtra bool) []byte {
	if removeExtra {
		text = strings.Join(strings.FieldsFunc(text, func(r rune) bool { return r == ' ' }), " ")
	}
	if text == "" {
		return dst
	}
	if first {
		dst = append(dst, spaceSymbol...)
	}
	return appendEscaped(dst, text)
}

// trainer holds the words being merged: symbols of all words in one array
// linked within each word, and the candidate pairs.
type trainer struct {
	opt      TrainOptions
	sym      []int32 // symbol at each position; -2 once merged away
	prev     []int32
	next     []int32
	wordOf   []int32
	freq     []int64 // by word
	text     []string
	nchars   []int32
	charSym  map[rune]int32
	chars    map[rune]int64 // character counts, weighted by word frequency
	allChars int64

	pairs   map[uint64]int32
	stats   []pairStat
	queue   pairQueue
	touched []int32
	scripts map[rune]int
}

type pairStat struct {
	a, b    int32
	count   int64
	pos     []int32
	invalid bool // the concatenation is not a valid piece
	done    bool // merged, or a duplicate of a merged piece
}

func newTrainer(words map[string]int64, opt TrainOptions) (*trainer, error) {
	t := &trainer{opt: opt, chars: make(map[rune]int64), charSym: make(map[rune]int32), pairs: make(map[uint64]int32), scripts: make(map[rune]int)}
	t.queue.t = t
	keys := make([]string, 0, len(words))
	for w := range words {
		keys = append(keys, w)
	}
	sort.Strings(keys) // deterministic positions
	for k, w := range keys {
		f := words[w]
		t.freq = append(t.freq, f)
		for _, c := range w {
			t.chars[c] += f
			t.allChars += f
			t.sym = append(t.sym, c) // characters for now, symbols after alphabet
			t.wordOf = append(t.wordOf, int32(k))
		}
		if len(t.sym) > math.MaxInt32-1 {
			return nil, fmt.Errorf("train: more than %d distinct characters of words; train on less text", math.MaxInt32-1)
		}
	}
	return t, nil
}

// alphabet picks the characters that cover share of the text, most
// frequent first (ties: smaller code point), makes them the first
// symbols, links the words and counts all pairs. It returns them in order.
func (t *trainer) alphabet(share float64) []string {
	type cc struct {
		c rune
		n int64
	}
	all := make([]cc, 0, len(t.chars))
	for c, n := range t.chars {
		all = append(all, cc{c, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].c < all[j].c })
	var out []string
	var acc int64
	for _, x := range all {
		if float64(acc)/float64(t.allChars) >= share {
			break
		}
		acc += x.n
		t.charSym[x.c] = int32(len(t.text))
		t.text = append(t.text, string(x.c))
		t.nchars = append(t.nchars, 1)
		out = append(out, string(x.c))
	}
	n := len(t.sym)
	t.prev, t.next = make([]int32, n), make([]int32, n)
	for i := range n {
		id, ok := t.charSym[t.sym[i]]
		if !ok {
			id = trainUnk
		}
		t.sym[i] = id
		t.prev[i], t.next[i] = int32(i-1), int32(i+1)
		if i == 0 || t.wordOf[i-1] != t.wordOf[i] {
			t.prev[i] = -1
		}
		if i == n-1 || t.wordOf[i+1] != t.wordOf[i] {
			t.next[i] = -1
		}
	}
	for i := range n {
		if j := t.next[i]; j >= 0 {
			t.add(int32(i), t.freq[t.wordOf[i]])
		}
	}
	for _, p := range t.touched {
		st := &t.stats[p]
		t.queue.items = append(t.queue.items, queued{count: st.count, p: p, n: t.nchars[st.a] + t.nchars[st.b]})
	}
	heap.Init(&t.queue)
	t.touched = t.touched[:0]
	return out
}

// pair returns the stat of the pair of symbols a, b, making it when make is
// set; -1 when there is none or it is not a valid piece.
func (t *trainer) pair(a, b int32, make bool) int32 {
	if a < 0 || b < 0 {
		return -1
	}
	key := uint64(a)<<32 | uint64(uint32(b))
	if p, ok := t.pairs[key]; ok {
		if t.stats[p].invalid {
			return -1
		}
		return p
	}
	if !make {
		return -1
	}
	p := int32(len(t.stats))
	t.pairs[key] = p
	t.stats = append(t.stats, pairStat{a: a, b: b, invalid: !t.valid(t.text[a] + t.text[b])})
	if t.stats[p].invalid {
		return -1
	}
	return p
}

// add counts the pair that starts at position i with weight f.
func (t *trainer) add(i int32, f int64) {
	p := t.pair(t.sym[i], t.sym[t.next[i]], true)
	if p < 0 {
		return
	}
	s := &t.stats[p]
	if s.done {
		return
	}
	if len(t.touched) == 0 || t.touched[len(t.touched)-1] != p {
		t.touched = append(t.touched, p)
	}
	s.count += f
	s.pos = append(s.pos, i)
}

// remove uncounts the pair that starts at position i.
func (t *trainer) remove(i int32, f int64) {
	p := t.pair(t.sym[i], t.sym[t.next[i]], false)
	if p >= 0 && !t.stats[p].done {
		t.stats[p].count -= f
	}
}

// push queues pair p with its current count.
func (t *trainer) push(p int32) {
	s := &t.stats[p]
	heap.Push(&t.queue, queued{count: s.count, p: p, n: t.nchars[s.a] + t.nchars[s.b]})
}

// merge makes up to n pieces and returns them in order.
func (t *trainer) merge(n int) []string {
	made := make(map[string]bool)
	var out []string
	for len(out) < n && t.queue.Len() > 0 {
		q := heap.Pop(&t.queue).(queued)
		s := &t.stats[q.p]
		if s.done || s.count <= 0 {
			continue
		}
		if q.count != s.count {
			t.push(q.p)
			continue
		}
		s.done = true
		piece := t.text[s.a] + t.text[s.b]
		if made[piece] {
			continue // the same text by another path ("aa"+"a", "a"+"aa"): spm keeps the first
		}
		made[piece] = true
		out = append(out, piece)
		c := int32(len(t.text))
		t.text = append(t.text, piece)
		t.nchars = append(t.nchars, t.nchars[s.a]+t.nchars[s.b])
		pos := s.pos
		s.pos = nil
		sort.Slice(pos, func(i, j int) bool { return pos[i] < pos[j] })
		for _, l := range pos {
			r := t.next[l]
			if t.sym[l] != s.a || r < 0 || t.sym[r] != s.b {
				continue // stale: the pair has changed since it was recorded
			}
			f := t.freq[t.wordOf[l]]
			pl, nr := t.prev[l], t.next[r]
			if pl >= 0 {
				t.remove(pl, f)
			}
			if nr >= 0 {
				t.remove(r, f)
			}
			t.sym[l] = c
			t.next[l] = nr
			if nr >= 0 {
				t.prev[nr] = l
			}
			t.sym[r] = -2
			if pl >= 0 {
				t.add(pl, f)
			}
			if nr >= 0 {
				t.add(l, f)
			}
		}
		s.count = 0
		for _, p := range t.touched {
			if !t.stats[p].done && t.stats[p].count > 0 {
				t.push(p)
			}
		}
		t.touched = t.touched[:0]
	}
	return out
}

// valid is sentencepiece's IsValidSentencePiece for the options herd
// trains with (split by whitespace, by script and by number).
func (t *trainer) valid(piece string) bool {
	n := utf8.RuneCountInString(piece)
	if n > t.opt.MaxPieceLength {
		return false
	}
	allSpace := strings.Trim(piece, spaceSymbol) == ""
	const anyScript = -1
	prev := anyScript
	pos := 0
	for _, c := range piece {
		switch {
		case c == 0 || c == ' ':
			return false
		case string(c) == spaceSymbol:
			if !allSpace && pos > 0 {
				return false
			}
		default:
			s := t.script(c)
			if s == scriptInherited {
				s = prev
			}
			if unicode.Is(unicode.Nd, c) && !t.opt.NoSplitDigits && n > 1 {
				return false
			}
			if s != anyScript && prev != anyScript && s != prev {
				return false
			}
			prev = s
		}
		pos++
	}
	return true
}

// Script numbers for valid: Han (with Hiragana and Katakana), Inherited,
// and the rest by their index in a sorted list of unicode.Scripts.
const (
	scriptHan       = 1 << 20
	scriptInherited = 1<<20 + 1
)

var scriptNames = func() []string {
	var names []string
	for name := range unicode.Scripts {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}()

func (t *trainer) script(c rune) int {
	if s, ok := t.scripts[c]; ok {
		return s
	}
	s := len(scriptNames) // characters of no script (unassigned) are Common-like
	switch {
	case unicode.In(c, unicode.Han, unicode.Hiragana, unicode.Katakana) || c == 0x30FC:
		s = scriptHan
	case unicode.Is(unicode.Inherited, c):
		s = scriptInherited
	default:
		for i, name := range scriptNames {
			if unicode.Is(unicode.Scripts[name], c) {
				s = i
				break
			}
		}
	}
	t.scripts[c] = s
	return s
}

// queued is an entry of the merge queue: a pair, its count when pushed and
// the length of its piece in characters.
type queued struct {
	count int64
	p, n  int32
}

// pairQueue orders pairs as sentencepiece picks them: most frequent, then
// shorter (in characters), then the smaller text.
type pairQueue struct {
	items []queued
	t     *trainer
}

func (q *pairQueue) Len() int { return len(q.items) }
func (q *pairQueue) Less(i, j int) bool {
	a, b := &q.items[i], &q.items[j]
	if a.count != b.count {
		return a.count > b.count
	}
	if a.n != b.n {
		return a.n < b.n
	}
	sa, sb := &q.t.stats[a.p], &q.t.stats[b.p]
	return lessConcat(q.t.text[sa.a], q.t.text[sa.b], q.t.text[sb.a], q.t.text[sb.b])
}

// lessConcat reports whether a1+a2 < b1+b2 without building the strings.
func lessConcat(a1, a2, b1, b2 string) bool {
	for {
		if a1 == "" {
			a1, a2 = a2, ""
		}
		if b1 == "" {
			b1, b2 = b2, ""
		}
		if a1 == "" || b1 == "" {
			return a1 == "" && b1 != ""
		}
		n := min(len(a1), len(b1))
		if a1[:n] != b1[:n] {
			return a1[:n] < b1[:n]
		}
		a1, b1 = a1[n:], b1[n:]
	}
}
func (q *pairQueue) Swap(i, j int) { q.items[i], q.items[j] = q.items[j], q.items[i] }
func (q *pairQueue) Push(x any)    { q.items = append(q.items, x.(queued)) }
func (q *pairQueue) Pop() any {
	x := q.items[len(q.items)-1]
	q.items = q.items[:len(q.items)-1]
	return x
}
