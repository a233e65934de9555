//go:build amd64 && !purego

package kernels

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestNoLegacySSE: the generated kernels use VEX (or EVEX) encodings for
// every instruction that writes or reads a vector register. A legacy-SSE
// instruction that writes an XMM register keeps the upper half of the YMM
// register, and on the Zen 3 machine measured for issue 16 one such MOVQ in
// each Q4_K/Q5_K/Q3_K block made those mat-vec kernels 9–20× slower
// (BENCHMARKS.md). Only MOVSS between a register and a float32 argument or
// result (avo's Load and Store of a float32 parameter, once per call) is
// allowed.
func TestNoLegacySSE(t *testing.T) {
	src, err := os.ReadFile("kernels_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	vecReg := regexp.MustCompile(`\b[XYZ]\d+\b`)
	for i, line := range strings.Split(string(src), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasSuffix(f[0], ":") || strings.HasPrefix(f[0], "V") || strings.HasPrefix(f[0], "K") {
			continue
		}
		ops := strings.Join(f[1:], " ")
		if !vecReg.MatchString(ops) {
			continue
		}
		if f[0] == "MOVSS" && strings.Contains(ops, "(FP)") {
			continue
		}
		t.Errorf("kernels_amd64.s:%d: legacy-SSE instruction on a vector register: %s", i+1, strings.TrimSpace(line))
	}
}
