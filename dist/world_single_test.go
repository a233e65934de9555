//go:build !mpi || !cgo

package dist

import (
	"strings"
	"testing"
)

func TestWorldRefusesMpirunWithoutMPI(t *testing.T) {
	t.Setenv("OMPI_COMM_WORLD_SIZE", "")
	t.Setenv("PMI_SIZE", "")
	t.Setenv("PMIX_SIZE", "")
	t.Setenv("MPI_LOCALNRANKS", "")
	c, err := World()
	if err != nil || c.Size() != 1 || c.Rank() != 0 {
		t.Fatalf("outside a launcher: %v, %v", c, err)
	}
	for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(v, "4")
			_, err := World()
			if err == nil || !strings.Contains(err.Error(), "built without MPI") || !strings.Contains(err.Error(), v+"=4") {
				t.Fatalf("under a launcher of 4 ranks: %v", err)
			}
		})
	}
	t.Setenv("OMPI_COMM_WORLD_SIZE", "1")
	if _, err := World(); err != nil {
		t.Fatalf("a launcher of one rank: %v", err)
	}
}
