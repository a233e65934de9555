package sft

import (
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
)

// residentOutsideGo is the process's resident memory that the Go runtime
// does not manage (the mapped model file's pages, the program's code): the
// resident set of /proc/self/statm less the runtime's own memory. ok is
// false where /proc cannot tell.
func residentOutsideGo() (n int64, ok bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return 0, false
	}
	inGo := int64(s[0].Value.Uint64() - s[1].Value.Uint64())
	return max(0, pages*int64(os.Getpagesize())-inGo), true
}
