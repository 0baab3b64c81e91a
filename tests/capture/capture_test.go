package capture

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

// checkClientConn asserts what the daemon knows about one connection a
// client peer made (and its dump) against the peer's own record.
func (f *fixture) checkClientConn(t *testing.T, c harness.Connection, rep peers.ConnReport, server netip.AddrPort, pid int) {
	t.Helper()
	local := mustAddrPort(t, rep.Local)
	what := fmt.Sprintf("client connection %s (id %d)", local, c.ID)
	if c.Role != "client" {
		t.Errorf("%s: role %q, want client", what, c.Role)
	}
	if c.Remote != server {
		t.Errorf("%s: remote %s, want %s", what, c.Remote, server)
	}
	if pid != 0 && int(c.PID) != pid {
		t.Errorf("%s: pid %d, want the client's %d", what, c.PID, pid)
	}
	if c.Comm != selfComm(t) {
		t.Errorf("%s: comm %q, want %q", what, c.Comm, selfComm(t))
	}
	if c.Connect == nil || c.Connect.Syscall != "connect" || !c.Connect.Success {
		t.Errorf("%s: connect %+v, want a successful connect", what, c.Connect)
	}
	checkCounts(t, what, c, uint64(rep.Sent), uint64(rep.Recv))
	f.checkDump(t, c, readFile(t, rep.SentFile), readFile(t, rep.RecvFile))
}

// checkServerConn is checkClientConn for the server's side of the same
// connection: its egress is what the client read, its ingress what the
// client wrote.
func (f *fixture) checkServerConn(t *testing.T, c harness.Connection, rep peers.ConnReport, server netip.AddrPort) {
	t.Helper()
	what := fmt.Sprintf("server connection from %s (id %d)", rep.Local, c.ID)
	if c.Role != "server" {
		t.Errorf("%s: role %q, want server", what, c.Role)
	}
	if c.Local != server {
		t.Errorf("%s: local %s, want %s", what, c.Local, server)
	}
	if c.Connect == nil || !strings.HasPrefix(c.Connect.Syscall, "accept") {
		t.Errorf("%s: open %+v, want accept/accept4", what, c.Connect)
	}
	checkCounts(t, what, c, uint64(rep.Recv), uint64(rep.Sent))
	f.checkDump(t, c, readFile(t, rep.RecvFile), readFile(t, rep.SentFile))
}

func checkCounts(t *testing.T, what string, c harness.Connection, sent, recv uint64) {
	t.Helper()
	if c.BytesSent != sent || c.BytesRecv != recv {
		t.Errorf("%s: bytes sent/recv %d/%d, want %d/%d", what, c.BytesSent, c.BytesRecv, sent, recv)
	}
	if c.Gaps != 0 || c.GapBytes != 0 || c.Truncated != 0 {
		t.Errorf("%s: %d gaps (%d bytes), %d truncated chunks; want a complete capture", what, c.Gaps, c.GapBytes, c.Truncated)
	}
	if c.SyscallsSent == 0 || c.SyscallsRecv == 0 {
		t.Errorf("%s: syscalls sent/recv %d/%d, want both > 0", what, c.SyscallsSent, c.SyscallsRecv)
	}
	if cl := c.Close; cl != nil {
		if cl.KernelBytesSent != nil && *cl.KernelBytesSent != sent {
			t.Errorf("%s: kernel bytes sent %d, want %d", what, *cl.KernelBytesSent, sent)
		}
		if cl.KernelBytesRecv != nil && *cl.KernelBytesRecv != recv {
			t.Errorf("%s: kernel bytes recv %d, want %d", what, *cl.KernelBytesRecv, recv)
		}
	}
}

func locals(t *testing.T, reps []peers.ConnReport) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(reps))
	for _, r := range reps {
		out = append(out, mustAddrPort(t, r.Local))
	}
	return out
}

