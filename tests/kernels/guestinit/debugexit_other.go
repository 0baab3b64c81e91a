//go:build !amd64

package main

import (
	"fmt"
	"runtime"
)

// debugExit is only implemented for amd64, the architecture the harness
// boots; elsewhere the guest powers off and the host relies on the markers.
func debugExit(int) error {
	return fmt.Errorf("isa-debug-exit is not supported on %s", runtime.GOARCH)
}
