package tokenizer

// pairTable maps a pair of adjacent piece ids (left, right) to the id of the
// piece spelled by their concatenation: BPE's merge rules as an
// open-addressing hash table keyed by integers, which is several times
// faster to probe than a map keyed by the concatenated text.
type pairTable struct {
	keys  []uint64 // left<<32 | right, or emptyKey
	vals  []int32
	shift uint // 64 - log2(len(keys))
}

const emptyKey = ^uint64(0)

func newPairTable(n int) pairTable {
	size, bits := 16, uint(4)
	for size < 2*n {
		size, bits = size*2, bits+1
	}
	t := pairTable{keys: make([]uint64, size), vals: make([]int32, size), shift: 64 - bits}
	for i := range t.keys {
		t.keys[i] = emptyKey
	}
	return t
}

func (t *pairTable) slot(key uint64) uint64 {
	return (key * 0x9E3779B97F4A7C15) >> t.shift
}

// put records left+right = id; the first rule for a pair wins.
func (t *pairTable) put(left, right, id int32) {
	key := uint64(left)<<32 | uint64(uint32(right))
	mask := uint64(len(t.keys) - 1)
	for i := t.slot(key); ; i = (i + 1) & mask {
		switch t.keys[i] {
		case emptyKey:
			t.keys[i], t.vals[i] = key, id
			return
		case key:
			return
		}
	}
}

// get returns the id of left+right, or -1.
func (t *pairTable) get(left, right int32) int32 {
	key := uint64(left)<<32 | uint64(uint32(right))
	mask := uint64(len(t.keys) - 1)
	for i := t.slot(key); ; i = (i + 1) & mask {
		switch t.keys[i] {
		case key:
			return t.vals[i]
		case emptyKey:
			return -1
		}
	}
}
