package kernels

import (
	"fmt"
	"sync"
)

// GEMM: a packed-panel driver in the style of BLIS/GotoBLAS. The k dimension
// is cut into blocks of at most kcMax (kBlock) and n into blocks of nc; each
// (nc×kb) block of B is packed once into column panels of nr, each (mc×kb)
// block of A into row panels of mr, and a register-tiled micro-kernel
// computes one mr×nr tile of C from one A panel and one B panel. Work is split over row blocks of A (and
// over column groups of B panels when A has few rows).

const (
	mr    = 6    // rows of a micro-tile
	nr    = 16   // columns of a micro-tile
	kcMax = 512  // deepest k block: a B panel (kcMax·nr floats, 32 KiB) from L1 and L2
	mc    = 144  // rows of A per block: mc·kcMax floats (288 KiB) stay in L2
	nc    = 4096 // columns of B per block: kcMax·nc floats (8 MiB) stay in L3
)

// microKernel computes the mr×nr tile C = Ap·Bp (or C += Ap·Bp when
// accumulate) from a packed A panel (k steps of mr values) and a packed B
// panel (k steps of nr values). C has row stride ldc.
var microKernel = microKernelGeneric

// Operand element kinds.
const (
	kindF32 = iota
	kindF16
	kindBF16
)

// operand describes a matrix whose element (i, j) lives at index i·rs + j·cs
// of f32 (kindF32) or u16 (kindF16, kindBF16, converted while packing).
type operand struct {
	kind   int
	f32    []float32
	u16    []uint16
	rs, cs int
}

// GemmNT computes C = A·Bᵀ (accumulate=false) or C += A·Bᵀ (accumulate=true),
// where A is m×k, B is n×k and C is m×n, all row-major.
func GemmNT(m, n, k int, a, b, c []float32, accumulate bool) {
	checkLen("GemmNT", "a", a, m*k)
	checkLen("GemmNT", "b", b, n*k)
	checkLen("GemmNT", "c", c, m*n)
	gemm(m, n, k, operand{f32: a, rs: k, cs: 1}, operand{f32: b, rs: 1, cs: k}, c, n, accumulate)
}

// GemmNN computes C = A·B (or C += A·B), where A is m×k, B is k×n and C is
// m×n, all row-major.
func GemmNN(m, n, k int, a, b, c []float32, accumulate bool) {
	checkLen("GemmNN", "a", a, m*k)
	checkLen("GemmNN", "b", b, k*n)
	checkLen("GemmNN", "c", c, m*n)
	gemm(m, n, k, operand{f32: a, rs: k, cs: 1}, operand{f32: b, rs: n, cs: 1}, c, n, accumulate)
}

// GemmTN computes C = Aᵀ·B (or C += Aᵀ·B), where A is k×m, B is k×n and C is
// m×n, all row-major.
func GemmTN(m, n, k int, a, b, c []float32, accumulate bool) {
	checkLen("GemmTN", "a", a, k*m)
	checkLen("GemmTN", "b", b, k*n)
	checkLen("GemmTN", "c", c, m*n)
	gemm(m, n, k, operand{f32: a, rs: 1, cs: m}, operand{f32: b, rs: n, cs: 1}, c, n, accumulate)
}

func checkLen(fn, name string, s []float32, need int) {
	if len(s) < need {
		panic(fmt.Sprintf("kernels.%s: len(%s) = %d, need %d", fn, name, len(s), need))
	}
}

// scratch is a pool of reusable slices (sync.Pool of *[]T).
type scratch[T any] struct{ p sync.Pool }

// get returns a slice of length n, with unspecified contents.
func (s *scratch[T]) get(n int) *[]T {
	if p, ok := s.p.Get().(*[]T); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]T, n)
	return &b
}

func (s *scratch[T]) put(p *[]T) { s.p.Put(p) }

var (
	floatScratch scratch[float32]
	byteScratch  scratch[byte]
	intScratch   scratch[int32]
)

func getBuf(n int) *[]float32 { return floatScratch.get(n) }

func putBuf(p *[]float32) { floatScratch.put(p) }

