package data

import (
	"crypto/sha256"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Clean sets the document filters of a preparation.
type Clean struct {
	// Normalize is the Unicode normal form applied to every document: "nfc"
	// (the default), "nfkc" (also folds compatibility characters such as
	// full-width letters and ligatures) or "none".
	Normalize string `yaml:"normalize,omitempty"`
	// MinChars drops documents shorter than this many characters (after
	// cleaning; at least 1, so empty documents always go).
	MinChars int `yaml:"min_chars,omitempty"`
	// MinAlphaFraction drops documents whose share of letters among their
	// non-space characters is below it (0: off). Catches tables of numbers,
	// boilerplate and binary junk.
	MinAlphaFraction float64 `yaml:"min_alpha_fraction,omitempty"`
	// MaxDupLineFraction drops documents in which more than this share of
	// the non-empty lines repeat an earlier line of the same document (0:
	// off), Gopher's repetition filter.
	MaxDupLineFraction float64 `yaml:"max_dup_line_fraction,omitempty"`
	// Scripts keeps only documents in which at least MinScriptFraction of
	// the letters belong to one of these Unicode scripts (names as in
	// Go's unicode.Scripts: Latin, Han, Cyrillic, Greek, Arabic, Hiragana,
	// Katakana, Hangul...); empty keeps any. A charset/language filter.
	Scripts           []string `yaml:"scripts,omitempty"`
	MinScriptFraction float64  `yaml:"min_script_fraction,omitempty"`
	// NoDedup turns off exact deduplication (by a hash of the normalized
	// document, case and whitespace folded).
	NoDedup bool `yaml:"no_dedup,omitempty"`
	// NearDedup is the Jaccard similarity of word shingles above which a
	// document is dropped as a near-duplicate of an earlier one, found with
	// MinHash LSH (0: off; 0.8 is usual).
	NearDedup float64 `yaml:"near_dedup,omitempty"`
	// Shingle is the words per shingle for near-dedup (default 5; texts
	// without spaces, such as Chinese, use characters instead of words).
	Shingle int `yaml:"shingle,omitempty"`
	// Perms is the number of MinHash permutations (default 128).
	Perms int `yaml:"perms,omitempty"`
	// MaxDocBytes drops documents (and JSONL rows) longer than this many
	// bytes before they are cleaned or tokenized (0: DefaultMaxDoc,
	// 16 MiB; at most 1 GiB).
	MaxDocBytes int `yaml:"max_doc_bytes,omitempty"`
	// MaxBinaryFraction drops documents in which more than this share of
	// the bytes are NUL, other C0 control characters (tab, newline, form
	// feed and carriage return aside) or not valid UTF-8: binary files
	// that slipped into a corpus (0: the default, 0.1; 1: off; and never
	// fewer than 32 such bytes, so a short text with a stray control
	// character is repaired rather than dropped). Text in a
	// legacy 8-bit encoding has a few invalid bytes per word and is kept,
	// repaired and counted (Stats invalid_utf8).
	MaxBinaryFraction float64 `yaml:"max_binary_fraction,omitempty"`
}

// defaultMaxBinary is the share of binary-looking bytes above which a
// document is dropped, unless Clean.MaxBinaryFraction says otherwise;
// minBinary the fewest such bytes that make a document binary (a short
// text with a stray control character or two is repaired, not dropped).
const (
	defaultMaxBinary = 0.1
	minBinary        = 32
)

// Reasons a document is dropped, as counted in Stats.
const (
	ReasonEmpty    = "empty"
	ReasonShort    = "too_short"
	ReasonAlpha    = "low_alpha"
	ReasonDupLines = "repeated_lines"
	ReasonScript   = "script"
	ReasonExactDup = "exact_duplicate"
	ReasonNearDup  = "near_duplicate"
	ReasonBinary   = "binary"
	ReasonTooLong  = "too_long"
)

const (
	defaultShingle = 5
	defaultPerms   = 128
	normalizeNFC   = "nfc"
	normalizeNFKC  = "nfkc"
	normalizeNone  = "none"
)

func (c *Clean) check() error {
	switch c.Normalize {
	case "", normalizeNFC, normalizeNFKC, normalizeNone:
	default:
		return fmt.Errorf("clean: normalize %q: want nfc, nfkc or none", c.Normalize)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"min_alpha_fraction", c.MinAlphaFraction}, {"max_dup_line_fraction", c.MaxDupLineFraction},
		{"min_script_fraction", c.MinScriptFraction}, {"near_dedup", c.NearDedup}, {"max_binary_fraction", c.MaxBinaryFraction}} {
		if !(f.v >= 0 && f.v <= 1) {
			return fmt.Errorf("clean: %s %g must be between 0 and 1", f.name, f.v)
		}
	}
	for _, s := range c.Scripts {
		if unicode.Scripts[s] == nil {
			return fmt.Errorf("clean: unknown script %q (Unicode script names such as Latin, Han, Cyrillic)", s)
		}
	}
	if c.MaxDocBytes < 0 || c.MaxDocBytes > maxFile {
		return fmt.Errorf("clean: max_doc_bytes %d must be between 0 (the default, %d) and %d", c.MaxDocBytes, DefaultMaxDoc, maxFile)
	}
	if c.MinChars < 0 || c.Shingle < 0 || c.Perms < 0 {
		return fmt.Errorf("clean: min_chars %d, shingle %d and perms %d must not be negative", c.MinChars, c.Shingle, c.Perms)
	}
	return nil
}

