package monitor

import (
	"errors"
	"fmt"
	"testing"
)

// The list of files that could not be probed names a Go binary per
// process, so it is bounded: past maxUnprobed entries a new file is counted,
// not listed, while a file already listed keeps its latest reason.
func TestUnprobedFilesAreBoundedAndCounted(t *testing.T) {
	g := &tlsGate{failed: map[string]error{}}
	for i := range maxUnprobed + 5 {
		g.noteFailed(fmt.Sprintf("/app/client (pid %d)", i), errors.New("no symbols"))
	}
	if len(g.failed) != maxUnprobed || g.unprobedOverflow.Load() != 5 {
		t.Fatalf("listed %d, counted %d; want %d listed and 5 counted", len(g.failed), g.unprobedOverflow.Load(), maxUnprobed)
	}
	g.noteFailed("/app/client (pid 0)", errors.New("attach failed"))
	if got := g.failed["/app/client (pid 0)"]; got == nil || got.Error() != "attach failed" || g.unprobedOverflow.Load() != 5 {
		t.Fatalf("a listed file's new reason: %v, overflow %d", got, g.unprobedOverflow.Load())
	}
}
