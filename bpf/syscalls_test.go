package bpf

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/bpf/event"
)

// Raw, blocking sockets: unlike Go's net package they make exactly the
// syscalls a test names (one writev is one writev, a refused connect
// returns ECONNREFUSED instead of EINPROGRESS).

func rawListen4(t *testing.T) (fd, port int) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		t.Error(err)
		return -1, 0
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Error(err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		t.Error(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Error(err)
		return fd, 0
	}
	return fd, sa.(*unix.SockaddrInet4).Port
}

func rawConnect4(port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// readFull reads exactly n bytes with read(2).
func readFull(fd, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 64<<10)
	for len(out) < n {
		k, err := unix.Read(fd, buf[:min(len(buf), n-len(out))])
		if err != nil {
			return out, err
		}
		if k == 0 {
			return out, io.ErrUnexpectedEOF
		}
		out = append(out, buf[:k]...)
	}
	return out, nil
}

// writeAll writes p with write(2), one syscall unless interrupted.
func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// metricAvailable says whether r's Features report metric name available.
func metricAvailable(r running, name string) bool {
	for _, m := range r.Features().Metrics {
		if m.Name == name {
			return m.Available
		}
	}
	return false
}

func TestCapturesVectoredMsgAndSendfileSyscalls(t *testing.T) {
	for _, tier := range []CaptureTier{CaptureSocket, CaptureSyscall} {
		t.Run(tier.String(), func(t *testing.T) {
			if tier == CaptureSocket {
				requireSocketTier(t)
			}
			testVectoredMsgAndSendfile(t, tier)
		})
	}
}

