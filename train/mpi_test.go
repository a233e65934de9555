//go:build mpi && cgo

package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-llm/herd/autograd"
	"github.com/herd-llm/herd/checkpoint"
	"github.com/herd-llm/herd/dist"
	"github.com/herd-llm/herd/format/gguf"
)

// The data-parallel tests run this test binary under mpirun: the parent
// test prepares the data and the recipe, TestMPIChild (run on every rank,
// HERD_MPI_CHILD set) pretrains with it, and the parent compares the
// result with a one-process run.

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

// TestMPIChild is one rank's run of the recipe in HERD_MPI_RECIPE
// (JSON); HERD_MPI_LR_RANK1 gives rank 1 another learning rate (a
// recipe that disagrees). Each rank writes its pid to OUT.rankN.pid.
func TestMPIChild(t *testing.T) {
	if os.Getenv("HERD_MPI_CHILD") == "" {
		t.Skip("run by the MPI tests under mpirun")
	}
	var r Recipe
	if err := json.Unmarshal([]byte(os.Getenv("HERD_MPI_RECIPE")), &r); err != nil {
		t.Fatal(err)
	}
	c, err := dist.World()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(fmt.Sprintf("%s.rank%d.pid", r.Out, c.Rank()), []byte(strconv.Itoa(os.Getpid())), 0o644)
	if b, err := strconv.Atoi(os.Getenv("HERD_MPI_BUCKET")); err == nil {
		bucketValues = b
	}
	if lr := os.Getenv("HERD_MPI_LR_RANK1"); lr != "" && c.Rank() == 1 {
		r.LR, _ = strconv.ParseFloat(lr, 64)
	}
	var log bytes.Buffer
	_, err = Pretrain(r, Options{Log: &log, Comm: c})
	fmt.Fprintf(os.Stderr, "rank %d log:\n%s", c.Rank(), log.String())
	if err != nil {
		t.Fatalf("rank %d: %v", c.Rank(), err)
	}
}

// mpiJob starts recipe r on np ranks; wait for it with job.Wait.
func mpiJob(t *testing.T, np int, r Recipe, env ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	if os.Getenv("HERD_MPI_CHILD") != "" {
		t.Skip("inside mpirun already")
	}
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun not found (apt-get install openmpi-bin)")
	}
	b, _ := json.Marshal(r)
	cmd := exec.Command("mpirun", "--oversubscribe", "--allow-run-as-root", "-np", strconv.Itoa(np),
		os.Args[0], "-test.run", "^TestMPIChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), append([]string{"HERD_MPI_CHILD=1", "HERD_MPI_RECIPE=" + string(b)}, env...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the job is one process group
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// waitJob waits at most limit for the job and returns its error.
func waitJob(t *testing.T, cmd *exec.Cmd, out *bytes.Buffer, limit time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("the MPI job did not end within %s:\n%s", limit, out)
		return nil
	}
}

// runJob runs recipe r on np ranks to the end.
func runJob(t *testing.T, np int, r Recipe, env ...string) string {
	t.Helper()
	cmd, out := mpiJob(t, np, r, env...)
	if err := waitJob(t, cmd, out, 3*time.Minute); err != nil {
		t.Fatalf("mpirun -np %d: %v\n%s", np, err, out)
	}
	return out.String()
}

// small is the recipe of the MPI tests: stories260K, micro-batches of
// batch windows of 32 tokens, accum of them a step on each rank.
func small(dataDir, out string, batch, accum, steps int) Recipe {
	r := tiny(dataDir, out)
	r.Steps, r.Batch, r.Accum, r.Threads = steps, batch, accum, 1
	r.EvalEvery, r.EvalBatches, r.SaveEvery, r.Keep = 0, 2, 2, 100
	return r
}

