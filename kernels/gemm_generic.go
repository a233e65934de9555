package kernels

// microKernelGeneric is the pure-Go micro-kernel (see microKernel).
func microKernelGeneric(k int, a, b, c []float32, ldc int, accumulate bool) {
	var t [mr * nr]float32
	a = a[:k*mr]
	b = b[:k*nr]
	for p := range k {
		ap := a[p*mr : p*mr+mr]
		bp := b[p*nr : p*nr+nr]
		for i, ai := range ap {
			row := t[i*nr : i*nr+nr]
			for j, bj := range bp {
				row[j] += ai * bj
			}
		}
	}
	for i := range mr {
		dst := c[i*ldc : i*ldc+nr]
		src := t[i*nr : i*nr+nr]
		if accumulate {
			for j := range dst {
				dst[j] += src[j]
			}
		} else {
			copy(dst, src)
		}
	}
}
