// Package fileio holds the two file habits every herd format shares:
// mapping a file read-only, and writing one atomically (a temporary file in
// the same directory, fsync, rename, fsync of the directory), so a crash
// never leaves a half-written checkpoint under the real name.
package fileio

import (
	"io"
	"os"
	"path/filepath"
)

// WriteAtomic writes path through write into a temporary file beside it,
// syncs it and renames it into place. On any error the temporary file is
// removed and path is left as it was.
func WriteAtomic(path string, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = write(tmp); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // best effort: some systems cannot sync a directory
		d.Close()
	}
	return nil
}
