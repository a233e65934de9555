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
static int herd_iallreduce_f32(float *buf, int n, MPI_Request *req) {
	return MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, req);
}
static int herd_test(MPI_Request *req, int *flag) { return MPI_Test(req, flag, MPI_STATUS_IGNORE); }
static int herd_wait(MPI_Request *req) { return MPI_Wait(req, MPI_STATUS_IGNORE); }
static int herd_allreduce_f64(double *buf, int n) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}
static int herd_reduce_scatter_f32(float *send, float *recv, int n) {
	return MPI_Reduce_scatter_block(send, recv, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static int herd_allgather_f32(float *send, float *recv, int n) {
	return MPI_Allgather(send, n, MPI_FLOAT, recv, n, MPI_FLOAT, MPI_COMM_WORLD);
}
static int herd_alltoall_i64(long long *send, long long *recv) {
	return MPI_Alltoall(send, 1, MPI_LONG_LONG, recv, 1, MPI_LONG_LONG, MPI_COMM_WORLD);
}
static int herd_alltoallv(void *send, int *scount, int *sdispl, void *recv, int *rcount, int *rdispl) {
	return MPI_Alltoallv(send, scount, sdispl, MPI_BYTE, recv, rcount, rdispl, MPI_BYTE, MPI_COMM_WORLD);
}
static int herd_allreduce_max_i64(long long *v) {
	return MPI_Allreduce(MPI_IN_PLACE, v, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
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
	"runtime"
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

// AllToAll exchanges the ranks' messages: the lengths first
// (MPI_Alltoall), then the bytes (MPI_Alltoallv) in rounds, each peer's
// share of a round at most maxCount/Size bytes, so that any length fits
// MPI's int counts and displacements; the number of rounds is the
// largest any rank needs (MPI_Allreduce, MPI_MAX), so every rank takes
// part in every round.
func (c *mpiComm) AllToAll(send [][]byte) ([][]byte, error) {
	if len(send) != c.size {
		return nil, fmt.Errorf("dist: all-to-all of %d messages over %d ranks", len(send), c.size)
	}
	n := c.size
	share := max(1, roundBytes/n)
	lens := make([]C.longlong, 2*n+1)
	var rounds int64
	for q, b := range send {
		lens[q] = C.longlong(len(b))
		rounds = max(rounds, int64((len(b)+share-1)/share))
	}
	lens[2*n] = C.longlong(rounds)
	c.mu.Lock()
	rc := C.herd_alltoall_i64(&lens[0], &lens[n])
	if rc == C.MPI_SUCCESS {
		rc = C.herd_allreduce_max_i64(&lens[2*n])
	}
	c.mu.Unlock()
	if rc != C.MPI_SUCCESS {
		return nil, mpiError("MPI_Alltoall", rc)
	}
	rounds = int64(lens[2*n])
	recv := make([][]byte, n)
	total := 0
	for q := range recv {
		recv[q] = make([]byte, int64(lens[n+q]))
		total += len(recv[q])
	}
	// Go memory holding no Go pointers may be passed to C: one buffer a
	// side for a round, counts and displacements
	sbuf, rbuf := make([]byte, min(maxCount, max(1, total, sumLen(send)))), make([]byte, min(maxCount, max(1, total)))
	ints := make([]C.int, 4*n)
	scount, sdispl, rcount, rdispl := ints[:n], ints[n:2*n], ints[2*n:3*n], ints[3*n:]
	at := 0 // bytes of each message done before this round
	for range rounds {
		soff, roff := 0, 0
		for q := range n {
			k := max(0, min(len(send[q])-at, share))
			scount[q], sdispl[q] = C.int(k), C.int(soff)
			if k > 0 {
				soff += copy(sbuf[soff:], send[q][at:at+k])
			}
			k = max(0, min(len(recv[q])-at, share))
			rcount[q], rdispl[q] = C.int(k), C.int(roff)
			roff += k
		}
		c.mu.Lock()
		rc := C.herd_alltoallv(unsafe.Pointer(&sbuf[0]), &scount[0], &sdispl[0], unsafe.Pointer(&rbuf[0]), &rcount[0], &rdispl[0])
		c.mu.Unlock()
		if rc != C.MPI_SUCCESS {
			return nil, mpiError("MPI_Alltoallv", rc)
		}
		for q := range n {
			if k := int(rcount[q]); k > 0 {
				copy(recv[q][at:], rbuf[int(rdispl[q]):int(rdispl[q])+k])
			}
		}
		at += share
	}
	return recv, nil
}

// roundBytes bounds the bytes a rank sends in one round of AllToAll
// (the tests make it small to run several rounds).
var roundBytes = maxCount

func sumLen(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// mpiRequest is an MPI_Iallreduce in flight over Go memory, pinned
// (runtime.Pinner) until it is done, so that MPI may hold its address.
type mpiRequest struct {
	c    *mpiComm
	req  *C.MPI_Request // C memory
	pin  runtime.Pinner
	done bool
	err  error
}

func (c *mpiComm) IAllReduceF32(buf []float32) (Request, error) {
	if len(buf) > maxCount {
		return nil, fmt.Errorf("dist: non-blocking all-reduce of %d values exceeds MPI's count limit", len(buf))
	}
	r := &mpiRequest{c: c, req: (*C.MPI_Request)(C.malloc(C.size_t(unsafe.Sizeof(C.MPI_Request(nil)))))}
	if len(buf) == 0 {
		r.finish(nil)
		return r, nil
	}
	r.pin.Pin(&buf[0])
	c.mu.Lock()
	rc := C.herd_iallreduce_f32((*C.float)(&buf[0]), C.int(len(buf)), r.req)
	c.mu.Unlock()
	if rc != C.MPI_SUCCESS {
		r.finish(mpiError("MPI_Iallreduce", rc))
		return nil, r.err
	}
	return r, nil
}

func (r *mpiRequest) finish(err error) {
	r.done, r.err = true, err
	r.pin.Unpin()
	C.free(unsafe.Pointer(r.req))
	r.req = nil
}

func (r *mpiRequest) Test() (bool, error) {
	if r.done {
		return true, r.err
	}
	var flag C.int
	r.c.mu.Lock()
	rc := C.herd_test(r.req, &flag)
	r.c.mu.Unlock()
	if rc != C.MPI_SUCCESS {
		r.finish(mpiError("MPI_Test", rc))
	} else if flag != 0 {
		r.finish(nil)
	}
	return r.done, r.err
}

func (r *mpiRequest) Wait() error {
	if r.done {
		return r.err
	}
	r.c.mu.Lock()
	rc := C.herd_wait(r.req)
	r.c.mu.Unlock()
	if rc != C.MPI_SUCCESS {
		r.finish(mpiError("MPI_Wait", rc))
	} else {
		r.finish(nil)
	}
	return r.err
}
