package kernels

import (
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// forEachPath runs f as a subtest under every CPU path this CPU runs, and
// puts back the path in use afterwards.
func forEachPath(t *testing.T, f func(t *testing.T)) {
	was := CPUPath()
	defer setPath(was)
	for _, name := range CPUPaths() {
		setPath(name)
		t.Run(name, f)
	}
}

func TestChoosePath(t *testing.T) {
	runs := CPUPaths()
	best := runs[len(runs)-1]
	if runs[0] != PathPurego {
		t.Fatalf("CPUPaths() = %v, want purego first", runs)
	}
	for _, p := range paths {
		got, err := choosePath(" " + strings.ToUpper(p.name) + " ")
		switch {
		case p.ok && (err != nil || got != p.name):
			t.Errorf("choosePath(%q) = %q, %v; want %q", p.name, got, err, p.name)
		case !p.ok && (err == nil || got != best):
			t.Errorf("choosePath(%q) on a CPU without it = %q, %v; want %q and an error", p.name, got, err, best)
		}
	}
	if got, err := choosePath(""); err != nil || got != best {
		t.Errorf("choosePath(\"\") = %q, %v; want %q", got, err, best)
	}
	if got, err := choosePath("sse2"); err == nil || got != best || !strings.Contains(err.Error(), "sse2") {
		t.Errorf("choosePath(sse2) = %q, %v; want %q and an error naming it", got, err, best)
	}
}

// TestSetPathInstalls checks that going back to purego from a faster path
// leaves none of its kernels behind, and that the other paths install
// their own.
func TestSetPathInstalls(t *testing.T) {
	was := CPUPath()
	defer setPath(was)
	fn := func(f any) uintptr { return reflect.ValueOf(f).Pointer() }
	for _, name := range CPUPaths() {
		setPath(name)
		setPath(PathPurego)
		if fn(dotImpl) != fn(dotGeneric) || fn(microKernel) != fn(microKernelGeneric) || floatDots != nil {
			t.Errorf("purego after %s: an assembly kernel is still installed", name)
		}
		for dt, f := range formats {
			if fn(f.kern) != fn(f.gen) {
				t.Errorf("purego after %s: %s's kernel is not its pure-Go twin", name, dt)
			}
		}
		setPath(name)
		if CPUPath() != name {
			t.Errorf("setPath(%s): CPUPath() = %s", name, CPUPath())
		}
		if name != PathPurego && (fn(dotImpl) == fn(dotGeneric) || floatDots == nil) {
			t.Errorf("%s: the pure-Go kernels are still installed", name)
		}
	}
}

// TestHerdCPUEnv runs this test binary again with HERD_CPU set and checks
// the path the child chose at start.
func TestHerdCPUEnv(t *testing.T) {
	if os.Getenv("HERD_CPU_CHILD") == "1" {
		os.Stdout.WriteString("path=" + CPUPath() + "\n")
		return
	}
	runs := CPUPaths()
	for _, env := range append(slices.Clone(runs), "bogus") {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHerdCPUEnv$", "-test.count=1")
		cmd.Env = append(os.Environ(), "HERD_CPU_CHILD=1", "HERD_CPU="+env)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("HERD_CPU=%s: %v\n%s", env, err, out)
		}
		want := env
		if env == "bogus" {
			want = runs[len(runs)-1]
			if !strings.Contains(string(out), "HERD_CPU=bogus: unknown") {
				t.Errorf("HERD_CPU=bogus: no warning in\n%s", out)
			}
		}
		if !strings.Contains(string(out), "path="+want+"\n") {
			t.Errorf("HERD_CPU=%s: want path %s, child said\n%s", env, want, out)
		}
	}
}