// gemm computes C (m×n, row stride ldc) = A·B or C += A·B with A m×k and B k×n
// given as operands.
func gemm(m, n, k int, A, B operand, c []float32, ldc int, accumulate bool) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 {
		if !accumulate {
			for i := range m {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	t := Threads()
	small := 2*m*n*k < 1<<18 // not worth waking other threads
	if small {
		t = 1
	}
	ncb := min(nc, n)
	kb := kBlock(k)
	kcb := min(kb, k)
	bp := getBuf(roundUp(ncb, nr) * kcb)
	defer putBuf(bp)

	nrb, mcb := rowBlocks(m, t)

	for jc := 0; jc < n; jc += nc {
		ncur := min(nc, n-jc)
		npanels := (ncur + nr - 1) / nr
		// Column groups: split the B panels when there are too few row
		// blocks to keep every thread busy.
		ncg := 1
		if nrb < 4*t && t > 1 {
			ncg = min(npanels, (4*t+nrb-1)/nrb)
		}
		pg := (npanels + ncg - 1) / ncg
		ncg = (npanels + pg - 1) / pg
		for pc := 0; pc < k; pc += kb {
			kcur := min(kb, k-pc)
			acc := accumulate || pc > 0
			pb := (*bp)[:npanels*nr*kcur]
			packPanels := func(lo, hi int) {
				for q := lo; q < hi; q++ {
					j0 := q * nr
					packB(pb[q*nr*kcur:(q+1)*nr*kcur], B, pc, kcur, jc+j0, min(nr, ncur-j0))
				}
			}
			if t == 1 {
				packPanels(0, npanels)
			} else {
				ParallelFor(npanels, 8, packPanels)
			}
			task := func(id int) {
				ib, cg := id/ncg, id%ncg
				i0 := ib * mcb
				mcur := min(mcb, m-i0)
				ap := getBuf(roundUp(mcur, mr) * kcur)
				packA(*ap, A, i0, mcur, pc, kcur)
				q0, q1 := cg*pg, min(npanels, (cg+1)*pg)
				blockPanels(*ap, pb, kcur, i0, mcur, jc, q0, q1, n, c, ldc, acc)
				putBuf(ap)
			}
			if t == 1 {
				for id := range nrb * ncg {
					task(id)
				}
			} else {
				parallelTasks(nrb*ncg, task)
			}
		}
	}
}

// kBlock is the depth of gemm's k blocks for a product k deep: k cut into
// as few blocks of at most kcMax as it takes, of equal depth (a multiple of
// eight). Deeper blocks than the 256 of the textbook halve the passes over C when k is large
// (the output head's input gradient, k = vocabulary), at the cost of a B
// panel that spills from L1 to L2 (measured with BenchmarkGemmStories15M).
func kBlock(k int) int {
	nb := (k + kcMax - 1) / kcMax
	return min(kcMax, roundUp((k+nb-1)/nb, 8))
}

// rowBlocks is gemm's split of m rows for t threads: the number of row
// blocks, as many as needed for mc rounded up to a multiple of the thread
// count so that the last round is not half idle, and the rows in each
// (a multiple of mr).
func rowBlocks(m, t int) (nrb, mcb int) {
	nrb = (m + mc - 1) / mc
	if t > 1 && nrb%t != 0 && nrb > 1 {
		nrb += t - nrb%t
	}
	mcb = roundUp((m+nrb-1)/nrb, mr)
	nrb = (m + mcb - 1) / mcb
	return nrb, mcb
}

// blockPanels multiplies the packed row block ap (mcur rows from row i0,
// kcur deep) by the packed B panels q0 to q1 of pb (of the column block
// that starts at column jc of n), writing into c (row stride ldc), or adding
// to it when acc. Whole mr×nr tiles go straight into c; edge tiles go
// through a scratch tile.
func blockPanels(ap, pb []float32, kcur, i0, mcur, jc, q0, q1, n int, c []float32, ldc int, acc bool) {
	var tmp [mr * nr]float32
	for q := q0; q < q1; q++ {
		j := jc + q*nr
		ncols := min(nr, n-j)
		bpanel := pb[q*nr*kcur : (q+1)*nr*kcur]
		for ir := 0; ir < mcur; ir += mr {
			apanel := ap[ir*kcur : (ir+mr)*kcur]
			rows := min(mr, mcur-ir)
			coff := (i0+ir)*ldc + j
			if rows == mr && ncols == nr {
				microKernel(kcur, apanel, bpanel, c[coff:], ldc, acc)
				continue
			}
			microKernel(kcur, apanel, bpanel, tmp[:], nr, false)
			for r := range rows {
				dst := c[coff+r*ldc : coff+r*ldc+ncols]
				src := tmp[r*nr : r*nr+ncols]
				if acc {
					for x := range dst {
						dst[x] += src[x]
					}
				} else {
					copy(dst, src)
				}
			}
		}
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// packA packs rows [i0, i0+rows) × columns [p0, p0+kk) of A into panels of mr
// rows: panel r holds, for each p, the mr values A[i0+r·mr+0..mr-1][p0+p].
// Rows past the end are zero.
func packA(dst []float32, A operand, i0, rows, p0, kk int) {
	const _ = uint(mr-6) + uint(6-mr) // the fast paths below move panels of six
	a := A.f32
	full := rows / mr * mr // rows in whole panels
	if A.rs == 1 {         // column of A contiguous (GemmTN): row p of the block is A's row p0+p
		// Eight source rows at a time, panel after panel: the six floats of
		// a panel go by plain moves (copy would cost a call each), and the
		// eight rows' pieces stay in L1 while the panels take them.
		const rowsAtOnce = 8
		for q := 0; q < kk; q += rowsAtOnce {
			qe := min(kk, q+rowsAtOnce)
			for r := 0; r < full; r += mr {
				panel := dst[r*kk : r*kk+mr*kk]
				for p := q; p < qe; p++ {
					o := (p0+p)*A.cs + i0 + r
					s := a[o : o+mr : o+mr]
					d := panel[p*mr : p*mr+mr : p*mr+mr]
					d[0], d[1], d[2], d[3], d[4], d[5] = s[0], s[1], s[2], s[3], s[4], s[5]
				}
			}
		}
		if full < rows {
			for p := range kk {
				o := (p0+p)*A.cs + i0 + full
				d := dst[full*kk+p*mr : full*kk+p*mr+mr]
				n := copy(d, a[o:o+rows-full])
				clear(d[n:])
			}
		}
		return
	}
	if A.cs == 1 { // row of A contiguous (GemmNN, GemmNT): read mr rows side by side
		for r := 0; r < full; r += mr {
			base := (i0+r)*A.rs + p0
			s0 := a[base : base+kk]
			s1 := a[base+A.rs : base+A.rs+kk]
			s2 := a[base+2*A.rs : base+2*A.rs+kk]
			s3 := a[base+3*A.rs : base+3*A.rs+kk]
			s4 := a[base+4*A.rs : base+4*A.rs+kk]
			s5 := a[base+5*A.rs : base+5*A.rs+kk]
			panel := dst[r*kk : r*kk+mr*kk]
			for p := range s0 {
				d := panel[p*mr : p*mr+mr : p*mr+mr]
				d[0], d[1], d[2], d[3], d[4], d[5] = s0[p], s1[p], s2[p], s3[p], s4[p], s5[p]
			}
		}
		if full == rows {
			return
		}
	}
	// The rest: a strided A, or the last, partial panel.
	r0 := full
	if A.cs != 1 && A.rs != 1 {
		r0 = 0
	}
	for r := r0; r < rows; r += mr {
		panel := dst[r*kk : (r+mr)*kk]
		h := min(mr, rows-r)
		for ii := range mr {
			if ii >= h {
				for p := range kk {
					panel[p*mr+ii] = 0
				}
				continue
			}
			src := a[(i0+r+ii)*A.rs+p0*A.cs:]
			for p := range kk {
				panel[p*mr+ii] = src[p*A.cs]
			}
		}
	}
}

// packB packs rows [p0, p0+kk) × columns [j0, j0+cols) of B (cols <= nr) into
// one panel: for each p, the nr values B[p0+p][j0+0..nr-1], zero past cols.
func packB(dst []float32, B operand, p0, kk, j0, cols int) {
	if B.kind == kindF32 && B.cs == 1 { // row of B contiguous (GemmNN, GemmTN)
		for p := range kk {
			src := B.f32[(p0+p)*B.rs+j0:]
			d := dst[p*nr : p*nr+nr]
			copy(d, src[:cols])
			clear(d[cols:])
		}
		return
	}
	if B.rs != 1 {
		panic("kernels: packB: unsupported operand layout")
	}
	// Column of B contiguous (B is the transpose of a row-major matrix).
	off := j0*B.cs + p0
	if cols == nr {
		packNT16(dst, B, off, kk)
		return
	}
	packNTGeneric(dst, B, off, 0, kk, cols)
}

// packNTGeneric fills columns [p0, kk) of the panel dst from the first cols
// rows of a transposed operand (row j of the panel source starts at element
// off + j·B.cs), converting half types; rows past cols are zero.
func packNTGeneric(dst []float32, B operand, off, p0, kk, cols int) {
	var row [kcMax]float32
	for jj := range nr {
		if jj >= cols {
			for p := p0; p < kk; p++ {
				dst[p*nr+jj] = 0
			}
			continue
		}
		o := off + jj*B.cs
		var src []float32
		switch B.kind {
		case kindF32:
			src = B.f32[o+p0 : o+kk]
		case kindF16:
			src = row[p0:kk]
			convF16(src, B.u16[o+p0:o+kk])
		case kindBF16:
			src = row[p0:kk]
			convBF16(src, B.u16[o+p0:o+kk])
		}
		for p, v := range src {
			dst[(p0+p)*nr+jj] = v
		}
	}
}
