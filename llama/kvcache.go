package llama

import (
	"fmt"
	"strings"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/kernels"
	"github.com/herd-llm/herd/tensor"
)

// KVCache holds the keys and values of every position a sequence has
// processed, per layer, for incremental decoding.
//
// Its contract:
//   - Positions 0..Len-1 are filled; Cap is the most it will ever hold (a
//     forward pass that would pass Cap is an error, never a reallocation
//     beyond it).
//   - Memory follows the positions held, not Cap: a new cache holds room
//     for min(Cap, kvInitial) positions, and a forward pass that needs more
//     grows it (at least doubling, capped at Cap), copying what it holds.
//     A cache claimed for a file's context of 2^31 positions therefore
//     costs only what its sequence fills. Bytes says what it holds now.
//   - Each layer's keys (and values) stay one contiguous slice of Len rows
//     of KVDim, so attention reads them in one sweep; growth never changes
//     a value, so decoding gives the same numbers however the cache grew.
//   - Values are rounded once, when they enter the cache (to F16 unless
//     the cache is F32), so a batched and an incremental pass read the same
//     keys.
//   - Lowering Len forgets positions (they are overwritten by the next
//     pass); raising it is only meaningful over positions already written.
//
// A cache belongs to one sequence at a time and is not safe for concurrent
// use.
type KVCache struct {
	DType    tensor.DType // tensor.F16 or tensor.F32
	K, V     [][]float32  // F32: [layer][room·KVDim]
	K16, V16 [][]uint16   // F16: [layer][room·KVDim]
	Len      int          // positions filled
	Cap      int          // positions the cache can hold at most
	kvd      int          // values per position and layer (the model's KVDim)
	room     int          // positions allocated
}

// kvInitial is the room a new cache starts with (when Cap is larger):
// 256 positions, a few hundred kilobytes for a TinyLlama-sized model.
const kvInitial = 256

// NewKVCache returns a cache for up to ctx positions, F16 unless m.KVF32.
func (m *Model) NewKVCache(ctx int) *KVCache {
	dt := tensor.F16
	if m.KVF32 {
		dt = tensor.F32
	}
	return m.NewKVCacheType(ctx, dt)
}

// NewKVCacheType returns a cache for up to ctx positions holding dt
// (tensor.F16 or tensor.F32; anything else panics).
func (m *Model) NewKVCacheType(ctx int, dt tensor.DType) *KVCache {
	if dt != tensor.F16 && dt != tensor.F32 {
		panic(fmt.Sprintf("llama: no KV cache of %s", dt))
	}
	n := m.Config.NLayers
	c := &KVCache{DType: dt, Cap: max(ctx, 0), kvd: m.Config.KVDim()}
	if dt == tensor.F32 {
		c.K, c.V = make([][]float32, n), make([][]float32, n)
	} else {
		c.K16, c.V16 = make([][]uint16, n), make([][]uint16, n)
	}
	c.resize(min(c.Cap, kvInitial))
	return c
}

// grow makes room for n positions (n ≤ Cap, which the forward pass checks
// first), at least doubling the room so that a sequence decoded token by
// token is copied O(log n) times.
func (c *KVCache) grow(n int) {
	if n <= c.room {
		return
	}
	c.resize(min(c.Cap, max(n, 2*c.room)))
}

// resize reallocates every layer's keys and values for room positions,
// keeping the positions held.
func (c *KVCache) resize(room int) {
	sz := room * c.kvd
	for i := range c.K {
		c.K[i], c.V[i] = regrow(c.K[i], sz), regrow(c.V[i], sz)
	}
	for i := range c.K16 {
		c.K16[i], c.V16[i] = regrow(c.K16[i], sz), regrow(c.V16[i], sz)
	}
	c.room = room
}

func regrow[T float32 | uint16](old []T, n int) []T {
	x := make([]T, n)
	copy(x, old)
	return x
}

// ParseKVType reads a KV cache type as the command line gives it: "f16" or
// "f32".
func ParseKVType(s string) (tensor.DType, error) {
	switch strings.ToLower(s) {
	case "f16":
		return tensor.F16, nil
	case "f32":
		return tensor.F32, nil
	}
	return 0, fmt.Errorf("KV cache type %q: want f16 or f32", s)
}

// KVCacheBytes is the memory a cache of ctx positions of dt takes when full.
func (c Config) KVCacheBytes(ctx int, dt tensor.DType) int64 {
	return 2 * int64(c.NLayers) * int64(ctx) * int64(c.KVDim()) * int64(dt.BlockBytes())
}

// Bytes is the memory the cache holds now (its room, not its Cap).
func (c *KVCache) Bytes() int64 {
	per := int64(4)
	if c.DType == tensor.F16 {
		per = 2
	}
	return 2 * int64(c.layers()) * int64(c.room) * int64(c.kvd) * per
}

func (c *KVCache) layers() int { return max(len(c.K), len(c.K16)) }

// store writes rows of keys and values of layer li at position pos (the
// room was made by grow) and returns the span that attends to the whole
// cache.
func (c *KVCache) store(li, pos int, k, v []float32, s autograd.Span, kvd int) autograd.Span {
	if c.DType == tensor.F16 {
		kc, vc := c.K16[li], c.V16[li]
		kernels.F32ToF16(kc[pos*kvd:pos*kvd+len(k)], k)
		kernels.F32ToF16(vc[pos*kvd:pos*kvd+len(v)], v)
		s.K16, s.V16 = kc, vc
		return s
	}
	kc, vc := c.K[li], c.V[li]
	copy(kc[pos*kvd:], k)
	copy(vc[pos*kvd:], v)
	s.K, s.V = kc, vc
	return s
}

// CopyPrefix makes c hold the first n positions of src (a cache of the
// same model and dtype), growing c's room as needed: a shared prompt
// computed once can seed several caches.
func (c *KVCache) CopyPrefix(src *KVCache, n int) error {
	switch {
	case n < 0 || n > src.Len:
		return fmt.Errorf("kv cache: copy of %d positions from a cache holding %d", n, src.Len)
	case n > c.Cap:
		return fmt.Errorf("kv cache: copy of %d positions into a cache of at most %d", n, c.Cap)
	case c.DType != src.DType || c.kvd != src.kvd || c.layers() != src.layers():
		return fmt.Errorf("kv cache: copy between caches of different models or types")
	}
	c.grow(n)
	sz := n * c.kvd
	for l := range src.K16 {
		copy(c.K16[l][:sz], src.K16[l][:sz])
		copy(c.V16[l][:sz], src.V16[l][:sz])
	}
	for l := range src.K {
		copy(c.K[l][:sz], src.K[l][:sz])
		copy(c.V[l][:sz], src.V[l][:sz])
	}
	c.Len = n
	return nil
}