// compareRuns compares the losses, gradient norms and final weights of
// two output directories: bit for bit with tol 0, else the losses within
// tol relative, the gradient norms within 10·tol and each weight tensor
// within 100·tol in relative L2 norm (AdamW divides by the gradient's
// scale, so a weight whose gradient is rounding noise moves by ±lr either
// way: elementwise the weights differ by more than the losses).
func compareRuns(t *testing.T, a, b string, tol float64) {
	t.Helper()
	ma, mb := readMetrics(t, filepath.Join(a, MetricsName)), readMetrics(t, filepath.Join(b, MetricsName))
	if len(ma) != len(mb) || len(ma) == 0 {
		t.Fatalf("%d and %d metric lines", len(ma), len(mb))
	}
	rel := func(x, y float64) float64 { return math.Abs(x-y) / max(math.Abs(x), math.Abs(y), 1e-30) }
	var worstLoss, worstNorm float64
	for i := range ma {
		worstLoss, worstNorm = max(worstLoss, rel(ma[i].Loss, mb[i].Loss)), max(worstNorm, rel(ma[i].GradNorm, mb[i].GradNorm))
		if tol == 0 && (ma[i].Loss != mb[i].Loss || ma[i].GradNorm != mb[i].GradNorm) ||
			rel(ma[i].Loss, mb[i].Loss) > tol || rel(ma[i].GradNorm, mb[i].GradNorm) > 10*tol {
			t.Errorf("step %d: loss %v and %v, gradient norm %v and %v", i+1, ma[i].Loss, mb[i].Loss, ma[i].GradNorm, mb[i].GradNorm)
		}
	}
	fa, err := gguf.Open(filepath.Join(a, ModelName))
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := gguf.Open(filepath.Join(b, ModelName))
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	var worst float64
	for _, ta := range fa.Tensors {
		tb, ok := fb.Tensor(ta.Name)
		if !ok || len(ta.Data) != len(tb.Data) {
			t.Fatalf("tensor %s missing or of another size", ta.Name)
		}
		if tol == 0 {
			if !bytes.Equal(ta.Data, tb.Data) {
				t.Errorf("tensor %s differs", ta.Name)
			}
			continue
		}
		va, vb := f32s(ta.Data), f32s(tb.Data)
		var norm, diff float64
		for i := range va {
			norm += float64(va[i]) * float64(va[i])
			d := float64(va[i]) - float64(vb[i])
			diff += d * d
		}
		if r := math.Sqrt(diff / max(norm, 1e-300)); r > worst {
			worst = r
		}
	}
	if worst > tol*100 {
		t.Errorf("weights differ by %.3g of their largest magnitude", worst)
	}
	t.Logf("compared %d steps: losses within %.3g relative, gradient norms within %.3g, weights within %.3g", len(ma), worstLoss, worstNorm, worst)
}

func f32s(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
	}
	return out
}

// Two ranks with micro-batches of B/2 train bit for bit as one process
// accumulating two micro-batches of B/2 (the step's gradient g₀ + g₁ of
// two finished micro-batch gradients in both: see loop.go's fixed-order
// accumulation; MPI's sum of two values is that one addition), with ZeRO-1
// too; and as one process with batch B within 1e-6 relative (its matrix
// products sum the B windows' products in another order).
func TestMPITwoRanksEqualOneProcess(t *testing.T) {
	dir := prepared(t)
	base := t.TempDir()
	two := filepath.Join(base, "two")
	log := runJob(t, 2, small(dir, two, 2, 1, 6))
	if !strings.Contains(log, "global batch: 2 ranks × 2 windows × accum 1 = 4 windows") {
		t.Errorf("the global batch is not logged:\n%s", log)
	}
	accum := filepath.Join(base, "accum")
	ra := small(dir, accum, 2, 2, 6)
	ra.Threads = 2 // the kernels' sums do not depend on the thread count
	if _, err := Pretrain(ra, Options{Comm: dist.Single{}}); err != nil {
		t.Fatal(err)
	}
	compareRuns(t, accum, two, 0)
	zero := filepath.Join(base, "zero")
	rz := small(dir, zero, 2, 1, 6)
	rz.ZeRO = true
	runJob(t, 2, rz)
	compareRuns(t, accum, zero, 0)
	batch := filepath.Join(base, "batch")
	if _, err := Pretrain(small(dir, batch, 4, 1, 6), Options{Comm: dist.Single{}}); err != nil {
		t.Fatal(err)
	}
	compareRuns(t, batch, two, 1e-6)
	// the all-reduce overlapped with the backward pass: the same bits, with
	// accumulation (the earlier micro-batches added at the marks) and without
	// (buckets of 20,000 values: stories260K's 0.26M are then 17 buckets)
	for _, accum := range []int{1, 2} {
		plain := two
		if accum > 1 {
			plain = filepath.Join(base, "plain-accum")
			runJob(t, 2, small(dir, plain, 1, accum, 6))
		}
		ov := filepath.Join(base, fmt.Sprint("overlap", accum))
		ro := small(dir, ov, 2/accum, accum, 6)
		ro.Overlap = true
		log := runJob(t, 2, ro, "HERD_MPI_BUCKET=20000")
		if !strings.Contains(log, "overlap: 46 of 47 tensors were final during the backward pass (17 buckets)") {
			t.Errorf("the overlap is not logged as expected:\n%s", log)
		}
		compareRuns(t, plain, ov, 0)
	}
	ms := readMetrics(t, filepath.Join(two, MetricsName))
	if ms[0].CommSeconds <= 0 {
		t.Errorf("no communication time in metrics.jsonl: %+v", ms[0])
	}
	if _, err := os.Stat(two + ".rank1.pid"); err != nil {
		t.Errorf("rank 1 did not run: %v", err)
	}
}

