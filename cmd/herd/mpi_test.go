//go:build mpi && cgo

package main

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// buildHerd builds the herd binary with the given go build arguments.
func buildHerd(t *testing.T, name string, env []string, args ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", append(append([]string{"build"}, args...), "-o", bin, ".")...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", args, err, out)
	}
	return bin
}

// mpirunHerd runs bin under mpirun with np ranks and returns its output.
func mpirunHerd(t *testing.T, np, limit int, bin string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun not found (apt-get install openmpi-bin)")
	}
	cmd := exec.Command("mpirun", append([]string{"--oversubscribe", "--allow-run-as-root", "-np", string(rune('0' + np)), bin}, args...)...)
	timer := time.AfterFunc(time.Duration(limit)*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// `mpirun -np 2 herd pretrain` with micro-batches of 2 trains as the
// one-process run with 2 micro-batches of 2 a step (within rounding),
// and reports once; a herd built without MPI refuses to run under mpirun.
func TestMpirunHerdPretrain(t *testing.T) {
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun not found (apt-get install openmpi-bin)")
	}
	data := prepareData(t)
	base := t.TempDir()
	common := []string{"pretrain", "--preset", "stories260k", "--data", data, "--steps", "4", "--batch", "2", "--ctx", "32",
		"--threads", "1", "--save-every", "2", "--eval-batches", "1", "--lr", "3e-3"}
	one := filepath.Join(base, "one")
	if _, stderr, err := herd(t, "", append(common, "--accum", "2", "-o", one)...); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	bin := buildHerd(t, "herd-mpi", nil, "-tags", "mpi")
	two := filepath.Join(base, "two")
	out, err := mpirunHerd(t, 2, 120, bin, append(common, "--accum", "1", "-o", two)...)
	if err != nil {
		t.Fatalf("mpirun herd pretrain: %v\n%s", err, out)
	}
	for _, want := range []string{"global batch: 2 ranks × 2 windows × accum 1 = 4 windows", "done: "} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("%q printed %d times (only rank 0 reports):\n%s", want, n, out)
		}
	}
	a, b := lossesOf(t, filepath.Join(one, "metrics.jsonl")), lossesOf(t, filepath.Join(two, "metrics.jsonl"))
	if len(a) != 4 || len(b) != 4 {
		t.Fatalf("%d and %d steps", len(a), len(b))
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-6*math.Abs(a[i]) {
			t.Errorf("step %d: loss %v on one process, %v on two ranks", i+1, a[i], b[i])
		}
	}

	pure := buildHerd(t, "herd-pure", []string{"CGO_ENABLED=0"})
	out, err = mpirunHerd(t, 2, 60, pure, append(common, "--accum", "1", "-o", filepath.Join(base, "pure"))...)
	if err == nil || !strings.Contains(out, "built without MPI") || !strings.Contains(out, "OMPI_COMM_WORLD_SIZE=2") {
		t.Errorf("a herd without MPI under mpirun: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(base, "pure", "metrics.jsonl")); err == nil {
		t.Error("the herd without MPI trained")
	}
}

// herd sft (LoRA with dropout), herd dpo and herd rm train on two ranks of one example
// each train as one process accumulating two examples, within rounding.
func TestMpirunHerdSFTDPORM(t *testing.T) {
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun not found (apt-get install openmpi-bin)")
	}
	bin := buildHerd(t, "herd-mpi", nil, "-tags", "mpi")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"sft", []string{"sft", "--method", "lora", "--dropout", "0.1", "--data", "../../sft/testdata/alpaca_en.json", "--steps", "3", "--batch", "1", "--threads", "1", "--quiet"}},
		{"dpo", []string{"dpo", "--method", "lora", "--data", prefPairs, "--steps", "3", "--batch", "1", "--threads", "1", "--quiet"}},
		{"rm", []string{"rm", "train", "--method", "lora", "--data", prefPairs, "--steps", "3", "--batch", "1", "--threads", "1", "--quiet"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			base := t.TempDir()
			one := filepath.Join(base, "one")
			if _, stderr, err := herd(t, "", append(c.args, "--accum", "2", "-o", one)...); err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			two := filepath.Join(base, "two")
			out, err := mpirunHerd(t, 2, 180, bin, append(c.args, "--accum", "1", "-o", two)...)
			if err != nil {
				t.Fatalf("mpirun herd %s: %v\n%s", c.name, err, out)
			}
			a, b := lossesOf(t, filepath.Join(one, "metrics.jsonl")), lossesOf(t, filepath.Join(two, "metrics.jsonl"))
			if len(a) != 3 || len(b) != 3 {
				t.Fatalf("%d and %d steps", len(a), len(b))
			}
			for i := range a {
				if math.Abs(a[i]-b[i]) > 1e-6*math.Abs(a[i]) {
					t.Errorf("step %d: loss %v on one process, %v on two ranks", i+1, a[i], b[i])
				}
			}
			t.Logf("losses %v (one process), %v (two ranks)", a, b)
			sameMetrics(t, filepath.Join(one, "metrics.jsonl"), filepath.Join(two, "metrics.jsonl"))
			// ZeRO-1: the same as the unsharded ranks, bit for bit
			zero := filepath.Join(base, "zero")
			if out, err := mpirunHerd(t, 2, 180, bin, append(c.args, "--accum", "1", "--zero", "-o", zero)...); err != nil {
				t.Fatalf("mpirun herd %s --zero: %v\n%s", c.name, err, out)
			}
			if z := lossesOf(t, filepath.Join(zero, "metrics.jsonl")); !slices.Equal(z, b) {
				t.Errorf("losses %v with --zero, %v without", z, b)
			}
		})
	}
}

