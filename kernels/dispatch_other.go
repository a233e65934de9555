//go:build !amd64 || purego

package kernels

// asmPaths: this build has no assembly kernels.
func asmPaths() []cpuPath { return nil }