// Four ranks of one window each against one process of four.
func TestMPIFourRanks(t *testing.T) {
	dir := prepared(t)
	base := t.TempDir()
	four := filepath.Join(base, "four")
	runJob(t, 4, small(dir, four, 1, 1, 4))
	one := filepath.Join(base, "one")
	if _, err := Pretrain(small(dir, one, 1, 4, 4), Options{Comm: dist.Single{}}); err != nil {
		t.Fatal(err)
	}
	compareRuns(t, one, four, 1e-6)
}

// A job killed whole (SIGKILL to every rank and mpirun) and resumed with
// mpirun … --resume continues bit for bit; resumed on one process with
// twice the accumulation (the same global batch and data) it continues
// within rounding; resumed with another global batch it is refused.
func TestMPIResumeAfterKill(t *testing.T) {
	dir := prepared(t)
	base := t.TempDir()
	full := filepath.Join(base, "full")
	runJob(t, 2, small(dir, full, 2, 1, 40))

	cut := filepath.Join(base, "cut")
	cmd, out := mpiJob(t, 2, small(dir, cut, 2, 1, 40))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if b, _ := os.ReadFile(filepath.Join(cut, MetricsName)); bytes.Count(b, []byte("\n")) >= 5 {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Fatalf("the run did not reach step 5:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	killJob(t, cmd, cut, 2)
	cmd.Wait()
	waitUnlocked(t, cut)
	if b, _ := os.ReadFile(filepath.Join(cut, MetricsName)); bytes.Count(b, []byte("\n")) >= 40 {
		t.Fatal("the run finished before it was killed")
	}
	step, _, err := (&modelDir{ru: &run{r: Recipe{Out: cut}}}).Latest()
	if err != nil || step == 0 {
		t.Fatalf("the killed run left no checkpoint: %d %v", step, err)
	}
	b, _ := os.ReadFile(filepath.Join(cut, MetricsName))
	t.Logf("killed after step %d, resuming from step %d", bytes.Count(b, []byte("\n")), step)
	other := filepath.Join(base, "other") // the killed run, for the one-process resume
	if b, err := exec.Command("cp", "-a", cut, other).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, b)
	}

	r := small(dir, cut, 2, 1, 40)
	r.Resume = true
	runJob(t, 2, r)
	compareRuns(t, full, cut, 0)

	// another number of ranks, the same global batch: 1 process × accum 2
	r1 := small(dir, other, 2, 2, 40)
	r1.Resume = true
	if _, err := Pretrain(r1, Options{Comm: dist.Single{}}); err != nil {
		t.Fatal(err)
	}
	compareRuns(t, full, other, 1e-6)

	// another global batch is refused
	r2 := small(dir, other, 2, 1, 42)
	r2.Resume = true
	if _, err := Pretrain(r2, Options{Comm: dist.Single{}}); err == nil || !strings.Contains(err.Error(), "ranks × accum = 2") {
		t.Errorf("resuming with another global batch: %v", err)
	}
}

