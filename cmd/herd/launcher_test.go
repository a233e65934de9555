//go:build !mpi || !cgo

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Started by an MPI launcher, a herd without MPI refuses to train (it
// would train one copy a rank), and the commands that do not run across
// ranks refuse in every build.
func TestUnderLauncherWithoutMPI(t *testing.T) {
	t.Setenv("OMPI_COMM_WORLD_SIZE", "2")
	out := filepath.Join(t.TempDir(), "run")
	_, _, err := herd(t, "", "pretrain", "--preset", "stories260k", "--data", t.TempDir(), "-o", out, "--steps", "1")
	if err == nil || !strings.Contains(err.Error(), "built without MPI") {
		t.Errorf("pretrain under mpirun without MPI: %v", err)
	}
	_, _, err = herd(t, "", "sft", "--data", "../../sft/testdata/alpaca_en.json", "-o", out, "--steps", "1")
	if err == nil || !strings.Contains(err.Error(), "built without MPI") {
		t.Errorf("sft under mpirun without MPI: %v", err)
	}
	_, _, err = herd(t, "", "data", "prepare", "../../data/testdata/tinystories.txt", "-o", filepath.Join(t.TempDir(), "d"))
	if err == nil || !strings.Contains(err.Error(), "built without MPI") {
		t.Errorf("data prepare under mpirun without MPI: %v", err)
	}
	_, _, err = herd(t, "", "tokenize", "hello")
	if err == nil || !strings.Contains(err.Error(), "herd tokenize was started as one of 2 MPI ranks") {
		t.Errorf("tokenize under mpirun: %v", err)
	}
}