// The core promise: a client started after enrollment, 100 requests on one
// keep-alive connection and 100 on fresh connections, gives exactly 101
// connections on each side with the right roles and addresses, and the
// captured bytes of both directions are exactly what the client sent and
// received.
func TestEveryConnectionOfEnrolledPodsIsCapturedByteForByte(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	srv := f.startServer(t)
	base := "http://" + srv.String()
	paths := "/cap/bytes/3000,/cap/hello,/cap/status/404,/cap/status/204"

	var ka, nc peers.HTTPClientReport
	if err := peers.RunJSON(runCtx(t), f.client, &ka, "http-client", "-url", base, "-n", "100", "-paths", paths, "-record", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := peers.RunJSON(runCtx(t), f.client, &nc, "http-client", "-url", base, "-n", "100", "-paths", paths, "-new-conn", "-record", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if len(ka.Conns) != 1 || len(nc.Conns) != 100 {
		t.Fatalf("client used %d keep-alive and %d new connections, want 1 and 100", len(ka.Conns), len(nc.Conns))
	}
	all := append(append([]peers.ConnReport{}, ka.Conns...), nc.Conns...)
	addrs := locals(t, all)
	clientSide := f.waitClosed(t, f.client, "local", addrs)
	serverSide := f.waitClosed(t, f.server, "remote", addrs)

	if got := f.conns(t, f.client); len(got) != len(all) {
		t.Errorf("client pod: daemon lists %d connections, want exactly %d", len(got), len(all))
	}
	if got := f.conns(t, f.server); len(got) != len(all) {
		t.Errorf("server pod: daemon lists %d connections, want exactly %d", len(got), len(all))
	}
	for i, rep := range all {
		pid := nc.PID
		if i == 0 {
			pid = ka.PID
		}
		f.checkClientConn(t, clientSide[i], rep, srv, pid)
		f.checkServerConn(t, serverSide[i], rep, srv)
		if t.Failed() && i > 3 {
			t.Fatalf("stopping after %d connections checked", i+1)
		}
	}
	var sent, recv int64
	for _, r := range all {
		sent, recv = sent+r.Sent, recv+r.Recv
	}
	t.Logf("%d connections checked on both sides: %d bytes sent and %d received by the client, all captured", len(all), sent, recv)
}

// Traffic to the enrolled server from a netns that is not enrolled, and from
// the host, is captured on the server's side only: the other side belongs
// to no enrolled pod and must not appear anywhere.
func TestUnenrolledNetnsAndHostAreNotCaptured(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	srv := f.startServer(t)
	base := "http://" + srv.String()
	// A pod on a network without the weir plugin: never enrolled.
	plain := harness.NewNetwork(t, f.bins, harness.NetworkOptions{})
	outsider := plain.AddPod(t, harness.PodSpec{Namespace: "capture", Name: "outsider"})

	var fromPod, fromHost peers.HTTPClientReport
	if err := peers.RunJSON(runCtx(t), outsider, &fromPod, "http-client", "-url", base, "-n", "5", "-paths", "/outsider"); err != nil {
		t.Fatal(err)
	}
	if err := peers.RunJSON(runCtx(t), harness.Host{}, &fromHost, "http-client", "-url", base, "-n", "5", "-paths", "/host", "-new-conn"); err != nil {
		t.Fatal(err)
	}
	addrs := locals(t, append(append([]peers.ConnReport{}, fromPod.Conns...), fromHost.Conns...))
	// The server side is enrolled and must be captured: this proves the
	// daemon saw the traffic, so the absence below means something.
	f.waitClosed(t, f.server, "remote", addrs)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	all, err := f.daemon.Connections(ctx, harness.ConnQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range all {
		for _, a := range addrs {
			if c.Local == a {
				t.Errorf("connection %d of pid %d (%s) with local address %s captured; it belongs to an unenrolled netns or the host", c.ID, c.PID, c.Comm, a)
			}
		}
		if int(c.PID) == fromPod.PID || int(c.PID) == fromHost.PID {
			t.Errorf("connection %d of unenrolled process %d captured: %+v", c.ID, c.PID, c)
		}
	}
}

// A process that connects, sends, reads and exits within milliseconds is
// captured completely: it is monitored from its first instruction because
// its netns is enrolled, not because user space noticed it in time.
func TestShortLivedProcessesAreCapturedCompletely(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	srv := f.startServer(t)
	const runs = 20
	reps := make([]peers.ShortReport, runs)
	for i := range reps {
		if err := peers.RunJSON(runCtx(t), f.client, &reps[i], "short", "-addr", srv.String(), "-path", fmt.Sprintf("/short/%d", i), "-record", t.TempDir()); err != nil {
			t.Fatal(err)
		}
		if reps[i].Status != 200 {
			t.Fatalf("short client %d: status %d", i, reps[i].Status)
		}
	}
	conns := make([]peers.ConnReport, runs)
	for i, r := range reps {
		conns[i] = r.Conn
	}
	got := f.waitClosed(t, f.client, "local", locals(t, conns))
	for i, r := range reps {
		f.checkClientConn(t, got[i], r.Conn, srv, r.PID)
	}
}

// A process that exits holding its socket makes no close(2): the kernel
// closes it during the exit, after it reported the exit. Under the socket
// tier that close is reported and ends the connection with the kernel's
// byte totals; the syscall tier ends it at the exit.
func TestConnectionsOfAProcessThatExitsHoldingThemAreClosed(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	srv := f.startServer(t)
	const runs = 5
	reps := make([]peers.ShortReport, runs)
	for i := range reps {
		if err := peers.RunJSON(runCtx(t), f.client, &reps[i], "short", "-no-close", "-addr", srv.String(), "-path", fmt.Sprintf("/held/%d", i), "-record", t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	conns := make([]peers.ConnReport, runs)
	for i, r := range reps {
		conns[i] = r.Conn
	}
	want := "closed"
	if f.captureTier(t) == "syscall" {
		want = "process-exit"
	}
	got := f.waitClosed(t, f.client, "local", locals(t, conns))
	for i, r := range reps {
		f.checkClientConn(t, got[i], r.Conn, srv, r.PID)
		if got[i].CloseReason != want {
			t.Errorf("connection %s: close reason %q, want %q", r.Conn.Local, got[i].CloseReason, want)
		}
	}
}

// IPv6 between two pods of a dual-stack network: IPv6 addresses, roles and
// the bytes of both directions.
func TestIPv6ConnectionsBetweenPodsAreCaptured(t *testing.T) {
	f := newFixture(t, fixtureOptions{ipv6: true})
	f.startServer(t) // listens on [::]:8080
	var v6 netip.Addr
	for _, p := range f.server.IPs() {
		if p.Addr().Is6() {
			v6 = p.Addr()
		}
	}
	if !v6.IsValid() {
		t.Fatalf("server pod has no IPv6 address: %v", f.server.IPs())
	}
	srv := netip.AddrPortFrom(v6, serverPort)
	base := "http://" + srv.String()
	var ka, nc peers.HTTPClientReport
	// The bridge plugin returns once DAD settled, so no wait is needed; the
	// client still fails loudly if the address is not usable.
	if err := peers.RunJSON(runCtx(t), f.client, &ka, "http-client", "-url", base, "-n", "20", "-paths", "/v6/bytes/2000,/v6/x", "-record", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := peers.RunJSON(runCtx(t), f.client, &nc, "http-client", "-url", base, "-n", "5", "-new-conn", "-paths", "/v6/y", "-record", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	all := append(append([]peers.ConnReport{}, ka.Conns...), nc.Conns...)
	addrs := locals(t, all)
	for _, a := range addrs {
		if !a.Addr().Is6() {
			t.Fatalf("client used %s, not IPv6", a)
		}
	}
	clientSide := f.waitClosed(t, f.client, "local", addrs)
	serverSide := f.waitClosed(t, f.server, "remote", addrs)
	for i, rep := range all {
		pid := nc.PID
		if i == 0 {
			pid = ka.PID
		}
		f.checkClientConn(t, clientSide[i], rep, srv, pid)
		f.checkServerConn(t, serverSide[i], rep, srv)
	}
}

// Transfers far above the chunk size and the capture limit: the payload is
// cut (and flagged truncated) but the byte counts stay exact, for write(2)
// from the Go server and sendfile(2) from nginx.
func TestLargeTransfersAreFlaggedTruncatedWithExactCounts(t *testing.T) {
	const (
		chunk = 4096
		limit = 64 << 10
		size  = 10 << 20
	)
	f := newFixture(t, fixtureOptions{daemonArgs: []string{
		"--bpf.chunk-size", strconv.Itoa(chunk),
		"--bpf.capture-limit", strconv.Itoa(limit),
	}})
	srv := f.startServer(t)
	ip := f.server.IPv4()
	ngx := netip.AddrPortFrom(ip, 80)
	peers.StartNginx(t, f.server, peers.NginxOptions{Listen: ngx.String(), Files: map[string]int{"big": size}})

	for _, tc := range []struct {
		name, url string
		server    netip.AddrPort
	}{
		{"write", fmt.Sprintf("http://%s/big/bytes/%d", srv, size), srv},
		{"sendfile", fmt.Sprintf("http://%s/files/big", ngx), ngx},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rep peers.HTTPClientReport
			if err := peers.RunJSON(runCtx(t), f.client, &rep, "http-client", "-url", tc.url, "-paths", "", "-n", "1", "-record", t.TempDir()); err != nil {
				t.Fatal(err)
			}
			if len(rep.Conns) != 1 || rep.Results[0].RespBody != size {
				t.Fatalf("client: %d connections, body %d bytes; want 1 and %d", len(rep.Conns), rep.Results[0].RespBody, size)
			}
			cr := rep.Conns[0]
			a := mustAddrPort(t, cr.Local)
			c := f.waitClosed(t, f.client, "local", []netip.AddrPort{a})[0]
			s := f.waitClosed(t, f.server, "remote", []netip.AddrPort{a})[0]
			if c.BytesSent != uint64(cr.Sent) || c.BytesRecv != uint64(cr.Recv) {
				t.Errorf("client side: bytes sent/recv %d/%d, want exactly %d/%d", c.BytesSent, c.BytesRecv, cr.Sent, cr.Recv)
			}
			if s.BytesSent != uint64(cr.Recv) || s.BytesRecv != uint64(cr.Sent) {
				t.Errorf("server side: bytes sent/recv %d/%d, want exactly %d/%d", s.BytesSent, s.BytesRecv, cr.Recv, cr.Sent)
			}
			if c.Truncated == 0 || s.Truncated == 0 {
				t.Errorf("truncated chunks client/server %d/%d: a %d-byte transfer over %d-byte chunks must be flagged", c.Truncated, s.Truncated, size, chunk)
			}
			recv := readFile(t, cr.RecvFile)
			for _, side := range []struct {
				conn harness.Connection
				dir  string
			}{{c, "ingress"}, {s, "egress"}} {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				d, err := harness.WaitDump(ctx, f.dumpDir, side.conn.ID)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				b := d.Ingress
				if side.dir == "egress" {
					b = d.Egress
				}
				// Past the limit, each syscall still gives its first
				// chunk (where message headers start).
				syscalls := side.conn.SyscallsRecv
				if side.dir == "egress" {
					syscalls = side.conn.SyscallsSent
				}
				if bound := uint64(limit) + syscalls*chunk; uint64(len(b)) > bound {
					t.Errorf("%s dump of connection %d holds %d bytes, above the capture limit %d plus one %d-byte chunk for each of %d syscalls",
						side.dir, side.conn.ID, len(b), limit, chunk, syscalls)
				}
				// The response header travels in the first chunk, which
				// is captured whole.
				n := min(len(b), 256)
				if n == 0 || !bytes.Equal(b[:n], recv[:n]) {
					t.Errorf("%s dump of connection %d: first %d bytes %q differ from what the client read %q", side.dir, side.conn.ID, n, b[:n], recv[:min(len(recv), 256)])
				}
			}
		})
	}
}

// A keep-alive connection that has moved far more than the capture limit
// keeps yielding HTTP records: past the limit the kernel side still
// captures the first chunk of every syscall, where each request and
// response head starts, and bodies are skipped by their exact sizes.
func TestKeepAliveConnectionPastTheCaptureLimitKeepsYieldingRecords(t *testing.T) {
	const (
		limit = 16 << 10
		n     = 60
	)
	f := newFixture(t, fixtureOptions{daemonArgs: []string{"--bpf.capture-limit", strconv.Itoa(limit)}})
	srv := f.startServer(t)
	var rep peers.HTTPClientReport
	if err := peers.RunJSON(runCtx(t), f.client, &rep, "http-client", "-url", "http://"+srv.String(),
		"-n", strconv.Itoa(n), "-paths", "/past/bytes/2000"); err != nil {
		t.Fatal(err)
	}
	if len(rep.Conns) != 1 || rep.Conns[0].Recv < 4*limit {
		t.Fatalf("client: %d connections, %d bytes received; want 1 connection well past the %d-byte limit", len(rep.Conns), rep.Conns[0].Recv, limit)
	}
	for _, pod := range []*harness.Pod{f.client, f.server} {
		var got []harness.Request
		err := harness.Poll(runCtx(t), 100*time.Millisecond, func() (bool, error) {
			reqs, err := f.daemon.Requests(runCtx(t), podKey(pod), 1000)
			got = nil
			for _, r := range reqs {
				if r.Path == "/past/bytes/2000" {
					got = append(got, r)
				}
			}
			return len(got) >= n, err
		})
		if err != nil || len(got) != n {
			t.Fatalf("%s: %d records of %d requests (%v)", podKey(pod), len(got), n, err)
		}
		for _, r := range got {
			if r.Status != 200 || r.Method != "GET" {
				t.Fatalf("%s: record %+v, want GET 200", podKey(pod), r)
			}
		}
	}
}

// A connect refused by the peer is recorded as a failed connect with its
// errno.
func TestRefusedConnectIsRecordedAsFailed(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	target := netip.AddrPortFrom(f.server.IPv4(), 9) // nothing listens there
	var d peers.DialReport
	if err := peers.RunJSON(runCtx(t), f.client, &d, "dial", "-blocking", "-addr", target.String()); err != nil {
		t.Fatal(err)
	}
	if !d.Refused {
		t.Fatalf("connect to %s was not refused: %+v", target, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var got *harness.Connection
	err := harness.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		cs, err := f.daemon.Connections(ctx, harness.ConnQuery{Pod: podKey(f.client)})
		for i := range cs {
			if cs[i].Remote == target {
				got = &cs[i]
			}
		}
		return got != nil, err
	})
	if err != nil {
		t.Fatalf("no connection to %s recorded for the refused connect: %v", target, err)
	}
	if got.Role != "client" || got.Connect == nil || got.Connect.Success || got.Connect.Errno != int32(syscall.ECONNREFUSED) {
		t.Errorf("refused connect recorded as role %q, connect %+v; want a failed connect with errno %d", got.Role, got.Connect, syscall.ECONNREFUSED)
	}
	if got.BytesSent != 0 || got.BytesRecv != 0 {
		t.Errorf("refused connect carries %d/%d bytes", got.BytesSent, got.BytesRecv)
	}
}

// More data than a tiny ring buffer can hold: the daemon stays up and
// answers, the kernel's losses are counted in /metrics, and the affected
// connections show gaps instead of pretending to be complete.
func TestOverloadKeepsDaemonUpAndCountsLosses(t *testing.T) {
	f := newFixture(t, fixtureOptions{daemonArgs: []string{"--bpf.ring-buffer-size", "16384"}})
	srv := f.startServer(t)
	base := "http://" + srv.String()
	// Bounded burst: 4 clients at once, each 3 × 4 MiB on new connections
	// and 200 small keep-alive requests.
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			var a, b peers.HTTPClientReport
			err := peers.RunJSON(runCtx(t), f.client, &a, "http-client", "-url", base, "-n", "3", "-new-conn", "-paths", "/ov/bytes/4194304")
			if err == nil {
				err = peers.RunJSON(runCtx(t), f.client, &b, "http-client", "-url", base, "-n", "200", "-concurrency", "4", "-paths", fmt.Sprintf("/ov/%d", i))
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var lost float64
	err := harness.Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		m, err := f.daemon.Get(ctx, "/metrics")
		if err != nil {
			return false, err
		}
		lost = sumMetric(m, "weir_bpf_events_lost_total")
		return lost > 0, nil
	})
	if err != nil {
		t.Fatalf("weir_bpf_events_lost_total stayed %v after overloading a 16 KiB ring buffer: %v", lost, err)
	}
	if !f.daemon.Running() {
		t.Fatal("daemon exited under overload")
	}
	if _, err := f.daemon.Get(ctx, "/readyz"); err != nil {
		t.Fatalf("daemon not ready after overload: %v", err)
	}
	var gaps uint64
	for _, p := range []*harness.Pod{f.client, f.server} {
		for _, c := range f.conns(t, p) {
			gaps += c.Gaps
		}
	}
	if gaps == 0 {
		t.Errorf("%v events lost, yet no connection reports a gap: losses are hidden", lost)
	}
	t.Logf("events lost: %v; gaps across connections: %d", lost, gaps)
}

// sumMetric adds up every sample of a metric family in Prometheus text
// format ("name{labels} value [timestamp]" or "name value [timestamp]").
func sumMetric(text []byte, name string) float64 {
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || rest == "" {
			continue
		}
		switch rest[0] {
		case '{':
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		case ' ':
		default:
			continue // another family sharing the prefix
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

func TestSumMetricAddsEverySampleOfOneFamily(t *testing.T) {
	text := []byte(`# HELP weir_bpf_events_lost_total x
# TYPE weir_bpf_events_lost_total counter
weir_bpf_events_lost_total{reason="ringbuf_full",ring="data"} 3
weir_bpf_events_lost_total{reason="map_full"} 2 1700000000
weir_bpf_events_lost_total_other 100
weir_bpf_events_lost 50
`)
	if got := sumMetric(text, "weir_bpf_events_lost_total"); got != 5 {
		t.Errorf("sumMetric = %v, want 5", got)
	}
}

// writev(2) and readv(2): a request written as four segments in one
// syscall, a response read into two buffers per syscall, captured exactly.
func TestVectoredIOIsCapturedByteForByte(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	srv := f.startServer(t)
	var rep peers.VectoredReport
	if err := peers.RunJSON(runCtx(t), f.client, &rep, "vectored", "-addr", srv.String(), "-path", "/vec/bytes/5000", "-record", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if rep.Status != 200 || rep.Readvs < 2 {
		t.Fatalf("vectored client: status %d after %d readv calls; want 200 over several", rep.Status, rep.Readvs)
	}
	a := mustAddrPort(t, rep.Conn.Local)
	c := f.waitClosed(t, f.client, "local", []netip.AddrPort{a})[0]
	f.checkClientConn(t, c, rep.Conn, srv, rep.PID)
	if c.SyscallsSent != 1 {
		t.Errorf("the request went out in one writev, the daemon counts %d send syscalls", c.SyscallsSent)
	}
	s := f.waitClosed(t, f.server, "remote", []netip.AddrPort{a})[0]
	f.checkServerConn(t, s, rep.Conn, srv)
}
