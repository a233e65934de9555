// Package dist is herd's data-parallel communication: a Comm is a group of
// processes (ranks) that train one model together, each on its own share
// of every step's data. The default build is pure Go and always one rank
// (Single); built with -tags mpi (cgo and Open MPI's libmpi), World is
// MPI_COMM_WORLD of a job started by mpirun, through a thin binding of the
// MPI C API whose failures come back as Go errors (MPI_ERRORS_RETURN).
package dist

import (
	"fmt"
	"os"
	"strconv"
)

// A Comm is a group of ranks. Every method is collective: each rank of the
// group calls it, in the same order, with buffers of the same length, and
// it returns once this rank's part is done. Sums are of float32 or float64
// values element by element; with two ranks a sum is bit-identical on both
// (a+b = b+a), and every implementation gives every rank the same bits.
type Comm interface {
	Rank() int // this process's rank, 0 … Size−1
	Size() int // how many ranks
	// Barrier returns once every rank has entered it.
	Barrier() error
	// Bcast copies root's buf into every other rank's buf.
	Bcast(buf []byte, root int) error
	BcastF32(buf []float32, root int) error
	// AllReduceF32 and AllReduceF64 replace buf with the sum over ranks.
	AllReduceF32(buf []float32) error
	AllReduceF64(buf []float64) error
	// ReduceScatterF32 sums send (Size·len(recv) values) over the ranks
	// and gives rank r the sum's r-th block of len(recv) values.
	ReduceScatterF32(send, recv []float32) error
	// AllGatherF32 concatenates every rank's send (equal lengths) in rank
	// order into recv (Size·len(send) values).
	AllGatherF32(send, recv []float32) error
	// IAllReduceF32 starts AllReduceF32 of buf and returns at once (MPI's
	// non-blocking MPI_Iallreduce); buf holds the sum once the request's
	// Wait returns, and must not be read or written before. Every rank
	// starts the same non-blocking collectives in the same order, and no
	// blocking collective may be called while one is in flight.
	IAllReduceF32(buf []float32) (Request, error)
	// AllToAll sends send[q] (Size slices, any lengths, nil for none) to
	// rank q and returns what every rank sent this one, by rank: recv[q]
	// is rank q's send[this rank].
	AllToAll(send [][]byte) (recv [][]byte, err error)
	// Abort ends every rank of the job with code (used when one rank
	// fails, so that the others do not wait for it forever).
	Abort(code int)
}

// A Request is a non-blocking collective in flight.
type Request interface {
	// Test says whether the collective is done (and lets MPI progress
	// it: call it now and then while computing).
	Test() (bool, error)
	// Wait returns once it is done.
	Wait() error
}

// done is a Request complete when started.
type done struct{ err error }

func (d done) Test() (bool, error) { return true, d.err }
func (d done) Wait() error         { return d.err }

// Single is the group of one process: every collective is the identity.
type Single struct{}

// Rank is 0.
func (Single) Rank() int { return 0 }

// Size is 1.
func (Single) Size() int { return 1 }

// Barrier returns at once.
func (Single) Barrier() error { return nil }

// Bcast leaves buf as it is.
func (Single) Bcast(buf []byte, root int) error { return checkRoot(root, 1) }

// BcastF32 leaves buf as it is.
func (Single) BcastF32(buf []float32, root int) error { return checkRoot(root, 1) }

// AllReduceF32 leaves buf as it is (the sum over one rank).
func (Single) AllReduceF32(buf []float32) error { return nil }

// IAllReduceF32 leaves buf as it is: a request already done.
func (Single) IAllReduceF32(buf []float32) (Request, error) { return done{}, nil }

// AllReduceF64 leaves buf as it is.
func (Single) AllReduceF64(buf []float64) error { return nil }

// ReduceScatterF32 copies send into recv.
func (Single) ReduceScatterF32(send, recv []float32) error {
	if len(send) != len(recv) {
		return fmt.Errorf("dist: reduce-scatter of %d values into %d on 1 rank", len(send), len(recv))
	}
	copy(recv, send)
	return nil
}

// AllGatherF32 copies send into recv.
func (Single) AllGatherF32(send, recv []float32) error {
	if len(send) != len(recv) {
		return fmt.Errorf("dist: all-gather of %d values into %d on 1 rank", len(send), len(recv))
	}
	copy(recv, send)
	return nil
}

// AllToAll returns a copy of send[0], the one rank's message to itself.
func (Single) AllToAll(send [][]byte) ([][]byte, error) {
	if len(send) != 1 {
		return nil, fmt.Errorf("dist: all-to-all of %d messages on 1 rank", len(send))
	}
	return [][]byte{append([]byte(nil), send[0]...)}, nil
}

// Abort exits the process with code.
func (Single) Abort(code int) { os.Exit(code) }

func checkRoot(root, size int) error {
	if root < 0 || root >= size {
		return fmt.Errorf("dist: root %d of %d ranks", root, size)
	}
	return nil
}

// launcherVars are the environment variables MPI launchers set to the
// job's size: Open MPI's mpirun, PMI (MPICH's Hydra, Slurm's srun
// --mpi=pmi2) and PMIx.
var launcherVars = []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"}

// LaunchedSize is the number of ranks the MPI launcher that started this
// process says the job has (1 when no launcher's variable is set), and the
// variable that says so.
func LaunchedSize() (int, string) {
	for _, v := range launcherVars {
		if n, err := strconv.Atoi(os.Getenv(v)); err == nil && n > 1 {
			return n, v
		}
	}
	return 1, ""
}
