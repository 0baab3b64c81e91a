package http1

import (
	"testing"

	"github.com/weirnet/weir/daemon/protocol/tracectx"
)

// TestScanHeadTakesOrdinaryHeads pins down which heads the one-pass scan
// takes (whole, CRLF, unfolded) and which it leaves to the general path,
// so that the common case stays on the fast one.
func TestScanHeadTakesOrdinaryHeads(t *testing.T) {
	for _, tc := range []struct {
		head string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody", 27},
		{"HTTP/1.1 204 No Content\r\n\r\n", 27},
		{"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n", 63},
		{"GET / HTTP/1.1\r\nHost: a\r\n", -1},               // incomplete
		{"GET / HTTP/1.1\nHost: a\n\n", -1},                 // bare LF
		{"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", -1},        // folded
		{"GET / HTTP/1.1\r\nno colon\r\n\r\n", -1},          // malformed
		{"GET / HTTP/1.1\r\n: empty name\r\n\r\n", -1},      // malformed
		{"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", -1}, // invalid length
	} {
		var h fields
		var c tracectx.Collector
		if got := h.scanHead([]byte(tc.head), &c); got != tc.want {
			t.Errorf("scanHead(%q) = %d, want %d", tc.head, got, tc.want)
		}
	}
}
