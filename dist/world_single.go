//go:build !mpi || !cgo

package dist

import "fmt"

// Enabled says whether this binary was built with MPI (-tags mpi).
const Enabled = false

// World is the job's group of ranks: in this build always Single. Started
// by mpirun (or another MPI launcher) with more than one rank, it is an
// error rather than N independent copies of one training run.
func World() (Comm, error) {
	if n, v := LaunchedSize(); n > 1 {
		return nil, fmt.Errorf("started as one of %d MPI ranks (%s=%d), but this herd was built without MPI: every rank would train its own copy; rebuild with `go build -tags mpi ./cmd/herd` (cgo and libopenmpi-dev), or run it without mpirun", n, v, n)
	}
	return Single{}, nil
}

// Finalize ends the use of MPI (nothing in this build).
func Finalize() error { return nil }

// Running is the world when World has started it with more than one
// rank (never in this build).
func Running() (Comm, bool) { return nil, false }