// killJob sends SIGKILL to every rank of the job writing out (by the pids
// they wrote) and to mpirun's process group: the whole job at once (Open
// MPI starts the ranks outside mpirun's group).
func killJob(t *testing.T, cmd *exec.Cmd, out string, np int) {
	t.Helper()
	for r := range np {
		b, err := os.ReadFile(fmt.Sprintf("%s.rank%d.pid", out, r))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(string(b))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// waitUnlocked waits until no killed process holds dir's lock any more
// (the kernel releases it as it tears a killed process down).
func waitUnlocked(t *testing.T, dir string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		lock, err := LockDir(dir)
		if err == nil {
			lock.Release()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
}

// A rank that dies (SIGKILL) ends the job within a bounded time, and the
// last checkpoint stays loadable.
func TestMPIDeadRankStopsTheJob(t *testing.T) {
	dir := prepared(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd, log := mpiJob(t, 2, small(dir, out, 2, 1, 200))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, _ := os.ReadFile(filepath.Join(out, MetricsName))
		_, err := os.Stat(filepath.Join(out, LatestName))
		if bytes.Count(b, []byte("\n")) >= 3 && err == nil {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Fatalf("the run did not reach step 3:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid, err := os.ReadFile(out + ".rank1.pid")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(string(pid))
	killed := time.Now()
	syscall.Kill(p, syscall.SIGKILL)
	if err := waitJob(t, cmd, log, time.Minute); err == nil {
		t.Fatalf("the job succeeded after its rank 1 was killed:\n%s", log)
	}
	t.Logf("the job ended %s after rank 1 was killed", time.Since(killed).Round(time.Millisecond))
	step, where, err := (&modelDir{ru: &run{r: Recipe{Out: out}}}).Latest()
	if err != nil || step == 0 {
		t.Fatalf("no checkpoint left: %v", err)
	}
	m, _, err := checkpoint.Load(filepath.Join(where, ModelName), "")
	if err != nil {
		t.Fatalf("the last checkpoint (%s) does not load: %v", where, err)
	}
	m.Close()
}

// Ranks whose recipes differ stop at the start with an error, every one.
func TestMPIRanksDisagree(t *testing.T) {
	dir := prepared(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd, log := mpiJob(t, 2, small(dir, out, 2, 1, 4), "HERD_MPI_LR_RANK1=0.5")
	if err := waitJob(t, cmd, log, time.Minute); err == nil {
		t.Fatalf("ranks with different learning rates trained:\n%s", log)
	}
	if !strings.Contains(log.String(), "rank 1 of 2: the recipe, data or trainable set differs from rank 0's") {
		t.Errorf("no clear message:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(out, MetricsName)); err == nil {
		t.Error("a step was trained")
	}
}

// ZeRO-1 on two ranks trains as the unsharded two ranks, bit for bit (the
// same reduced gradients, GradNorm's sums in its order, AdamW element by
// element), checkpoints the whole optimizer and resumes from it; on four
// ranks it matches the unsharded four within rounding.
func TestMPIZeRO(t *testing.T) {
	dir := prepared(t)
	base := t.TempDir()
	plain := filepath.Join(base, "plain")
	runJob(t, 2, small(dir, plain, 2, 1, 6))
	sharded := filepath.Join(base, "zero")
	r := small(dir, sharded, 2, 1, 6)
	r.ZeRO = true
	log := runJob(t, 2, r)
	if !strings.Contains(log, "ZeRO-1: AdamW's moments sharded") {
		t.Errorf("no ZeRO line in the log:\n%s", log)
	}
	compareRuns(t, plain, sharded, 0)
	for _, f := range []string{"step-00000006/" + OptimizerName, "step-00000004/" + OptimizerName} {
		a, err := gguf.Open(filepath.Join(plain, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := gguf.Open(filepath.Join(sharded, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, ta := range a.Tensors {
			if tb, ok := b.Tensor(ta.Name); !ok || !bytes.Equal(ta.Data, tb.Data) {
				t.Errorf("%s: %s differs with ZeRO", f, ta.Name)
			}
		}
		a.Close()
		b.Close()
	}
	// resumed from its step-4 checkpoint with ZeRO on four ranks? The
	// global batch must stay: 4 ranks of 1 window is another batch size,
	// so resume on two ranks from step 4 instead
	cut := filepath.Join(base, "cut")
	if b, err := exec.Command("cp", "-a", sharded, cut).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, b)
	}
	os.RemoveAll(filepath.Join(cut, "step-00000006"))
	os.WriteFile(filepath.Join(cut, LatestName), []byte("step-00000004\n"), 0o644)
	rc := small(dir, cut, 2, 1, 6)
	rc.ZeRO, rc.Resume = true, true
	runJob(t, 2, rc)
	compareRuns(t, plain, cut, 0)

	four, fourZ := filepath.Join(base, "four"), filepath.Join(base, "fourz")
	runJob(t, 4, small(dir, four, 1, 1, 3))
	r4 := small(dir, fourZ, 1, 1, 3)
	r4.ZeRO = true
	runJob(t, 4, r4)
	compareRuns(t, four, fourZ, 1e-6)
}

// failing is the quadratic objective failing on rank 1 at step 3.
type failing struct {
	*quadratic
	rank int
}

func (f failing) Loss(tape *autograd.Tape, step, k int) (Micro, error) {
	if f.rank == 1 && step == 2 {
		return Micro{}, fmt.Errorf("rank 1 cannot read its data")
	}
	return f.quadratic.Loss(tape, step, k)
}

// TestMPIChildFit runs Fit on the toy objective on every rank: into
// HERD_MPI_FIT_DIR, and failing on rank 1 at step 3, where every rank must
// stop with an error (rank 0 saying another rank failed).
func TestMPIChildFit(t *testing.T) {
	if os.Getenv("HERD_MPI_CHILD") == "" {
		t.Skip("run by TestMPIFitToy under mpirun")
	}
	c, err := dist.World()
	if err != nil {
		t.Fatal(err)
	}
	q := newQuadratic()
	cfg := quadConfig(os.Getenv("HERD_MPI_FIT_DIR"))
	cfg.Accum, cfg.Comm = 1, c
	if _, err := Fit(q, q, cfg); err != nil {
		t.Fatalf("rank %d: %v", c.Rank(), err)
	}
	q = newQuadratic()
	cfg = quadConfig(filepath.Join(os.Getenv("HERD_MPI_FIT_DIR"), "failing"))
	cfg.Accum, cfg.Comm = 1, c
	done := make(chan error, 1)
	go func() { _, err := Fit(failing{q, c.Rank()}, q, cfg); done <- err }()
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("rank %d: Fit did not return within 30 s of rank 1's failure", c.Rank())
	}
	want := "failed on another rank"
	if c.Rank() == 1 {
		want = "rank 1 cannot read its data"
	}
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "step 3") {
		t.Errorf("rank %d: %v, want an error of step 3 with %q", c.Rank(), err, want)
	}
}

// Fit on two ranks of the toy objective (each item's gradient from one
// micro-batch: the sum over ranks adds zeros) gives the one process's
// metrics and checkpoints bit for bit; an objective failing on one rank
// stops both (checked inside the job).
func TestMPIFitToy(t *testing.T) {
	if os.Getenv("HERD_MPI_CHILD") != "" {
		t.Skip("inside mpirun already")
	}
	if _, err := exec.LookPath("mpirun"); err != nil {
		t.Skip("mpirun not found (apt-get install openmpi-bin)")
	}
	two := filepath.Join(t.TempDir(), "two")
	cmd := exec.Command("mpirun", "--oversubscribe", "--allow-run-as-root", "-np", "2",
		os.Args[0], "-test.run", "^TestMPIChildFit$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "HERD_MPI_CHILD=1", "HERD_MPI_FIT_DIR="+two)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := waitJob(t, cmd, &out, 2*time.Minute); err != nil || strings.Count(out.String(), "--- PASS: TestMPIChildFit") != 2 {
		t.Fatalf("mpirun: %v\n%s", err, &out)
	}
	one := filepath.Join(t.TempDir(), "one")
	q := newQuadratic()
	if _, err := Fit(q, q, quadConfig(one)); err != nil {
		t.Fatal(err)
	}
	a, b := readMetrics(t, filepath.Join(one, MetricsName)), readMetrics(t, filepath.Join(two, MetricsName))
	if len(a) != 8 || len(b) != 8 {
		t.Fatalf("%d and %d steps", len(a), len(b))
	}
	for i := range a {
		if a[i].Loss != b[i].Loss || a[i].GradNorm != b[i].GradNorm || a[i].Extra["above"] != b[i].Extra["above"] {
			t.Errorf("step %d: %+v on one process, %+v on two ranks", i+1, a[i], b[i])
		}
	}
	for _, f := range []string{"step-3/" + StateName, "step-8/" + StateName} {
		x, err1 := os.ReadFile(filepath.Join(one, f))
		y, err2 := os.ReadFile(filepath.Join(two, f))
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs (%v, %v)", f, err1, err2)
		}
	}
}