// cleanDoc normalizes a document and applies the per-document filters. It
// returns the cleaned text and "" or the reason to drop it.
func (c *Clean) cleanDoc(doc string) (string, string) { return c.clean(doc, defectsOf(doc)) }

// clean is cleanDoc for a document whose defects are counted.
func (c *Clean) clean(doc string, d defects) (string, string) {
	maxBin := c.MaxBinaryFraction
	if maxBin == 0 {
		maxBin = defaultMaxBinary
	}
	if maxBin < 1 && d.binary >= minBinary && float64(d.binary) > maxBin*float64(len(doc)) {
		return "", ReasonBinary
	}
	if !utf8.ValidString(doc) {
		doc = strings.ToValidUTF8(doc, "\uFFFD")
	}
	switch c.Normalize {
	case "", normalizeNFC:
		doc = norm.NFC.String(doc)
	case normalizeNFKC:
		doc = norm.NFKC.String(doc)
	}
	doc = stripControl(doc)
	doc = strings.TrimSpace(doc)
	if doc == "" {
		return "", ReasonEmpty
	}
	if c.MinChars > 0 && utf8.RuneCountInString(doc) < c.MinChars {
		return "", ReasonShort
	}
	if c.MinAlphaFraction > 0 || len(c.Scripts) > 0 {
		var nonSpace, letters, inScript int
		for _, r := range doc {
			if unicode.IsSpace(r) {
				continue
			}
			nonSpace++
			if unicode.IsLetter(r) {
				letters++
				for _, s := range c.Scripts {
					if unicode.Is(unicode.Scripts[s], r) {
						inScript++
						break
					}
				}
			}
		}
		if c.MinAlphaFraction > 0 && float64(letters) < c.MinAlphaFraction*float64(nonSpace) {
			return "", ReasonAlpha
		}
		if len(c.Scripts) > 0 && (letters == 0 || float64(inScript) < c.MinScriptFraction*float64(letters) || inScript == 0) {
			return "", ReasonScript
		}
	}
	if c.MaxDupLineFraction > 0 {
		seen := map[string]bool{}
		var lines, dup int
		for _, l := range strings.Split(doc, "\n") {
			l = strings.TrimSpace(l)
			if l == "" {
				continue
			}
			lines++
			if seen[l] {
				dup++
			}
			seen[l] = true
		}
		if lines > 0 && float64(dup) > c.MaxDupLineFraction*float64(lines) {
			return "", ReasonDupLines
		}
	}
	return doc, ""
}

// defects are the bytes of a raw document that text should not hold.
type defects struct {
	nul     int // NUL bytes
	invalid int // bytes that are not part of a valid UTF-8 sequence
	binary  int // both of those and the other C0 controls but \t \n \f \r
}