func testVectoredMsgAndSendfile(t *testing.T, tier CaptureTier) {
	r := startCollector(t, Config{CaptureTier: tier})
	ns := newNetns(t)
	if err := r.Enroll(ns.ino, 3); err != nil {
		t.Fatal(err)
	}
	fileContent := bytes.Repeat([]byte("file-bytes."), 10000) // 110000 bytes
	path := filepath.Join(t.TempDir(), "payload")
	if err := os.WriteFile(path, fileContent, 0o600); err != nil {
		t.Fatal(err)
	}
	iov := [][]byte{[]byte("GET "), []byte("/vectored"), []byte(" HTTP/1.1\r\n\r\n")}
	vectored := bytes.Join(iov, nil)
	msg := []byte("sendmsg-payload")
	pong := []byte("pong-from-sendto")

	var lfd, port int
	wait(t, in(ns, func() error { lfd, port = rawListen4(t); return nil }), time.Second)
	srv := in(ns, func() error {
		defer unix.Close(lfd)
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			return fmt.Errorf("accept4: %w", err)
		}
		defer unix.Close(fd)
		// readv into two small buffers until the request is in.
		var got []byte
		for len(got) < len(vectored) {
			a, b := make([]byte, 8), make([]byte, 64)
			n, err := unix.Readv(fd, [][]byte{a, b})
			if err != nil || n == 0 {
				return fmt.Errorf("readv: %d %v", n, err)
			}
			got = append(got, append(a, b...)[:n]...)
		}
		if err := unix.Sendto(fd, pong, 0, nil); err != nil {
			return fmt.Errorf("sendto: %w", err)
		}
		buf := make([]byte, 100)
		n, _, _, _, err := unix.Recvmsg(fd, buf, nil, 0)
		if err != nil || n != len(msg) {
			return fmt.Errorf("recvmsg: %d %v", n, err)
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		for sent := 0; sent < len(fileContent); {
			n, err := unix.Sendfile(fd, int(f.Fd()), nil, len(fileContent)-sent)
			if err != nil {
				return fmt.Errorf("sendfile: %w", err)
			}
			sent += n
		}
		return nil
	})
	var clientLocal netip.AddrPort
	cli := in(ns, func() error {
		fd, err := rawConnect4(port)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa, _ := unix.Getsockname(fd)
		clientLocal = netip.AddrPortFrom(netip.AddrFrom4(sa.(*unix.SockaddrInet4).Addr), uint16(sa.(*unix.SockaddrInet4).Port))
		if n, err := unix.Writev(fd, iov); err != nil || n != len(vectored) {
			return fmt.Errorf("writev: %d %v", n, err)
		}
		buf := make([]byte, 100)
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil || !bytes.Equal(buf[:n], pong) {
			return fmt.Errorf("recvfrom: %q %v", buf[:n], err)
		}
		if n, err := unix.SendmsgN(fd, msg, nil, nil, 0); err != nil || n != len(msg) {
			return fmt.Errorf("sendmsg: %d %v", n, err)
		}
		got, err := readFull(fd, len(fileContent))
		if err != nil || !bytes.Equal(got, fileContent) {
			return fmt.Errorf("read file content: %d bytes, %v", len(got), err)
		}
		return nil
	})
	wait(t, cli, 10*time.Second)
	wait(t, srv, 10*time.Second)
	eventually(t, 5*time.Second, "both closes", func() bool { return len(r.rec.snapshot(ns.ino).closes) >= 2 })

	s := r.rec.snapshot(ns.ino)
	var cl, sv event.ConnOpen
	for _, o := range s.opens {
		switch {
		case o.Role == event.RoleClient && o.Local == clientLocal:
			cl = o
		case o.Role == event.RoleServer && o.Remote == clientLocal:
			sv = o
		}
	}
	if cl.Conn == 0 || sv.Conn == 0 {
		t.Fatalf("client or server connection missing: %+v", s.opens)
	}
	// The socket tier sees the connection, not the accept call.
	wantAccept := map[CaptureTier]event.Syscall{CaptureSocket: event.SysAccept, CaptureSyscall: event.SysAccept4}[tier]
	if cl.InProgress || !cl.Success || sv.Syscall != wantAccept {
		t.Fatalf("blocking connect/accept4 reported as %+v / %+v", cl, sv)
	}
	streamOf(t, s, cl.Conn, event.Egress).complete(t, "client egress", append(bytes.Clone(vectored), msg...))
	streamOf(t, s, sv.Conn, event.Ingress).complete(t, "server ingress", append(bytes.Clone(vectored), msg...))
	streamOf(t, s, cl.Conn, event.Ingress).complete(t, "client ingress", append(bytes.Clone(pong), fileContent...))

	syscallsOf := func(conn event.ConnID, dir event.Direction) map[event.Syscall]uint64 {
		m := map[event.Syscall]uint64{}
		for _, d := range streamOf(t, s, conn, dir).events {
			m[d.Syscall] += uint64(d.Size)
		}
		return m
	}
	if got := syscallsOf(cl.Conn, event.Egress); got[event.SysWritev] != uint64(len(vectored)) || got[event.SysSendmsg] != uint64(len(msg)) {
		t.Fatalf("client egress bytes by syscall %v, want writev %d sendmsg %d", got, len(vectored), len(msg))
	}
	// The three iovecs of the writev are gathered into one event, which
	// carries the syscall's metrics.
	var writevEvents []event.Data
	for _, d := range streamOf(t, s, cl.Conn, event.Egress).events {
		if d.Syscall == event.SysWritev {
			writevEvents = append(writevEvents, d)
		}
	}
	// Both tiers measure the operation's packets (the socket tier through
	// its op window) where the features say so; where they do not (socket
	// tier without tcp_sendmsg_locked, 6.12) no send metrics are reported.
	sendMetrics := metricAvailable(r, "packets")
	if len(writevEvents) != 1 || !bytes.Equal(writevEvents[0].Payload, vectored) ||
		(sendMetrics && (writevEvents[0].Send == nil || writevEvents[0].Send.Packets == 0)) ||
		(!sendMetrics && writevEvents[0].Send != nil) {
		t.Fatalf("writev of %d iovecs gave %d events (%+v), want one event with all %d bytes and the send's packets",
			len(iov), len(writevEvents), writevEvents, len(vectored))
	}
	if got := syscallsOf(sv.Conn, event.Ingress); got[event.SysReadv] != uint64(len(vectored)) || got[event.SysRecvmsg] != uint64(len(msg)) {
		t.Fatalf("server ingress bytes by syscall %v, want readv %d recvmsg %d", got, len(vectored), len(msg))
	}
	if got := syscallsOf(cl.Conn, event.Ingress); got[event.SysRecvfrom] != uint64(len(pong)) || got[event.SysRead] != uint64(len(fileContent)) {
		t.Fatalf("client ingress bytes by syscall %v", got)
	}

	// Server egress: sendto with payload, then sendfile size-only.
	egress := streamOf(t, s, sv.Conn, event.Egress)
	if egress.gaps != 0 || egress.size != uint64(len(pong)+len(fileContent)) {
		t.Fatalf("server egress covers %d bytes with %d gaps, want %d", egress.size, egress.gaps, len(pong)+len(fileContent))
	}
	if !bytes.Equal(egress.captured, pong) {
		t.Fatalf("server egress payload %q, want only the sendto bytes %q", egress.captured, pong)
	}
	var sendfileBytes uint64
	for _, d := range egress.events {
		if d.Syscall == event.SysSendfile {
			if !d.Truncated || len(d.Payload) != 0 {
				t.Fatalf("sendfile event carries payload or is not truncated: %+v", d)
			}
			sendfileBytes += uint64(d.Size)
		}
	}
	if sendfileBytes != uint64(len(fileContent)) {
		t.Fatalf("sendfile events cover %d bytes, want %d", sendfileBytes, len(fileContent))
	}
}

