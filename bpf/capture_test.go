package bpf

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
)

// conversation is what one client connection sent and received, as the
// client saw it.
type conversation struct {
	local, remote netip.AddrPort
	sent, recv    []byte
}

func body(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = 'a' + byte((i+j)%26)
	}
	return b
}

// serve accepts conns connections on l, one after the other, answering each
// "req <i> <n>\n" line with "resp <i> <n>\n" and n body bytes. It runs in
// the caller's thread, so the server side is in the caller's namespace.
func serve(l net.Listener, conns int) error {
	defer l.Close()
	for range conns {
		c, err := l.Accept()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err == io.EOF {
				break
			}
			if err != nil {
				c.Close()
				return fmt.Errorf("server read: %w", err)
			}
			var i, n int
			if _, err := fmt.Sscanf(line, "req %d %d\n", &i, &n); err != nil {
				c.Close()
				return fmt.Errorf("bad request %q: %w", line, err)
			}
			resp := append([]byte(fmt.Sprintf("resp %d %d\n", i, n)), body(i, n)...)
			if _, err := c.Write(resp); err != nil {
				c.Close()
				return fmt.Errorf("server write: %w", err)
			}
		}
		if err := c.Close(); err != nil {
			return err
		}
	}
	return nil
}

// converse makes one connection to addr carrying the requests sizes and
// records both directions.
func converse(network, addr string, first int, sizes []int) (conversation, error) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return conversation{}, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	conv := conversation{
		local:  c.LocalAddr().(*net.TCPAddr).AddrPort(),
		remote: c.RemoteAddr().(*net.TCPAddr).AddrPort(),
	}
	var recv bytes.Buffer
	r := bufio.NewReader(io.TeeReader(c, &recv))
	for k, n := range sizes {
		req := []byte(fmt.Sprintf("req %d %d\n", first+k, n))
		if _, err := c.Write(req); err != nil {
			return conv, fmt.Errorf("client write: %w", err)
		}
		conv.sent = append(conv.sent, req...)
		line, err := r.ReadString('\n')
		if err != nil {
			return conv, fmt.Errorf("client read: %w", err)
		}
		if want := fmt.Sprintf("resp %d %d\n", first+k, n); line != want {
			return conv, fmt.Errorf("response line %q, want %q", line, want)
		}
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return conv, fmt.Errorf("client read body: %w", err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return conv, err
	}
	if _, err := io.Copy(io.Discard, r); err != nil { // until the server closes
		return conv, err
	}
	conv.recv = recv.Bytes()
	return conv, nil
}

// exchange runs a server and a client in ns: one keep-alive connection
// with keepAlive requests, then short connections with one request each.
func exchange(t *testing.T, ns *testNetns, network, listenAddr string, keepAlive, short int) []conversation {
	t.Helper()
	addrCh := make(chan string, 1)
	srv := in(ns, func() error {
		l, err := net.Listen(network, listenAddr)
		if err != nil {
			close(addrCh)
			return fmt.Errorf("listen: %w", err)
		}
		addrCh <- l.Addr().String()
		return serve(l, 1+short)
	})
	addr, ok := <-addrCh
	if !ok {
		wait(t, srv, time.Second)
	}
	var convs []conversation
	cli := in(ns, func() error {
		sizes := make([]int, keepAlive)
		for i := range sizes {
			sizes[i] = (i * 977) % 9000 // 0..9 KB, some above the chunk size
		}
		c, err := converse(network, addr, 0, sizes)
		if err != nil {
			return err
		}
		convs = append(convs, c)
		for i := range short {
			c, err := converse(network, addr, keepAlive+i, []int{100 + i})
			if err != nil {
				return err
			}
			convs = append(convs, c)
		}
		return nil
	})
	wait(t, cli, 30*time.Second)
	wait(t, srv, 5*time.Second)
	return convs
}

