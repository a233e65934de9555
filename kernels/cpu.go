package kernels

import (
	"fmt"
	"os"
	"strings"
)

// The CPU paths: the sets of kernel implementations herd can run. Each
// path installs its kernels over those of the paths before it, so a path
// need not have its own version of every kernel.
const (
	PathPurego = "purego" // pure Go, every CPU and architecture
	PathAVX2   = "avx2"   // amd64 with AVX2, FMA and F16C
	PathAVX512 = "avx512" // amd64 with AVX-512 F, BW, VL, DQ and VNNI, over avx2
)

// cpuPath is one path: its name, whether this CPU runs it, and the
// function that installs its kernels.
type cpuPath struct {
	name string
	ok   bool
	use  func()
}

var (
	paths  []cpuPath // every path this build has, in installation order
	active string    // the path in use
)

// init picks the path once at start: the best one the CPU runs, or the one
// HERD_CPU names (purego, avx2, avx512) when the CPU runs it.
func init() {
	setupGenericQuant()
	paths = append([]cpuPath{{name: PathPurego, ok: true, use: useGeneric}}, asmPaths()...)
	name, err := choosePath(os.Getenv("HERD_CPU"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "herd: %v; using the %s kernels\n", err, name)
	}
	setPath(name)
}

// choosePath returns the path env (HERD_CPU's value) asks for, or the best
// the CPU runs when env is empty; an unknown name or a path the CPU cannot
// run is an error, returned with the best path.
func choosePath(env string) (string, error) {
	best := PathPurego
	for _, p := range paths {
		if p.ok {
			best = p.name
		}
	}
	env = strings.ToLower(strings.TrimSpace(env))
	if env == "" {
		return best, nil
	}
	for _, p := range paths {
		if p.name == env {
			if !p.ok {
				return best, fmt.Errorf("HERD_CPU=%s: this CPU (or this build) does not run the %s kernels", env, env)
			}
			return env, nil
		}
	}
	return best, fmt.Errorf("HERD_CPU=%s: unknown; want one of %s", env, strings.Join(CPUPaths(), ", "))
}

// setPath installs the kernels of the named path (one the CPU runs).
func setPath(name string) {
	for _, p := range paths {
		if p.ok {
			p.use()
		}
		if p.name == name {
			break
		}
	}
	active = name
}

// CPUPath returns the name of the kernels in use: purego, avx2 or avx512,
// chosen once at start from the CPU's features and the HERD_CPU variable.
func CPUPath() string { return active }

// CPUPaths returns the paths this CPU and build can run, slowest first.
func CPUPaths() []string {
	var names []string
	for _, p := range paths {
		if p.ok {
			names = append(names, p.name)
		}
	}
	return names
}
