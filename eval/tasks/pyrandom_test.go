package tasks

import (
	"slices"
	"testing"
)

// TestPyRandomMatchesCPython compares with values printed by CPython 3
// (python3 -c 'import random; r = random.Random(1234); ...').
func TestPyRandomMatchesCPython(t *testing.T) {
	r := newPyRandom(1234)
	var got []uint32
	for range 5 {
		got = append(got, r.uint32())
	}
	if want := []uint32{4150886329, 3342196574, 1892932127, 501869158, 32175636}; !slices.Equal(got, want) {
		t.Errorf("getrandbits(32): %v, CPython %v", got, want)
	}
	cases := []struct {
		seed uint32
		n, k int
		want [][]int
	}{
		{1234, 10, 3, [][]int{{7, 1, 0}, {1, 0, 9}, {1, 5, 3}}},
		{1234, 200, 6, [][]int{{199, 112, 29, 1, 23, 149}, {8, 171, 177, 21, 25, 196}}},
		{1234, 7, 7, [][]int{{6, 3, 0, 4, 5, 2, 1}}},
		{42, 1000, 26, [][]int{{654, 114, 25, 759, 281, 250, 228, 142, 754, 104, 692, 758, 913, 558, 89, 604, 432, 32, 30, 95, 223, 238, 517, 616, 27, 574}}},
	}
	for _, c := range cases {
		r := newPyRandom(c.seed)
		for i, w := range c.want {
			if got := r.sample(c.n, c.k); !slices.Equal(got, w) {
				t.Errorf("Random(%d) draw %d: sample(range(%d), %d) = %v, CPython %v", c.seed, i, c.n, c.k, got, w)
			}
		}
	}
}
