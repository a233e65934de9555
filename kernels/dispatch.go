package kernels

// The implementations the exported kernels call. They start as the pure-Go
// versions; on amd64 without the purego tag, init in dispatch_amd64.go
// replaces them with assembly when the CPU has AVX2 and FMA.
var (
	dotImpl      = dotGeneric
	axpyImpl     = axpyGeneric
	sumSqImpl    = sumSqGeneric
	scaleMulImpl = scaleMulGeneric
	addImpl      = addGeneric
	convF16      = convF16Generic
	convBF16     = convBF16Generic
	dotF16       = dotF16Generic
	dotBF16      = dotBF16Generic
	dotQ8_0      = dotQ8_0Generic
	dotQ4_0      = dotQ4_0Generic
)
