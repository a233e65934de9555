//go:build mpi && cgo

package dist

/*
#cgo pkg-config: ompi-c
#include <stdlib.h>
#include <mpi.h>

static int herd_init(int *provided) {
	int flag = 0;
	MPI_Initialized(&flag);
	if (flag) {
		MPI_Query_thread(provided);
		return MPI_SUCCESS;
	}
	int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, provided);
	if (rc != MPI_SUCCESS) return rc;
	return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}
static int herd_rank(int *r) { return MPI_Comm_rank(MPI_COMM_WORLD, r); }
static int herd_size(int *n) { return MPI_Comm_size(MPI_COMM_WORLD, n); }
static int herd_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
static int herd_bcast(void *buf, int n, int root) { return MPI_Bcast(buf, n, MPI_BYTE, root, MPI_COMM_WORLD); }
static int herd_bcast_f32(float *buf, int n, int root) { return MPI_Bcast(buf, n, MPI_FLOAT, root, MPI_COMM_WORLD); }
static int herd_allreduce_f32(float *buf, int n) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static int herd_allreduce_f64(double *buf, int n) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}
static int herd_reduce_scatter_f32(float *send, float *recv, int n) {
	return MPI_Reduce_scatter_block(send, recv, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static int herd_allgather_f32(float *send, float *recv, int n) {
	return MPI_Allgather(send, n, MPI_FLOAT, recv, n, MPI_FLOAT, MPI_COMM_WORLD);
}
static void herd_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
static int herd_finalize(void) {
	int flag = 0;
	MPI_Finalized(&flag);
	if (flag) return MPI_SUCCESS;
	MPI_Initialized(&flag);
	if (!flag) return MPI_SUCCESS;
	return MPI_Finalize();
}
static void herd_error_string(int code, char *out) {
	int n = 0;
	if (MPI_Error_string(code, out, &n) != MPI_SUCCESS) n = 0;
	out[n] = 0;
}
*/
import "C"

import (
	"fmt"
	"math"
	"sync"
	"unsafe"
)

// Enabled says whether this binary was built with MPI (-tags mpi).
const Enabled = true

// mpiComm is MPI_COMM_WORLD. MPI is initialised for serialised calls from
// any thread (MPI_THREAD_SERIALIZED): mu makes the calls one at a time.
type mpiComm struct {
	mu         sync.Mutex
	rank, size int
}

var (
	worldOnce sync.Once
	world     *mpiComm
	worldErr  error
)

// World initialises MPI on first use and is MPI_COMM_WORLD, with errors
// returned rather than fatal. A process not started by mpirun is a world
// of one rank (MPI's singleton initialisation).
func World() (Comm, error) {
	worldOnce.Do(func() {
		var provided C.int
		if rc := C.herd_init(&provided); rc != C.MPI_SUCCESS {
			worldErr = mpiError("MPI_Init_thread", rc)
			return
		}
		if provided < C.MPI_THREAD_SERIALIZED {
			worldErr = fmt.Errorf("dist: the MPI library provides thread level %d, herd needs MPI_THREAD_SERIALIZED", int(provided))
			return
		}
		var r, n C.int
		if rc := C.herd_rank(&r); rc != C.MPI_SUCCESS {
			worldErr = mpiError("MPI_Comm_rank", rc)
			return
		}
		if rc := C.herd_size(&n); rc != C.MPI_SUCCESS {
			worldErr = mpiError("MPI_Comm_size", rc)
			return
		}
		world = &mpiComm{rank: int(r), size: int(n)}
	})
	if worldErr != nil {
		return nil, worldErr
	}
	return world, nil
}

// Running is the world when World has started it with more than one
// rank.
func Running() (Comm, bool) {
	if world == nil || world.size < 2 {
		return nil, false
	}
	return world, true
}

// Finalize ends the use of MPI, if World started it; call it once, at the
// end of the program, on every rank.
func Finalize() error {
	if world == nil {
		return nil
	}
	world.mu.Lock()
	defer world.mu.Unlock()
	if rc := C.herd_finalize(); rc != C.MPI_SUCCESS {
		return mpiError("MPI_Finalize", rc)
	}
	return nil
}

