package train

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// An output directory belongs to one run at a time: a run holds
// DirLock's lock on OUTDIR/.lock while it writes there, and a second run
// on the same directory is refused with the first one's process id. The
// lock goes with the process that holds it, killed or not.

// LockName is the lock file of an output directory.
const LockName = ".lock"

// DirLock is a held lock on an output directory.
type DirLock struct {
	f *os.File
}

// LockDir creates dir if need be and takes its lock, or returns an error
// naming the process that holds it.
func LockDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := lockFile(f); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		holder := strings.TrimSpace(string(b))
		if holder == "" {
			holder = "unknown"
		}
		return nil, fmt.Errorf("%s is in use by another herd run (process %s): wait for it to finish, or choose another output directory", dir, holder)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return &DirLock{f: f}, nil
}

// Release lets the directory go.
func (l *DirLock) Release() {
	if l != nil && l.f != nil {
		unlockFile(l.f)
		l.f.Close()
		l.f = nil
	}
}

// isTemp says whether a directory entry is a leftover of an interrupted
// write: fileio's temporary files (.NAME.tmpN), a checkpoint being
// written (.tmp-step-N, .tmp-model.gguf) or being removed (.del-step-N).
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".tmp-") || strings.HasPrefix(name, ".del-") || fileioTemp.MatchString(name)
}

// fileioTemp is the name os.CreateTemp gives fileio.WriteAtomic's
// temporary files: .NAME.tmp followed by random digits.
var fileioTemp = regexp.MustCompile(`^\..+\.tmp[0-9]+$`)

// CleanTemps removes what interrupted writes left in dir and in its
// step-N checkpoints (their temporary files can be as large as the whole
// state) and logs what it removed. Only the run holding dir's lock may
// call it.
func CleanTemps(dir string, log io.Writer) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var removed []string
	clean := func(d string, e os.DirEntry) error {
		if !isTemp(e.Name()) {
			return nil
		}
		removed = append(removed, filepath.Join(d, e.Name()))
		return os.RemoveAll(filepath.Join(d, e.Name()))
	}
	for _, e := range ents {
		if err := clean(dir, e); err != nil {
			return err
		}
		if e.IsDir() && strings.HasPrefix(e.Name(), stepPrefix) {
			sub, err := os.ReadDir(filepath.Join(dir, e.Name()))
			if err != nil {
				return err
			}
			for _, s := range sub {
				if err := clean(filepath.Join(dir, e.Name()), s); err != nil {
					return err
				}
			}
		}
	}
	if len(removed) > 0 && log != nil {
		fmt.Fprintf(log, "removed %d leftovers of an interrupted run: %s\n", len(removed), strings.Join(removed, ", "))
	}
	return nil
}

// removeCheckpoint deletes the checkpoint directory name of dir without
// ever showing a half checkpoint under its name: it is first renamed to
// .del-NAME (one atomic step), then removed; a kill in between leaves a
// leftover CleanTemps removes.
func removeCheckpoint(dir, name string) error {
	gone := filepath.Join(dir, ".del-"+name)
	if err := os.RemoveAll(gone); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, name), gone); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return os.RemoveAll(gone)
}
