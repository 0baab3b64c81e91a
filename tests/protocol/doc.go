// Package protocol is the conformance suite of Weir's HTTP analysis
// (issue #5) against real peers, end to end: pods on the real CNI chain, a
// capturing weir-daemon, and nginx, curl, wrk, h2load and Go net/http and
// grpc-go peers. For every case the test knows the exact ground truth — the
// server's access log and the client's own count — and asserts that
// GET /api/v1/requests holds exactly those exchanges, one for one (method,
// path, status, body sizes where HTTP defines them, gRPC status), on the
// client's and on the server's side, none incomplete.
//
// Run it through `make test-e2e` (root), or directly:
//
//	go test -count=1 -v ./tests/protocol
package protocol
