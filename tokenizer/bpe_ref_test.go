package tokenizer

import "regexp"

// This file is the slow, obviously-correct reference that the byte-level
// BPE goldens come from. It shares no code with bpe.go or pretok.go:
//
//   - splitting runs Go's regexp package (leftmost-first, like the
//     backtracking engines tiktoken and Hugging Face use) alternative by
//     alternative at each position; \s is spelled out as the Unicode
//     White_Space list, and the one look-ahead, \s+(?!\S), is emulated by
//     giving back the last character of a whitespace run that a
//     non-space follows;
//   - merging is tiktoken's rule on raw bytes: while some adjacent pair's
//     concatenation is a token, merge the pair whose token has the lowest
//     rank, the leftmost on ties; a chunk that is itself a token is that
//     token when ignoreMerges is set. Ranks are token ids (true of
//     vocabularies converted from tiktoken and of the synthetic ones the
//     tests build); merge rules are not consulted.

const refWS = `\t\n\v\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}`

var (
	refLlama3 = []*regexp.Regexp{
		regexp.MustCompile(`^(?i:'s|'t|'re|'ve|'m|'ll|'d)`),
		regexp.MustCompile(`^[^\r\n\p{L}\p{N}]?\p{L}+`),
		regexp.MustCompile(`^\p{N}{1,3}`),
		regexp.MustCompile(`^ ?[^` + refWS + `\p{L}\p{N}]+[\r\n]*`),
		regexp.MustCompile(`^[` + refWS + `]*[\r\n]+`),
		nil, // \s+(?!\S)
		regexp.MustCompile(`^[` + refWS + `]+`),
	}
	refGPT2 = []*regexp.Regexp{
		regexp.MustCompile(`^(?:'s|'t|'re|'ve|'m|'ll|'d)`),
		regexp.MustCompile(`^ ?\p{L}+`),
		regexp.MustCompile(`^ ?\p{N}+`),
		regexp.MustCompile(`^ ?[^` + refWS + `\p{L}\p{N}]+`),
		nil, // \s+(?!\S)
		regexp.MustCompile(`^[` + refWS + `]+`),
	}
	refSpaces = regexp.MustCompile(`^[` + refWS + `]+`)
)

// refSplit cuts text into chunks with the alternatives in order.
func refSplit(alts []*regexp.Regexp, text string) []string {
	var out []string
	for len(text) > 0 {
		n := 0
		for _, re := range alts {
			if re == nil {
				m := refSpaces.FindString(text)
				if m == "" {
					continue
				}
				if len(m) < len(text) {
					rs := []rune(m)
					if len(rs) < 2 {
						continue
					}
					m = string(rs[:len(rs)-1])
				}
				n = len(m)
				break
			}
			if m := re.FindString(text); m != "" {
				n = len(m)
				break
			}
		}
		if n == 0 {
			panic("reference split: no alternative matches " + text)
		}
		out = append(out, text[:n])
		text = text[n:]
	}
	return out
}

// refBPE encodes text (without added tokens) with vocab (raw bytes → id).
func refBPE(vocab map[string]int, alts []*regexp.Regexp, ignoreMerges bool, text string) []int {
	var ids []int
	for _, chunk := range refSplit(alts, text) {
		if id, ok := vocab[chunk]; ok && (ignoreMerges || len(chunk) == 1) {
			ids = append(ids, id)
			continue
		}
		parts := make([]string, 0, len(chunk))
		for i := 0; i < len(chunk); i++ {
			parts = append(parts, chunk[i:i+1])
		}
		for {
			best, bestRank := -1, 0
			for i := 0; i+1 < len(parts); i++ {
				if r, ok := vocab[parts[i]+parts[i+1]]; ok && (best < 0 || r < bestRank) {
					best, bestRank = i, r
				}
			}
			if best < 0 {
				break
			}
			parts[best] += parts[best+1]
			parts = append(parts[:best+1], parts[best+2:]...)
		}
		for _, p := range parts {
			ids = append(ids, vocab[p])
		}
	}
	return ids
}