// mpiError is an MPI return code as a Go error, with MPI's own message.
func mpiError(call string, rc C.int) error {
	buf := (*C.char)(C.malloc(C.MPI_MAX_ERROR_STRING + 1))
	defer C.free(unsafe.Pointer(buf))
	C.herd_error_string(rc, buf)
	return fmt.Errorf("dist: %s failed (MPI error %d): %s", call, int(rc), C.GoString(buf))
}

func (c *mpiComm) Rank() int { return c.rank }
func (c *mpiComm) Size() int { return c.size }

func (c *mpiComm) Barrier() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc := C.herd_barrier(); rc != C.MPI_SUCCESS {
		return mpiError("MPI_Barrier", rc)
	}
	return nil
}

// maxCount is the most elements one MPI call is given (its counts are C
// ints); longer buffers go in pieces.
const maxCount = math.MaxInt32 / 8

func (c *mpiComm) Bcast(buf []byte, root int) error {
	if err := checkRoot(root, c.size); err != nil {
		return err
	}
	return c.bcast(buf, root)
}

// bcast is Bcast without the root check in Go (MPI checks it).
func (c *mpiComm) bcast(buf []byte, root int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(buf) > 0 {
		n := min(len(buf), maxCount)
		if rc := C.herd_bcast(unsafe.Pointer(&buf[0]), C.int(n), C.int(root)); rc != C.MPI_SUCCESS {
			return mpiError("MPI_Bcast", rc)
		}
		buf = buf[n:]
	}
	return nil
}

func (c *mpiComm) BcastF32(buf []float32, root int) error {
	if err := checkRoot(root, c.size); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(buf) > 0 {
		n := min(len(buf), maxCount)
		if rc := C.herd_bcast_f32((*C.float)(&buf[0]), C.int(n), C.int(root)); rc != C.MPI_SUCCESS {
			return mpiError("MPI_Bcast", rc)
		}
		buf = buf[n:]
	}
	return nil
}

func (c *mpiComm) AllReduceF32(buf []float32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(buf) > 0 {
		n := min(len(buf), maxCount)
		if rc := C.herd_allreduce_f32((*C.float)(&buf[0]), C.int(n)); rc != C.MPI_SUCCESS {
			return mpiError("MPI_Allreduce", rc)
		}
		buf = buf[n:]
	}
	return nil
}

func (c *mpiComm) AllReduceF64(buf []float64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(buf) > 0 {
		n := min(len(buf), maxCount)
		if rc := C.herd_allreduce_f64((*C.double)(&buf[0]), C.int(n)); rc != C.MPI_SUCCESS {
			return mpiError("MPI_Allreduce", rc)
		}
		buf = buf[n:]
	}
	return nil
}

func (c *mpiComm) ReduceScatterF32(send, recv []float32) error {
	if len(send) != c.size*len(recv) {
		return fmt.Errorf("dist: reduce-scatter of %d values into blocks of %d over %d ranks", len(send), len(recv), c.size)
	}
	if len(recv) == 0 {
		return nil
	}
	if len(recv) > maxCount {
		return fmt.Errorf("dist: reduce-scatter blocks of %d values exceed MPI's count limit", len(recv))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc := C.herd_reduce_scatter_f32((*C.float)(&send[0]), (*C.float)(&recv[0]), C.int(len(recv))); rc != C.MPI_SUCCESS {
		return mpiError("MPI_Reduce_scatter_block", rc)
	}
	return nil
}

func (c *mpiComm) AllGatherF32(send, recv []float32) error {
	if len(recv) != c.size*len(send) {
		return fmt.Errorf("dist: all-gather of %d values a rank into %d over %d ranks", len(send), len(recv), c.size)
	}
	if len(send) == 0 {
		return nil
	}
	if len(send) > maxCount {
		return fmt.Errorf("dist: all-gather blocks of %d values exceed MPI's count limit", len(send))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc := C.herd_allgather_f32((*C.float)(&send[0]), (*C.float)(&recv[0]), C.int(len(send))); rc != C.MPI_SUCCESS {
		return mpiError("MPI_Allgather", rc)
	}
	return nil
}

// Abort ends every rank of the job (MPI_Abort on the world).
func (c *mpiComm) Abort(code int) {
	C.herd_abort(C.int(code))
}
