package main

// Activation tiles (see kernels/tile.go): per block, eight 32-byte vectors,
// vector l holding quants 4l..4l+3 of each of eight activation rows (four
// bytes a row), then the eight rows' scales as float32 and, for Q4_0,
// their 8·Σq as int32. The tile kernels (q4rows.go) broadcast a weight
// block's four quants of a vector to all eight rows.

const (
	tileRows  = 8
	tileBlock = 320 // bytes of one block of a tile: 256 quants, 32 scales, 32 offsets
)

const sigTile = "func(y *float32, ystride int, w *byte, rows int, xt *byte, nb int)"

func tileKernels() {
	q4Kernels()
	q4KRows8Packed()
	q6KRows8Packed()
}