func TestReportsRefusedConnect(t *testing.T) {
	r := startCollector(t, Config{})
	ns := newNetns(t)
	if err := r.Enroll(ns.ino, 4); err != nil {
		t.Fatal(err)
	}
	var port int
	wait(t, in(ns, func() error {
		fd, p := rawListen4(t) // find a free port, then free it
		port = p
		return unix.Close(fd)
	}), time.Second)
	wait(t, in(ns, func() error {
		fd, err := rawConnect4(port)
		if err != unix.ECONNREFUSED {
			unix.Close(fd)
			return fmt.Errorf("connect to closed port: %v, want ECONNREFUSED", err)
		}
		return nil
	}), 5*time.Second)
	eventually(t, 5*time.Second, "the failed connect", func() bool { return len(r.rec.snapshot(ns.ino).opens) >= 1 })
	o := r.rec.snapshot(ns.ino).opens[0]
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	if o.Success || o.Errno != int32(unix.ECONNREFUSED) || o.Role != event.RoleClient || o.Remote != want || o.Syscall != event.SysConnect {
		t.Fatalf("refused connect reported as %+v; want Success=false Errno=111 client -> %v", o, want)
	}
	t.Logf("refused connect: %+v", o)
}

// TestCapturesLargeTransfersWithExactSizes sends 3 MiB in three write
// syscalls with a 256 KiB capture limit: every syscall reports at most
// MaxChunksPerSyscall chunks with payload, the rest size-only, and past the
// limit only its first chunk; sizes and offsets cover every byte, and what
// payload there is matches the stream.
func TestCapturesLargeTransfersWithExactSizes(t *testing.T) {
	const limit = 256 << 10
	r := startCollector(t, Config{CaptureLimit: limit})
	ns := newNetns(t)
	if err := r.Enroll(ns.ino, 5); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i * 7 >> 3)
	}
	addrCh := make(chan string, 1)
	srv := in(ns, func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		addrCh <- l.Addr().String()
		c, err := l.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, data) {
			return fmt.Errorf("server got %d bytes (%v)", len(got), err)
		}
		return nil
	})
	port := (<-addrCh)[len("127.0.0.1:"):]
	wait(t, in(ns, func() error {
		var p int
		fmt.Sscan(port, &p)
		fd, err := rawConnect4(p)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for i := range 3 {
			if err := writeAll(fd, data[i<<20:(i+1)<<20]); err != nil {
				return err
			}
		}
		return nil
	}), 20*time.Second)
	wait(t, srv, 10*time.Second)
	eventually(t, 5*time.Second, "both closes", func() bool { return len(r.rec.snapshot(ns.ino).closes) >= 2 })

	s := r.rec.snapshot(ns.ino)
	for _, o := range s.opens {
		dir := event.Egress
		if o.Role == event.RoleServer {
			dir = event.Ingress
		}
		st := streamOf(t, s, o.Conn, dir)
		if st.gaps != 0 || st.size != uint64(len(data)) {
			t.Fatalf("%v: %d bytes covered with %d gaps, want %d", o.Role, st.size, st.gaps, len(data))
		}
		// Model the kernel side: per syscall (events sharing Start and
		// End), payload in at most MaxChunksPerSyscall chunks while the
		// connection's budget lasts, and past it the syscall's first
		// chunk.
		budget := uint64(limit)
		var truncated int
		for i := 0; i < len(st.events); {
			j, size, withPayload := i, uint64(0), 0
			for ; j < len(st.events) && st.events[j].Start == st.events[i].Start && st.events[j].End == st.events[i].End; j++ {
				d := st.events[j]
				size += uint64(d.Size)
				if len(d.Payload) > 0 {
					withPayload++
				}
				if !bytes.Equal(d.Payload, data[d.StreamOffset:d.StreamOffset+uint64(len(d.Payload))]) {
					t.Fatalf("%v: Seq %d payload differs from the stream at offset %d", o.Role, d.Seq, d.StreamOffset)
				}
				if d.Truncated {
					truncated++
				}
			}
			want := min(size, uint64(MaxChunksPerSyscall*DefaultChunkSize), max(budget, DefaultChunkSize))
			var got uint64
			for _, d := range st.events[i:j] {
				got += uint64(len(d.Payload))
			}
			if got != want || withPayload > MaxChunksPerSyscall {
				t.Fatalf("%v: syscall of %d bytes captured %d in %d chunks, want %d", o.Role, size, got, withPayload, want)
			}
			budget -= min(budget, got)
			i = j
		}
		if truncated == 0 {
			t.Fatalf("%v: nothing flagged truncated in 3 MiB with a 256 KiB limit", o.Role)
		}
		t.Logf("%v: %d events, %d truncated, %d payload bytes of %d", o.Role, len(st.events), truncated, len(st.captured), st.size)
	}
	counters, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel counters: %v", counters)
	if counters["capture_limit"] == 0 {
		t.Fatalf("capture limit reached but not counted: %v", counters)
	}
}

