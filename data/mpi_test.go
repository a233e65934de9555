//go:build mpi && cgo

package data

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/herd-llm/herd/dist"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if c, ok := dist.Running(); ok && code != 0 {
		c.Abort(code)
	}
	if err := dist.Finalize(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// TestMPIChildPrepare is one rank's Prepare of the recipe in
// HERD_MPI_RECIPE into HERD_MPI_OUT, run by TestMPIPrepare under mpirun.
func TestMPIChildPrepare(t *testing.T) {
	if os.Getenv("HERD_MPI_CHILD") == "" {
		t.Skip("run by TestMPIPrepare under mpirun")
	}
	var r Recipe
	if err := json.Unmarshal([]byte(os.Getenv("HERD_MPI_RECIPE")), &r); err != nil {
		t.Fatal(err)
	}
	c, err := dist.World()
	if err != nil {
		t.Fatal(err)
	}
	if c.Size() < 2 {
		t.Fatalf("%d ranks under mpirun", c.Size())
	}
	if _, err := Prepare(r, tok512(t), os.Getenv("HERD_MPI_OUT"), PrepareOptions{Comm: c}); err != nil {
		t.Fatalf("rank %d: %v", c.Rank(), err)
	}
}

// Prepared by mpirun -np 2 and -np 4 (MPI's all-to-all, broadcast and
// all-reduce), the output is the one process's byte for byte (the
// manifest but for its timings).
func TestMPIPrepare(t *testing.T) {
	if os.Getenv("HERD_MPI_CHILD") != "" {
		t.Skip("inside mpirun already")
	}
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun not found (apt-get install openmpi-bin)")
	}
	dir := t.TempDir()
	r := rankCorpus(t, dir)
	one := filepath.Join(dir, "one")
	if _, err := Prepare(r, tok512(t), one, PrepareOptions{}); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(r)
	for _, np := range []int{2, 4} {
		out := filepath.Join(dir, fmt.Sprint("np", np))
		cmd := exec.Command("mpirun", "--oversubscribe", "--allow-run-as-root", "-np", strconv.Itoa(np),
			os.Args[0], "-test.run", "^TestMPIChildPrepare$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "HERD_MPI_CHILD=1", "HERD_MPI_RECIPE="+string(b), "HERD_MPI_OUT="+out)
		timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
		log, err := cmd.CombinedOutput()
		timer.Stop()
		if err != nil {
			t.Fatalf("mpirun -np %d: %v\n%s", np, err, log)
		}
		sameOutput(t, one, out)
	}
}