// defectsOf counts the defects of doc.
func defectsOf(doc string) defects {
	var d defects
	for i := 0; i < len(doc); {
		b := doc[i]
		if b < utf8.RuneSelf {
			if b == 0 {
				d.nul++
			}
			if b < 0x20 && b != '\t' && b != '\n' && b != '\f' && b != '\r' {
				d.binary++
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(doc[i:])
		if r == utf8.RuneError && n == 1 {
			d.invalid++
			d.binary++
		}
		i += n
	}
	return d
}

// maxDoc is the document size limit in bytes.
func (c *Clean) maxDoc() int {
	if c.MaxDocBytes == 0 {
		return DefaultMaxDoc
	}
	return c.MaxDocBytes
}

// stripControl removes control characters other than tab and newline, and
// turns CR LF and lone CR into LF.
func stripControl(s string) string {
	clean := true
	for _, r := range s {
		if (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r < 0xa0) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range s {
		switch {
		case r == '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				continue
			}
			b.WriteByte('\n')
		case (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r < 0xa0):
			// dropped
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// docKey is the exact-dedup key of a cleaned document: SHA-256 (first 16
// bytes) of its text with case folded and whitespace runs collapsed.
func docKey(doc string) [16]byte {
	var b strings.Builder
	b.Grow(len(doc))
	space := false
	for _, r := range doc {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(unicode.ToLower(r))
	}
	sum := sha256.Sum256([]byte(b.String()))
	var k [16]byte
	copy(k[:], sum[:16])
	return k
}

// mix64 is splitmix64's finalizer: a bijection of 64-bit words that
// scrambles every bit into every other.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// fnv64 is FNV-1a over s.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// minHash is a MinHash signature: for each of perms hash functions
// h_i(x) = mix64(x ⊕ seed_i), the minimum over the document's shingles,
// kept as the top 32 bits. The fraction of equal entries of two signatures
// estimates the Jaccard similarity of their shingle sets.
func minHash(doc string, shingle, perms int) []uint32 {
	units := strings.Fields(strings.ToLower(doc))
	if len(units) < 2*shingle && utf8.RuneCountInString(doc) > 4*len(units) {
		// few spaces (Chinese, Japanese): shingles of characters
		units = units[:0]
		for _, r := range strings.ToLower(doc) {
			if !unicode.IsSpace(r) {
				units = append(units, string(r))
			}
		}
	}
	sig := make([]uint32, perms)
	for i := range sig {
		sig[i] = math.MaxUint32
	}
	n := max(1, len(units)-shingle+1)
	var hs []uint64
	for i := range n {
		h := uint64(14695981039346656037)
		for _, u := range units[i:min(len(units), i+shingle)] {
			h = mix64(h ^ fnv64(u))
		}
		hs = append(hs, h)
	}
	for p := range sig {
		seed := mix64(uint64(p+1) * 0x9e3779b97f4a7c15)
		m := uint64(math.MaxUint64)
		for _, h := range hs {
			m = min(m, mix64(h^seed))
		}
		sig[p] = uint32(m >> 32)
	}
	return sig
}

// lsh is a MinHash LSH index: signatures cut into bands of rows values;
// documents sharing a band are candidates, confirmed by the signature
// estimate of their Jaccard similarity.
type lsh struct {
	threshold float64
	bands     int
	rows      int
	buckets   []map[uint64][]int32 // per band: band hash → kept documents
	sigs      [][]uint32           // signatures of kept documents
}

// lshShape picks bands·rows = perms whose S-curve threshold (1/bands)^(1/rows)
// is closest to t from below (favouring recall; candidates are verified).
func lshShape(perms int, t float64) (bands, rows int) {
	best := math.Inf(1)
	for r := 1; r <= perms; r++ {
		if perms%r != 0 {
			continue
		}
		b := perms / r
		s := math.Pow(1/float64(b), 1/float64(r))
		d := math.Abs(s - 0.9*t)
		if d < best {
			best, bands, rows = d, b, r
		}
	}
	return bands, rows
}

func newLSH(perms int, threshold float64) *lsh {
	b, r := lshShape(perms, threshold)
	l := &lsh{threshold: threshold, bands: b, rows: r, buckets: make([]map[uint64][]int32, b)}
	for i := range l.buckets {
		l.buckets[i] = map[uint64][]int32{}
	}
	return l
}

// bandKeys hashes each band of sig.
func (l *lsh) bandKeys(sig []uint32) []uint64 {
	keys := make([]uint64, l.bands)
	for b := range keys {
		h := uint64(b + 1)
		for _, v := range sig[b*l.rows : (b+1)*l.rows] {
			h = mix64(h ^ uint64(v))
		}
		keys[b] = h
	}
	return keys
}

// add reports whether sig is a near-duplicate of a document already in
// the index; if not, it adds it.
func (l *lsh) add(sig []uint32) bool {
	keys := l.bandKeys(sig)
	for b, k := range keys {
		for _, id := range l.buckets[b][k] {
			if jaccard(sig, l.sigs[id]) >= l.threshold {
				return true
			}
		}
	}
	id := int32(len(l.sigs))
	l.sigs = append(l.sigs, sig)
	for b, k := range keys {
		l.buckets[b][k] = append(l.buckets[b][k], id)
	}
	return false
}

// jaccard estimates the Jaccard similarity of two signatures.
func jaccard(a, b []uint32) float64 {
	eq := 0
	for i := range a {
		if a[i] == b[i] {
			eq++
		}
	}
	return float64(eq) / float64(len(a))
}
