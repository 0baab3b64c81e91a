// Package capture is the end-to-end suite of Weir's eBPF capture (issue #3):
// real pods on the real CNI chain (bridge + host-local + weir), a real
// weir-daemon loading its eBPF programs into this kernel, and real client
// and server processes. Every assertion compares what the daemon reports —
// connections, roles, addresses, byte counts and the captured bytes
// themselves (the daemon's --capture.dump-dir) — with what the peers
// themselves wrote and read, byte for byte.
//
// Run it through `make test-e2e` (root; the Makefile passes WEIR_BIN_DIR and
// WEIR_CNI_BIN_DIR), or directly:
//
//	go test -count=1 -v ./tests/capture
package capture
