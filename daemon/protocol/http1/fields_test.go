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

// TestFieldNamesMatchInAnyCase pins down that the framing fields are
// recognised whatever their case, through the usual spelling's shortcut or
// the case-insensitive comparison, and that a name differing in any byte
// (a CR where the hyphen is, a letter off by 0x20 that is not its other
// case) is not one of them.
func TestFieldNamesMatchInAnyCase(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"Content-Length", true},
		{"content-length", true},
		{"CONTENT-LENGTH", true},
		{"cOnTeNt-LeNgTh", true},
		{"Content\rLength", false},
		{"Content-Lengtx", false},
		{"Content-Length ", false},
		{"Content-Lengt", false},
		{"Content_Length", false},
	} {
		h := fields{contentLength: -1}
		var c tracectx.Collector
		h.field([]byte(tc.name), []byte("7"), &c)
		if got := h.contentLength == 7; got != tc.want {
			t.Errorf("field %q taken as Content-Length: %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, f := range []struct {
		field string
		names []string
		value string
		taken func(*fields) bool
	}{
		{"Host", []string{"Host", "host", "HOST", "hOsT"}, "a", func(h *fields) bool { return string(h.host) == "a" }},
		{"Transfer-Encoding", []string{"Transfer-Encoding", "transfer-encoding", "TRANSFER-ENCODING"}, "chunked", func(h *fields) bool { return h.chunked }},
		{"Connection", []string{"Connection", "connection", "CONNECTION"}, "Upgrade", func(h *fields) bool { return h.connUpgrade }},
		{"Upgrade", []string{"Upgrade", "upgrade", "UPGRADE"}, "h2c", func(h *fields) bool { return string(h.upgrade) == "h2c" }},
	} {
		for _, name := range f.names {
			var h fields
			var c tracectx.Collector
			h.field([]byte(name), []byte(f.value), &c)
			if !f.taken(&h) {
				t.Errorf("field %q not taken as %s", name, f.field)
			}
		}
	}
}