// sameMetrics compares every metric of two metrics.jsonl files but the
// timings, within 1e-6 relative or 1e-6 absolute: the objectives' own
// metrics (accuracy, margins, rewards) included, and the same keys. The
// rewards are small differences of log-probabilities (1e-3…1e-2), whose
// relative rounding differences reach 2e-5 here while their absolute ones
// stay near 1e-7.
func sameMetrics(t *testing.T, pa, pb string) {
	t.Helper()
	read := func(p string) []map[string]any {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var out []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out = append(out, m)
		}
		return out
	}
	a, b := read(pa), read(pb)
	skip := map[string]bool{"tokens_per_sec": true, "mfu": true, "seconds": true, "comm_seconds": true}
	for i := range min(len(a), len(b)) {
		for k, va := range a[i] {
			if skip[k] {
				continue
			}
			x, _ := va.(float64)
			y, ok := b[i][k].(float64)
			if !ok || math.Abs(x-y) > max(1e-6, 1e-6*math.Abs(x)) {
				t.Errorf("step %d: %s is %v on one process, %v on two ranks", i+1, k, va, b[i][k])
			}
		}
		for k := range b[i] {
			if _, ok := a[i][k]; !ok && !skip[k] {
				t.Errorf("step %d: %s only on two ranks", i+1, k)
			}
		}
	}
}

// `mpirun -np 2 herd data prepare` writes what one process writes: the
// shards and the tokenizer byte for byte, the manifest but for its
// timings; the report is printed once.
func TestMpirunHerdDataPrepare(t *testing.T) {
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun not found (apt-get install openmpi-bin)")
	}
	base := t.TempDir()
	args := []string{"data", "prepare", storiesText, "../../data/testdata/tinystories_val.txt", "--split", "paragraph",
		"--val-fraction", "0.125", "--near-dedup", "0.8", "--shard-tokens", "3000"}
	one := filepath.Join(base, "one")
	if _, stderr, err := herd(t, "", append(args, "-o", one)...); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	bin := buildHerd(t, "herd-mpi", nil, "-tags", "mpi")
	two := filepath.Join(base, "two")
	out, err := mpirunHerd(t, 2, 120, bin, append(args, "-o", two)...)
	if err != nil {
		t.Fatalf("mpirun herd data prepare: %v\n%s", err, out)
	}
	if n := strings.Count(out, "wrote "); n != 1 {
		t.Errorf("the report printed %d times:\n%s", n, out)
	}
	es, err := os.ReadDir(one)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		a, _ := os.ReadFile(filepath.Join(one, e.Name()))
		b, err := os.ReadFile(filepath.Join(two, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		switch e.Name() {
		case "manifest.json":
			a, b = untimedManifest(t, a), untimedManifest(t, b)
		case "recipe.yaml": // it names the output directory
			b = []byte(strings.ReplaceAll(string(b), two, one))
		}
		if string(a) != string(b) {
			t.Errorf("%s differs on two ranks", e.Name())
		}
	}
}

func untimedManifest(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	st := m["stats"].(map[string]any)
	st["seconds"], st["mb_per_sec"] = 0, 0
	out, _ := json.Marshal(m)
	return out
}
