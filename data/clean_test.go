package data

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

func TestCleanDoc(t *testing.T) {
	nfc, nfkc := Clean{}, Clean{Normalize: "nfkc"}
	for _, c := range []struct {
		name    string
		clean   Clean
		in, out string
		reason  string
	}{
		{"nfc composes", nfc, "cafe\u0301", "café", ""},
		{"nfc keeps compatibility forms", nfc, "ｆｕｌｌ ﬁne", "ｆｕｌｌ ﬁne", ""},
		{"nfkc folds them", nfkc, "ｆｕｌｌ ﬁne", "full fine", ""},
		{"controls stripped, CRLF and CR become LF", nfc, "a\x00b\r\nc\rd\x07e\u0085f\tg", "ab\nc\nde" + "f\tg", ""},
		{"invalid UTF-8 replaced", nfc, "a\xffb", "a\uFFFDb", ""},
		{"trimmed", nfc, "  \n hello \n", "hello", ""},
		{"empty", nfc, " \x00\n ", "", ReasonEmpty},
		{"short", Clean{MinChars: 10}, "tiny", "", ReasonShort},
		{"long enough", Clean{MinChars: 4}, "tiny", "tiny", ""},
		{"low alpha", Clean{MinAlphaFraction: 0.5}, "12 34 56 78 a", "", ReasonAlpha},
		{"alpha ok", Clean{MinAlphaFraction: 0.5}, "hello 12", "hello 12", ""},
		{"repeated lines", Clean{MaxDupLineFraction: 0.3}, "buy now\nbuy now\nbuy now\nhello", "", ReasonDupLines},
		{"few repeats", Clean{MaxDupLineFraction: 0.3}, "a\nb\nc\na", "a\nb\nc\na", ""},
		{"script share too low", Clean{Scripts: []string{"Han"}, MinScriptFraction: 0.5}, "红楼梦 is a novel", "红楼梦 is a novel", ReasonScript},
		{"script share met", Clean{Scripts: []string{"Han"}, MinScriptFraction: 0.5}, "红楼梦第一回 a", "红楼梦第一回 a", ""},
		{"script missing", Clean{Scripts: []string{"Han", "Cyrillic"}, MinScriptFraction: 0.5}, "plain English", "", ReasonScript},
	} {
		got, reason := c.clean.cleanDoc(c.in)
		if reason != c.reason || (reason == "" && got != c.out) {
			t.Errorf("%s: cleanDoc(%q) = %q, %q; want %q, %q", c.name, c.in, got, reason, c.out, c.reason)
		}
	}
}

func TestCleanCheck(t *testing.T) {
	for _, c := range []Clean{{Normalize: "nfd"}, {MinAlphaFraction: 2}, {Scripts: []string{"Klingon"}}, {NearDedup: -1}, {MinChars: -1}} {
		if err := c.check(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestDocKey(t *testing.T) {
	if docKey("Hello  World\n") != docKey("hello world") {
		t.Error("case and whitespace change the exact-dedup key")
	}
	if docKey("hello world") == docKey("hello worlds") {
		t.Error("different documents share a key")
	}
}

func words(n, offset int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = fmt.Sprintf("w%d", i+offset)
	}
	return strings.Join(w, " ")
}

func TestMinHashEstimatesJaccard(t *testing.T) {
	// 200 words shifted by 50: shingle sets of 196 with 146 in common,
	// Jaccard 146/246 ≈ 0.59
	a, b := words(200, 0), words(200, 50)
	want := 146.0 / 246.0
	got := jaccard(minHash(a, 5, 256), minHash(b, 5, 256))
	if math.Abs(got-want) > 0.08 {
		t.Errorf("estimated Jaccard %.3f, true %.3f", got, want)
	}
	if jaccard(minHash(a, 5, 128), minHash(a, 5, 128)) != 1 {
		t.Error("a document is not identical to itself")
	}
	// Chinese text without spaces: character shingles
	zh1, zh2 := strings.Repeat("满纸荒唐言一把辛酸泪都云作者痴谁解其中味", 3), strings.Repeat("满纸荒唐言一把辛酸泪都云作者痴谁解其中味", 3)+"矣"
	if j := jaccard(minHash(zh1, 5, 128), minHash(zh2, 5, 128)); j < 0.8 {
		t.Errorf("near-identical Chinese texts: estimated Jaccard %.2f", j)
	}
}

func TestLSHFindsNearDuplicates(t *testing.T) {
	l := newLSH(128, 0.8)
	if l.bands*l.rows != 128 {
		t.Fatalf("%d bands × %d rows", l.bands, l.rows)
	}
	base := words(300, 0)
	if l.add(minHash(base, 5, 128)) {
		t.Fatal("the first document is a duplicate")
	}
	near := strings.Replace(base, "w150", "changed", 1) // Jaccard ≈ 291/301
	if !l.add(minHash(near, 5, 128)) {
		t.Error("a one-word edit was not flagged")
	}
	if l.add(minHash(words(300, 1000), 5, 128)) {
		t.Error("an unrelated document was flagged")
	}
	if l.add(minHash(words(300, 120), 5, 128)) { // overlap 176/424 ≈ 0.42
		t.Error("a document with Jaccard 0.4 was flagged at threshold 0.8")
	}
}
