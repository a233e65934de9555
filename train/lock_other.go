//go:build !unix

package train

import (
	"fmt"
	"os"
)

// lockFile: without flock, the lock is a second file created exclusively
// beside f (left behind by a killed run: remove it by hand).
func lockFile(f *os.File) error {
	g, err := os.OpenFile(f.Name()+".held", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("%s.held exists: %w", f.Name(), err)
	}
	return g.Close()
}

func unlockFile(f *os.File) { os.Remove(f.Name() + ".held") }
