//go:build unix

package fileio

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Map maps a regular file read-only; anything else (a pipe, a device)
// is read into memory. The returned function releases the mapping.
func Map(path string) ([]byte, func() error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		return nil, nil, errors.New("is a directory")
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() || size == 0 {
		b, err := os.ReadFile(path)
		return b, func() error { return nil }, err
	}
	if size != int64(int(size)) {
		return nil, nil, errors.New("file too large to map on this platform")
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return unix.Munmap(b) }, nil
}