// checkConversations asserts that every conversation was captured from both
// ends: one client and one server connection with mirrored addresses, both
// directions byte for byte, and a close with exact totals.
func checkConversations(t *testing.T, r running, ns *testNetns, podID uint32, convs []conversation) {
	t.Helper()
	eventually(t, 10*time.Second, "a close for every connection", func() bool {
		return len(r.rec.snapshot(ns.ino).closes) >= 2*len(convs)
	})
	s := r.rec.snapshot(ns.ino)
	if got, want := len(s.connsBy(event.RoleClient)), len(convs); got != want {
		t.Fatalf("%d client connections captured, want %d", got, want)
	}
	if got, want := len(s.connsBy(event.RoleServer)), len(convs); got != want {
		t.Fatalf("%d server connections captured, want %d", got, want)
	}
	if n := len(s.connsBy(event.RoleUnknown)); n != 0 {
		t.Fatalf("%d connections of unknown role, want 0", n)
	}
	byLocal := map[netip.AddrPort]event.ConnOpen{}
	for _, o := range s.opens {
		if o.Proc.PodID != podID || o.Proc.NetnsIno != ns.ino {
			t.Fatalf("conn %d attributed to pod %d netns %d, want %d %d", o.Conn, o.Proc.PodID, o.Proc.NetnsIno, podID, ns.ino)
		}
		if !o.Success {
			t.Fatalf("conn %d: connect/accept reported failed: %+v", o.Conn, o)
		}
		if o.End < o.Start || o.Start == 0 {
			t.Fatalf("conn %d: timestamps %d..%d", o.Conn, o.Start, o.End)
		}
		byLocal[o.Local] = o
	}
	for i, c := range convs {
		cl, ok := byLocal[c.local]
		if !ok || cl.Role != event.RoleClient {
			t.Fatalf("conversation %d: no client connection with local address %v", i, c.local)
		}
		if cl.Remote != c.remote || cl.Syscall != event.SysConnect {
			t.Fatalf("conversation %d: client conn %+v, want remote %v via connect", i, cl, c.remote)
		}
		sv, ok := byLocal[c.remote]
		var found bool
		for _, o := range s.connsBy(event.RoleServer) {
			if o.Local == c.remote && o.Remote == c.local {
				sv, found = o, true
			}
		}
		if !found {
			t.Fatalf("conversation %d: no server connection %v <- %v (have %v)", i, c.remote, c.local, ok)
		}
		if sv.Syscall != event.SysAccept4 && sv.Syscall != event.SysAccept {
			t.Fatalf("conversation %d: server conn seen through %v, want accept", i, sv.Syscall)
		}
		streamOf(t, s, cl.Conn, event.Egress).complete(t, fmt.Sprintf("conv %d client egress", i), c.sent)
		streamOf(t, s, cl.Conn, event.Ingress).complete(t, fmt.Sprintf("conv %d client ingress", i), c.recv)
		streamOf(t, s, sv.Conn, event.Ingress).complete(t, fmt.Sprintf("conv %d server ingress", i), c.sent)
		streamOf(t, s, sv.Conn, event.Egress).complete(t, fmt.Sprintf("conv %d server egress", i), c.recv)
		for _, side := range []event.ConnOpen{cl, sv} {
			cc, ok := s.closeOf(side.Conn)
			if !ok {
				t.Fatalf("conversation %d: no close for conn %d", i, side.Conn)
			}
			sent, recv := uint64(len(c.sent)), uint64(len(c.recv))
			if side.Role == event.RoleServer {
				sent, recv = recv, sent
			}
			if cc.BytesSent != sent || cc.BytesRecv != recv || !cc.Success {
				t.Fatalf("conversation %d: %v close %+v, want sent %d recv %d", i, side.Role, cc, sent, recv)
			}
		}
	}
}

func TestCapturesBothEndsOfKeepAliveAndShortConnections(t *testing.T) {
	r := startCollector(t, Config{})
	ns := newNetns(t)
	const pod = 7
	if err := r.Enroll(ns.ino, pod); err != nil {
		t.Fatal(err)
	}
	convs := exchange(t, ns, "tcp4", "127.0.0.1:0", 100, 100)
	checkConversations(t, r, ns, pod, convs)

	s := r.rec.snapshot(ns.ino)
	var bytesSeen uint64
	for _, d := range s.data {
		bytesSeen += uint64(d.Size)
	}
	t.Logf("observed %d conn opens, %d closes, %d data events covering %d bytes",
		len(s.opens), len(s.closes), len(s.data), bytesSeen)
	counters, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel counters: %v", counters)
	if counters["ringbuf_full"] != 0 {
		t.Fatalf("ring buffer overflowed in a small exchange: %v", counters)
	}
}

func TestCapturesIPv6(t *testing.T) {
	r := startCollector(t, Config{})
	ns := newNetns(t)
	if err := r.Enroll(ns.ino, 8); err != nil {
		t.Fatal(err)
	}
	convs := exchange(t, ns, "tcp6", "[::1]:0", 10, 5)
	checkConversations(t, r, ns, 8, convs)
	for _, o := range r.rec.snapshot(ns.ino).opens {
		if o.Local.Addr() != netip.IPv6Loopback() || o.Remote.Addr() != netip.IPv6Loopback() {
			t.Fatalf("conn %d: %v -> %v, want ::1 on both ends", o.Conn, o.Local, o.Remote)
		}
	}
}
