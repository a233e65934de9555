//go:build unix

package fileio

import (
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Map maps a regular file read-only; anything else (a pipe, a device)
// is read into memory. The returned function releases the mapping.
func Map(path string) ([]byte, func() error, error) {
	b, unmap, _, err := MapDroppable(path)
	return b, unmap, err
}

// MapDroppable is Map, and also returns drop: drop(part), part a slice of
// the mapped bytes, hands the pages wholly inside part back to the kernel
// (madvise MADV_DONTNEED), so they leave the process's resident memory;
// the bytes stay valid, reading them again reads them from the file (or
// the page cache). For a file read into memory drop does nothing.
func MapDroppable(path string) ([]byte, func() error, func([]byte), error) {
	b, unmap, mapped, err := mapFile(path)
	if err != nil || !mapped {
		return b, unmap, func([]byte) {}, err
	}
	page := uintptr(unix.Getpagesize())
	base := uintptr(unsafe.Pointer(&b[0]))
	drop := func(part []byte) {
		if len(part) == 0 {
			return
		}
		p := uintptr(unsafe.Pointer(&part[0]))
		if p < base || p+uintptr(len(part)) > base+uintptr(len(b)) {
			return // not ours
		}
		lo := (p - base + page - 1) &^ (page - 1)
		hi := (p - base + uintptr(len(part))) &^ (page - 1)
		if hi > lo {
			_ = unix.Madvise(b[lo:hi], unix.MADV_DONTNEED)
		}
	}
	return b, unmap, drop, nil
}

// mapFile maps the file, or reads it (mapped false).
func mapFile(path string) (b []byte, unmap func() error, mapped bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, false, err
	}
	if fi.IsDir() {
		return nil, nil, false, errors.New("is a directory")
	}
	size := fi.Size()
	if !fi.Mode().IsRegular() || size == 0 {
		b, err := os.ReadFile(path)
		return b, func() error { return nil }, false, err
	}
	if size != int64(int(size)) {
		return nil, nil, false, errors.New("file too large to map on this platform")
	}
	b, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, false, err
	}
	return b, func() error { return unix.Munmap(b) }, true, nil
}

// hugePage is the size of a transparent huge page on x86-64 and arm64
// with 4 KiB base pages.
const hugePage = 2 << 20

// AllocHuge returns n zeroed bytes of anonymous memory that the kernel is
// asked to back with transparent huge pages (madvise MADV_HUGEPAGE), and
// the function that frees them; where mmap fails, memory from the Go heap.
// The bytes start on a huge-page boundary, so that only the last partial
// huge page of the n bytes has to be small pages.
func AllocHuge(n int) ([]byte, func()) {
	if n <= 0 {
		return nil, func() {}
	}
	m, err := unix.Mmap(-1, 0, n+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n), func() {}
	}
	off := (hugePage - int(uintptr(unsafe.Pointer(&m[0]))%hugePage)) % hugePage
	b := m[off : off+n : off+n]
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b, func() { _ = unix.Munmap(m) }
}
