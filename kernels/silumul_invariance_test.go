package kernels

import (
	"math/rand/v2"
	"testing"
)

// TestSiLUMulPositionInvariant: SiLUMul over a batch of rows gives each row
// exactly what it gets alone, whatever the row width (stories260K's
// feed-forward is 172 wide, not a multiple of the vector width).
func TestSiLUMulPositionInvariant(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, width := range []int{1, 7, 8, 13, 172} {
		const rows = 5
		gate, up := make([]float32, rows*width), make([]float32, rows*width)
		for i := range gate {
			gate[i], up[i] = float32(r.NormFloat64()*3), float32(r.NormFloat64())
		}
		all := make([]float32, rows*width)
		SiLUMul(all, gate, up)
		for row := range rows {
			one := make([]float32, width)
			SiLUMul(one, gate[row*width:(row+1)*width], up[row*width:(row+1)*width])
			for i, v := range one {
				if all[row*width+i] != v {
					t.Fatalf("width %d row %d element %d: %g in the batch, %g alone", width, row, i, all[row*width+i], v)
				}
			}
		}
	}
}
