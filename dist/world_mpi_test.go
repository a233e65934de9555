//go:build mpi && cgo

package dist

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Mpirun runs this test binary under mpirun with np ranks, running only
// the tests that match run, and fails the test with their output when the
// job fails. It skips when mpirun is not installed.
func mpirun(t *testing.T, np int, run string) {
	t.Helper()
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun not found (apt-get install openmpi-bin)")
	}
	cmd := exec.Command("mpirun", "--oversubscribe", "--allow-run-as-root", "-np", strconv.Itoa(np),
		os.Args[0], "-test.run", run, "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "HERD_MPI_CHILD=1")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("mpirun -np %d did not finish in 2 minutes:\n%s", np, out)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS") || strings.Contains(string(out), "--- FAIL") {
		t.Fatalf("mpirun -np %d: %v\n%s", np, err, out)
	}
}

func TestMPICollectivesUnderMpirun(t *testing.T) {
	if os.Getenv("HERD_MPI_CHILD") != "" {
		t.Skip("inside mpirun already")
	}
	for _, np := range []int{2, 4} {
		mpirun(t, np, "^TestMPICollectives$")
	}
}

// TestMPICollectives runs on every rank of an mpirun job (started by
// TestMPICollectivesUnderMpirun) and checks each collective against the
// sums computed here in float64.
func TestMPICollectives(t *testing.T) {
	if os.Getenv("HERD_MPI_CHILD") == "" {
		t.Skip("run by TestMPICollectivesUnderMpirun under mpirun")
	}
	c, err := World()
	if err != nil {
		t.Fatal(err)
	}
	r, n := c.Rank(), c.Size()
	if n < 2 {
		t.Fatalf("a world of %d ranks under mpirun", n)
	}
	if err := c.Barrier(); err != nil {
		t.Fatal(err)
	}
	// all-reduce: rank r holds value(r, i); the sum is checked in float64
	value := func(r, i int) float32 { return float32(math.Sin(float64(1+r*1000+i))) * float32(1+r) }
	const m = 1000
	buf := make([]float32, m)
	f64 := make([]float64, m)
	for i := range buf {
		buf[i], f64[i] = value(r, i), float64(value(r, i))
	}
	if err := c.AllReduceF32(buf); err != nil {
		t.Fatal(err)
	}
	if err := c.AllReduceF64(f64); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		var want float64
		for q := range n {
			want += float64(value(q, i))
		}
		if math.Abs(float64(buf[i])-want) > 1e-6*float64(n) || math.Abs(f64[i]-want) > 1e-12 {
			t.Fatalf("all-reduce[%d] = %g (f32), %g (f64), want %g", i, buf[i], f64[i], want)
		}
	}
	// non-blocking all-reduces, several in flight, give the blocking one's bits
	var reqs []Request
	bufs := make([][]float32, 3)
	for k := range bufs {
		bufs[k] = make([]float32, m*(k+1))
		for i := range bufs[k] {
			bufs[k][i] = value(r, i+k)
		}
		req, err := c.IAllReduceF32(bufs[k])
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, req)
	}
	if _, err := reqs[0].Test(); err != nil {
		t.Fatal(err)
	}
	for k, req := range reqs {
		if err := req.Wait(); err != nil {
			t.Fatal(err)
		}
		if ok, err := req.Test(); !ok || err != nil {
			t.Fatalf("a finished request tests %v, %v", ok, err)
		}
		want := make([]float32, len(bufs[k]))
		for i := range want {
			want[i] = value(r, i+k)
		}
		if err := c.AllReduceF32(want); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if math.Float32bits(want[i]) != math.Float32bits(bufs[k][i]) {
				t.Fatalf("non-blocking all-reduce %d [%d] = %g, the blocking one %g", k, i, bufs[k][i], want[i])
			}
		}
	}
	// broadcast from the last rank
	b := []byte{byte(r), byte(r), byte(r)}
	if err := c.Bcast(b, n-1); err != nil {
		t.Fatal(err)
	}
	if b[0] != byte(n-1) || b[2] != byte(n-1) {
		t.Fatalf("broadcast from %d gave %v", n-1, b)
	}
	fb := []float32{float32(r) + 0.5}
	if err := c.BcastF32(fb, 0); err != nil || fb[0] != 0.5 {
		t.Fatalf("float broadcast: %v %v", fb, err)
	}
	// reduce-scatter then all-gather is the all-reduce
	send := make([]float32, 3*n)
	for i := range send {
		send[i] = value(r, i)
	}
	part := make([]float32, 3)
	if err := c.ReduceScatterF32(send, part); err != nil {
		t.Fatal(err)
	}
	whole := make([]float32, 3*n)
	if err := c.AllGatherF32(part, whole); err != nil {
		t.Fatal(err)
	}
	for i := range whole {
		var want float64
		for q := range n {
			want += float64(value(q, i))
		}
		if math.Abs(float64(whole[i])-want) > 1e-6*float64(n) {
			t.Fatalf("reduce-scatter + all-gather [%d] = %g, want %g", i, whole[i], want)
		}
		if i/3 == r && whole[i] != part[i%3] {
			t.Fatalf("rank %d's block differs after the all-gather", r)
		}
	}
	// all-to-all: rank r sends rank q (r+1)·(q+2)·k bytes of (r, q, i)
	// (none to itself on odd ranks), in one round and in rounds of 5
	// bytes a rank
	msg := func(from, to, k int) []byte {
		if from%2 == 1 && from == to {
			return nil
		}
		b := make([]byte, (from+1)*(to+2)*k)
		for i := range b {
			b[i] = byte(from*31 + to*7 + i)
		}
		return b
	}
	for _, rb := range []int{maxCount, 5 * n} {
		roundBytes = rb
		for _, k := range []int{0, 1, 13} {
			out := make([][]byte, n)
			for q := range out {
				out[q] = msg(r, q, k)
			}
			in, err := c.AllToAll(out)
			if err != nil {
				t.Fatal(err)
			}
			for q := range in {
				if !bytes.Equal(in[q], msg(q, r, k)) {
					t.Fatalf("all-to-all (rounds of %d bytes, k %d): rank %d got %d bytes from %d, want %d", rb, k, r, len(in[q]), q, len(msg(q, r, k)))
				}
			}
		}
	}
	roundBytes = maxCount
	if _, err := c.AllToAll(make([][]byte, n+1)); err == nil {
		t.Error("all-to-all of n+1 messages accepted")
	}
	// wrong lengths and a root out of range are errors, in Go and in MPI
	if err := c.ReduceScatterF32(send[:1], part); err == nil {
		t.Error("reduce-scatter of the wrong length accepted")
	}
	if err := c.Bcast(b, n); err == nil {
		t.Error("broadcast from root n accepted")
	}
	err = c.(*mpiComm).bcast(b, n) // every rank passes the same bad root: MPI returns an error
	if err == nil || !strings.Contains(err.Error(), "MPI_Bcast") {
		t.Errorf("MPI's own check of a bad root: %v", err)
	}
	if err := c.Barrier(); err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := Finalize(); err != nil {
		println(err.Error())
		code = 1
	}
	os.Exit(code)
}
