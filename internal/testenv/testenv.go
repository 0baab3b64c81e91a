// Package testenv holds helpers that tests across the module share. It is
// imported by _test.go files only.
//
// Weir's tests are of two kinds. Unprivileged tests need nothing but Go and
// a writable temporary directory; `make test-short` runs them all, quickly,
// with `go test -short`. Privileged tests create network namespaces, load
// eBPF programs or change file ownership: they need root, and CI runs them
// as root in `make test-unit`. A privileged test starts with Privileged,
// which says what it needs and skips it under -short or without root, so the
// skip is visible in `go test -v` and never mistaken for a pass.
package testenv

import (
	"os"
	"testing"
)

// Privileged skips t unless it may do privileged work: the process is root
// and the run is not -short. needs says what the test does that needs root
// ("creates network namespaces"); it appears in the skip message.
func Privileged(t testing.TB, needs string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("privileged test (%s): skipped under -short; make test-unit runs it as root", needs)
	}
	if os.Geteuid() != 0 {
		t.Skipf("privileged test (%s): needs root; CI runs it as root", needs)
	}
}
