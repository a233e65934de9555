// Package assets embeds the default model herd runs when given none:
// stories260K, a 260K-parameter LLaMA trained on TinyStories, and its
// 512-piece tokenizer, both from Andrej Karpathy's tinyllamas (MIT licence;
// see README.md in this directory).
package assets

import _ "embed"

//go:embed stories260K.bin
var stories260K []byte

//go:embed tok512.bin
var tok512 []byte

// Stories260K returns a fresh, 4-byte-aligned copy of the llama2.c
// checkpoint stories260K.bin (legacy header, float32, shared classifier).
func Stories260K() []byte { return aligned(stories260K) }

// Tok512 returns a copy of the llama2.c tokenizer.bin for stories260K.
func Tok512() []byte { return aligned(tok512) }

// aligned copies b to the heap, where Go's allocator aligns a block of this
// size to at least 8 bytes, so float32 weights can be viewed in place.
func aligned(b []byte) []byte { return append([]byte(nil), b...) }
