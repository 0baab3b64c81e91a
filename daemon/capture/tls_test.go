package capture

import (
	"bytes"
	"testing"

	"github.com/weirnet/weir/bpf/event"
)

// tlsStream is a RecordingStream for the ciphertext with a second one for
// the plaintext, as a TLSStream.
type tlsStream struct {
	*RecordingStream
	plain *RecordingStream
}

func (s tlsStream) Plaintext() Stream { return s.plain }

// TestTLSPlaintextIsAStreamOfItsOwn: plaintext events (SysSSLWrite,
// SysSSLRead) of a connection, with sequence numbers and offsets of their
// own, reach the Stream's Plaintext side byte for byte, never its
// ciphertext side, and the connection then names its TLS library.
func TestTLSPlaintextIsAStreamOfItsOwn(t *testing.T) {
	var s tlsStream
	tab, _ := newTestTable(t, Config{StreamFactory: func(c *Conn) Stream {
		s = tlsStream{&RecordingStream{}, &RecordingStream{}}
		return s
	}})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	cipher := newGen(1, 100, 5, 4096)
	plain := newGen(1, 100, 5, 4096)
	hello, req, resp := pattern(517, 0x16), []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	feed(tab, cipher.syscall(event.Egress, hello)...)
	feed(tab, cipher.syscall(event.Egress, pattern(90, 0x17))...)
	for _, e := range plain.syscall(event.Egress, req) {
		e.Syscall = event.SysSSLWrite
		feed(tab, e)
	}
	feed(tab, cipher.syscall(event.Ingress, pattern(100, 0x17))...)
	for _, e := range plain.syscall(event.Ingress, resp) {
		e.Syscall = event.SysSSLRead
		feed(tab, e)
	}
	if got := s.plain.Bytes(event.Egress, '?'); !bytes.Equal(got, req) {
		t.Errorf("plaintext egress %q, want %q", got, req)
	}
	if got := s.plain.Bytes(event.Ingress, '?'); !bytes.Equal(got, resp) {
		t.Errorf("plaintext ingress %q, want %q", got, resp)
	}
	if got := s.Bytes(event.Egress, '?'); len(got) != len(hello)+90 || bytes.Contains(got, req) {
		t.Errorf("ciphertext egress: %d bytes, want %d and no plaintext", len(got), len(hello)+90)
	}
	ci := connInfo(t, tab, 1)
	if ci.TLS != "openssl" {
		t.Errorf("ConnInfo.TLS = %q, want openssl", ci.TLS)
	}
	// The socket's byte counts stay the ciphertext's.
	if ci.BytesSent != uint64(len(hello)+90) || ci.BytesRecv != 100 {
		t.Errorf("bytes sent/recv %d/%d, want the socket's %d/100", ci.BytesSent, ci.BytesRecv, len(hello)+90)
	}
}
