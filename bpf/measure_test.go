package bpf

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// measurement skips t, a measurement rather than an assertion, unless the
// environment variable env is "1"; then it needs root and the programs
// bins on PATH, and skips naming the first one missing.
func measurement(t *testing.T, env string, bins ...string) {
	t.Helper()
	if os.Getenv(env) != "1" {
		t.Skipf("a measurement: set %s=1 (%s) to run it", env, strings.Join(append([]string{"root"}, bins...), ", "))
	}
	requireRoot(t)
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: %v", bin, err)
		}
	}
}