func TestNoPayloadReportsSizesAndMetricsButNoBytes(t *testing.T) {
	// Either capture tier (WEIR_TEST_CAPTURE_TIER): both count each
	// operation's packets.
	r := startCollector(t, Config{NoPayload: true})
	ns := newNetns(t)
	if err := r.Enroll(ns.ino, 4); err != nil {
		t.Fatal(err)
	}
	iov := [][]byte{[]byte("GET /private"), []byte(" HTTP/1.1\r\n\r\n")}
	request := bytes.Join(iov, nil)
	response := bytes.Repeat([]byte("secret."), 3000) // 21000 bytes: several chunks' worth

	var lfd, port int
	wait(t, in(ns, func() error { lfd, port = rawListen4(t); return nil }), time.Second)
	srv := in(ns, func() error {
		defer unix.Close(lfd)
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			return fmt.Errorf("accept4: %w", err)
		}
		defer unix.Close(fd)
		if got, err := readFull(fd, len(request)); err != nil || !bytes.Equal(got, request) {
			return fmt.Errorf("read request: %q %v", got, err)
		}
		return writeAll(fd, response)
	})
	cli := in(ns, func() error {
		fd, err := rawConnect4(port)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if n, err := unix.Writev(fd, iov); err != nil || n != len(request) {
			return fmt.Errorf("writev: %d %v", n, err)
		}
		if got, err := readFull(fd, len(response)); err != nil || !bytes.Equal(got, response) {
			return fmt.Errorf("read response: %d bytes, %v", len(got), err)
		}
		return nil
	})
	wait(t, cli, 10*time.Second)
	wait(t, srv, 10*time.Second)
	eventually(t, 5*time.Second, "both closes", func() bool { return len(r.rec.snapshot(ns.ino).closes) >= 2 })

	s := r.rec.snapshot(ns.ino)
	// A connect interrupted by a signal (the Go runtime preempts with
	// signals) is reported as its own failed attempt; the test is about
	// the one that carried the bytes.
	var cl []event.ConnOpen
	for _, o := range s.connsBy(event.RoleClient) {
		if o.Success {
			cl = append(cl, o)
		}
	}
	if len(cl) != 1 {
		t.Fatalf("successful client connections %+v, want one", cl)
	}
	egress := streamOf(t, s, cl[0].Conn, event.Egress)
	ingress := streamOf(t, s, cl[0].Conn, event.Ingress)
	if egress.gaps != 0 || egress.size != uint64(len(request)) || ingress.gaps != 0 || ingress.size != uint64(len(response)) {
		t.Fatalf("client streams cover %d and %d bytes (gaps %d, %d), want %d and %d",
			egress.size, ingress.size, egress.gaps, ingress.gaps, len(request), len(response))
	}
	if len(egress.captured) != 0 || len(ingress.captured) != 0 {
		t.Fatalf("payload copied with NoPayload: %q / %.40q", egress.captured, ingress.captured)
	}
	// One size-only event per syscall, each carrying its metrics (a
	// send's only where the features say sends have them: not under the
	// socket tier without tcp_sendmsg_locked, 6.12).
	sendMetrics := metricAvailable(r, "packets")
	for _, d := range append(egress.events, ingress.events...) {
		if !d.Truncated || (d.Direction == event.Egress && (d.Send == nil) == sendMetrics) || (d.Direction == event.Ingress && d.Recv == nil) {
			t.Fatalf("event %+v: want size-only with the syscall's metrics (send metrics available: %v)", d, sendMetrics)
		}
	}
	if len(egress.events) != 1 || (sendMetrics && egress.events[0].Send.Packets == 0) {
		t.Fatalf("writev gave %d events (%+v), want one with packets counted", len(egress.events), egress.events)
	}
	counters, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"chunk_truncated", "capture_limit", "read_user_failed"} {
		if counters[name] != 0 {
			t.Errorf("counter %s = %d: leaving payload out is not a loss", name, counters[name])
		}
	}
}
