//go:build !unix

package fileio

import "os"

// Map reads the whole file into memory where mmap is unavailable.
func Map(path string) ([]byte, func() error, error) {
	b, err := os.ReadFile(path)
	return b, func() error { return nil }, err
}
