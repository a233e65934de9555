package tasks

import "math"

// pyRandom is Python's random.Random: the Mersenne Twister MT19937 seeded
// as CPython seeds it from an integer (init_by_array over the integer's
// 32-bit words), with getrandbits, _randbelow and sample written after
// CPython's definitions. lm-evaluation-harness draws its few-shot examples
// with random.Random(1234).sample, so the same draws here give the same
// prompts as the harness.
type pyRandom struct {
	mt  [624]uint32
	idx int
}

// newPyRandom is random.Random(seed) for a seed below 2³².
func newPyRandom(seed uint32) *pyRandom {
	r := &pyRandom{}
	r.initByArray([]uint32{seed})
	return r
}

func (r *pyRandom) initGenrand(s uint32) {
	r.mt[0] = s
	for i := 1; i < len(r.mt); i++ {
		r.mt[i] = 1812433253*(r.mt[i-1]^(r.mt[i-1]>>30)) + uint32(i)
	}
	r.idx = len(r.mt)
}

func (r *pyRandom) initByArray(key []uint32) {
	const n = 624
	r.initGenrand(19650218)
	i, j := 1, 0
	for k := max(n, len(key)); k > 0; k-- {
		r.mt[i] = (r.mt[i] ^ ((r.mt[i-1] ^ (r.mt[i-1] >> 30)) * 1664525)) + key[j] + uint32(j)
		i++
		j++
		if i >= n {
			r.mt[0] = r.mt[n-1]
			i = 1
		}
		if j >= len(key) {
			j = 0
		}
	}
	for k := n - 1; k > 0; k-- {
		r.mt[i] = (r.mt[i] ^ ((r.mt[i-1] ^ (r.mt[i-1] >> 30)) * 1566083941)) - uint32(i)
		i++
		if i >= n {
			r.mt[0] = r.mt[n-1]
			i = 1
		}
	}
	r.mt[0] = 0x80000000
}

// uint32 is genrand_uint32: the next tempered output.
func (r *pyRandom) uint32() uint32 {
	const n, m = 624, 397
	if r.idx >= n {
		for k := range n {
			y := r.mt[k]&0x80000000 | r.mt[(k+1)%n]&0x7fffffff
			v := r.mt[(k+m)%n] ^ y>>1
			if y&1 != 0 {
				v ^= 0x9908b0df
			}
			r.mt[k] = v
		}
		r.idx = 0
	}
	y := r.mt[r.idx]
	r.idx++
	y ^= y >> 11
	y ^= y << 7 & 0x9d2c5680
	y ^= y << 15 & 0xefc60000
	y ^= y >> 18
	return y
}

// randBelow is _randbelow_with_getrandbits: a uniform integer in [0, n)
// for 0 < n < 2³², drawn by rejection from getrandbits(n.bit_length()).
func (r *pyRandom) randBelow(n int) int {
	k := 0
	for v := n; v > 0; v >>= 1 {
		k++
	}
	for {
		v := int(r.uint32() >> (32 - k))
		if v < n {
			return v
		}
	}
}

// sample is random.sample(range(n), k): k distinct indices in [0, n), in
// the order CPython draws them (a partial shuffle of a pool for small n, a
// set of rejections otherwise).
func (r *pyRandom) sample(n, k int) []int {
	res := make([]int, k)
	setsize := 21
	if k > 5 {
		setsize += int(math.Pow(4, math.Ceil(math.Log(float64(k*3))/math.Log(4))))
	}
	if n <= setsize {
		pool := make([]int, n)
		for i := range pool {
			pool[i] = i
		}
		for i := range k {
			j := r.randBelow(n - i)
			res[i] = pool[j]
			pool[j] = pool[n-i-1]
		}
		return res
	}
	seen := map[int]bool{}
	for i := range k {
		j := r.randBelow(n)
		for seen[j] {
			j = r.randBelow(n)
		}
		seen[j] = true
		res[i] = j
	}
	return res
}
