//go:build !unix

package fileio

import "os"

// Map reads the whole file into memory where mmap is unavailable.
func Map(path string) ([]byte, func() error, error) {
	b, err := os.ReadFile(path)
	return b, func() error { return nil }, err
}

// MapDroppable is Map with a drop function that does nothing here (the
// bytes were read, not mapped).
func MapDroppable(path string) ([]byte, func() error, func([]byte), error) {
	b, unmap, err := Map(path)
	return b, unmap, func([]byte) {}, err
}

// AllocHuge returns n zeroed bytes from the Go heap (no huge-page advice
// here) and a free function that does nothing.
func AllocHuge(n int) ([]byte, func()) {
	return make([]byte, n), func() {}
}
