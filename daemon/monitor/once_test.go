package monitor

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
)

// completeSyscall returns the chunks of one syscall with the kernel's
// metrics on the last chunk, as the kernel side reports them: the
// operation is complete when that chunk arrives.
func (g *connGen) completeSyscall(dir event.Direction, b []byte, start, end event.Timestamp) []event.Data {
	evs := g.syscall(dir, b, 4096, start, end)
	last := &evs[len(evs)-1]
	if dir == event.Egress {
		last.Send = &event.SendMetrics{Measured: event.MetricPackets, Packets: 1}
	} else {
		last.Recv = &event.RecvMetrics{Measured: event.MetricPackets, Packets: 1}
	}
	return evs
}

// onceAccounting checks what a receiver that counts every operation it is
// given (the SkyWalking OAP) would get from the recorder as an OpConsumer:
// every operation handed to KernelOp exactly once, either through ConnOp or
// in one exchange's Ops, and nothing else. It returns the ConnOp protocols
// by operation.
func onceAccounting(t *testing.T, rec *recorder) map[*flow.KernelOp]flow.Protocol {
	t.Helper()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	seen := map[*flow.KernelOp]int{}
	protos := map[*flow.KernelOp]flow.Protocol{}
	for _, c := range rec.connOps {
		seen[c.op]++
		protos[c.op] = c.proto
	}
	for _, ex := range rec.exchanges {
		for _, op := range ex.Ops {
			seen[op]++
		}
	}
	for _, op := range rec.ops {
		if n := seen[op]; n != 1 {
			t.Errorf("%s [%d,%d] bytes=%d handed on %d times, want once", op.Kind, op.Start, op.End, op.Bytes, n)
		}
		delete(seen, op)
	}
	for op := range seen {
		t.Errorf("%s [%d,%d] handed on but never completed", op.Kind, op.Start, op.End)
	}
	return protos
}

// opsByStream describes each exchange's operations (opsOf) by its HTTP/2
// stream. rec.mu must be held.
func opsByStream(rec *recorder) map[uint32]string {
	got := map[uint32]string{}
	for _, ex := range rec.exchanges {
		got[ex.Record.StreamID] = opsOf(ex)
	}
	return got
}

// opsOf describes an exchange's operations as "read@start write@start".
func opsOf(ex *flow.Exchange) string {
	var b strings.Builder
	for i, op := range ex.Ops {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s@%d", op.Kind, op.Start)
	}
	return b.String()
}

// plainTCPEcho is a client's request/reply echo with a cache: five writes
// and five reads on a connection that is not HTTP.
func plainTCPEcho(sink event.Sink) {
	g := &connGen{id: 21, proc: proc(1)}
	sink.ConnOpen(g.open(event.RoleClient, "10.0.0.2:40000", "192.0.2.9:6379", 1000))
	ts := event.Timestamp(2000)
	for i := range 5 {
		feed(sink, g.completeSyscall(event.Egress, fmt.Appendf(nil, "*1\r\n$4\r\nPING%d\r\n", i), ts, ts+100))
		feed(sink, g.completeSyscall(event.Ingress, []byte("+PONG\r\n"), ts+200, ts+300))
		ts += 1000
	}
	sink.ConnClose(event.ConnClose{Conn: 21, Proc: g.proc, FD: 5, Start: ts, End: ts + 100, Success: true})
}

// concurrentHTTP2Streams is a server's h2c connection: the preface and
// SETTINGS, then streams 1 and 3 overlapping, 3 answered first.
func concurrentHTTP2Streams(sink event.Sink) {
	g := &connGen{id: 22, proc: proc(1)}
	sink.ConnOpen(g.open(event.RoleServer, "10.0.0.2:80", "10.0.0.3:40000", 1000))
	settings := h2Frame(0x4, 0, 0, nil)
	reqBlock := append([]byte{0x82, 0x86, 0x84, 0x01, 11}, "10.0.0.2:80"...)
	respBlock := append([]byte{0x88, 0x0f, 0x10, 9}, "text/html"...)
	const endStream, endHeaders = 0x1, 0x4
	req := func(id uint32) []byte { return h2Frame(0x1, endStream|endHeaders, id, reqBlock) }
	resp := func(id uint32) []byte {
		b := h2Frame(0x1, endHeaders, id, respBlock)
		return h2AppendFrame(b, 0x0, endStream, id, []byte("hello"))
	}
	feed(sink, g.completeSyscall(event.Ingress, append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), settings...), 2000, 2100))
	feed(sink, g.completeSyscall(event.Egress, settings, 3000, 3100))
	// Stream 1 and 3 overlap: 3 is answered first.
	feed(sink, g.completeSyscall(event.Ingress, req(1), 4000, 4100))
	feed(sink, g.completeSyscall(event.Ingress, req(3), 5000, 5100))
	feed(sink, g.completeSyscall(event.Egress, resp(3), 6000, 6100))
	feed(sink, g.completeSyscall(event.Egress, resp(1), 7000, 7100))
	sink.ConnClose(event.ConnClose{Conn: 22, Proc: g.proc, FD: 5, Start: 8000, End: 8100, Success: true})
}

// pipelinedHTTP1 is two pipelined requests seen from both ends: the client
// writes both at once and reads both responses at once; the server reads
// them at once and answers in two writes.
func pipelinedHTTP1(sink event.Sink) {
	client := &connGen{id: 23, proc: proc(2)}
	server := &connGen{id: 24, proc: proc(1)}
	sink.ConnOpen(client.open(event.RoleClient, "10.0.0.3:40000", "10.0.0.2:80", 1000))
	sink.ConnOpen(server.open(event.RoleServer, "10.0.0.2:80", "10.0.0.3:40000", 1100))
	reqs := []byte(httpReq + httpReq)
	// The client writes both requests at once and reads both responses at
	// once; the server reads them at once and answers in two writes.
	feed(sink, client.completeSyscall(event.Egress, reqs, 2000, 2100))
	feed(sink, server.completeSyscall(event.Ingress, reqs, 3000, 3100))
	feed(sink, server.completeSyscall(event.Egress, []byte(httpResp), 4000, 4100))
	feed(sink, server.completeSyscall(event.Egress, []byte(httpResp), 5000, 5100))
	feed(sink, client.completeSyscall(event.Ingress, []byte(httpResp+httpResp), 6000, 6100))
	sink.ConnClose(event.ConnClose{Conn: 23, Proc: client.proc, FD: 5, Start: 7000, End: 7100, Success: true})
	sink.ConnClose(event.ConnClose{Conn: 24, Proc: server.proc, FD: 5, Start: 7000, End: 7100, Success: true})
}

// manyWriteResponse is a server answering one request in 41 writes.
func manyWriteResponse(sink event.Sink) {
	g := &connGen{id: 25, proc: proc(1)}
	sink.ConnOpen(g.open(event.RoleServer, "10.0.0.2:80", "10.0.0.3:40000", 1000))
	feed(sink, g.completeSyscall(event.Ingress, []byte(httpReq), 2000, 2100))
	body := strings.Repeat("x", manyWrites-1)
	feed(sink, g.completeSyscall(event.Egress, fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(body)), 3000, 3010))
	for i := range len(body) {
		ts := event.Timestamp(3100 + 100*i)
		feed(sink, g.completeSyscall(event.Egress, []byte(body[i:i+1]), ts, ts+10))
	}
	sink.ConnClose(event.ConnClose{Conn: 25, Proc: g.proc, FD: 5, Start: 9000, End: 9100, Success: true})
}

// manyWrites is how many writes manyWriteResponse's response takes.
const manyWrites = 41

func TestPlainTCPConnectionHandsEveryReadAndWriteOnItsOwnOnce(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	plainTCPEcho(h.sink)
	protos := onceAccounting(t, h.rec)
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	var kinds []string
	for _, c := range h.rec.connOps {
		kinds = append(kinds, c.op.Kind.String())
		if c.proto != flow.ProtoTCP {
			t.Errorf("%s handed on as %d, want ProtoTCP", c.op.Kind, c.proto)
		}
	}
	want := "connect write read write read write read write read write read close"
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("ConnOp got %q, want %q", got, want)
	}
	if len(protos) != 12 || len(h.rec.exchanges) != 0 {
		t.Errorf("%d operations and %d exchanges, want 12 and none", len(protos), len(h.rec.exchanges))
	}
	if n := h.m.metrics.ioUnclaimed[ioNotHTTP].Load(); n != 10 {
		t.Errorf("not_http reads and writes = %d, want 10", n)
	}
}

func TestConcurrentHTTP2StreamsEachClaimTheirOwnSyscalls(t *testing.T) {
	h := start(t, testConfig(), serverPod, clientPod)
	concurrentHTTP2Streams(h.sink)

	onceAccounting(t, h.rec)
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	got := opsByStream(h.rec)
	want := map[uint32]string{1: "read@4000 write@7000", 3: "read@5000 write@6000"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("exchanges' operations by stream = %v, want %v", got, want)
	}
	// The preface and SETTINGS belong to no stream: on their own, as HTTP/2.
	var alone []string
	for _, c := range h.rec.connOps {
		if c.op.Kind == flow.OpRead || c.op.Kind == flow.OpWrite {
			alone = append(alone, fmt.Sprintf("%s@%d", c.op.Kind, c.op.Start))
			if c.proto != flow.ProtoHTTP2 {
				t.Errorf("%s@%d handed on as %d, want ProtoHTTP2", c.op.Kind, c.op.Start, c.proto)
			}
		}
	}
	if s := strings.Join(alone, " "); s != "read@2000 write@3000" {
		t.Errorf("operations on their own = %q, want the preface read and the SETTINGS write", s)
	}
}

func TestPipelinedHTTP1RequestsShareNoSyscall(t *testing.T) {
	h := start(t, testConfig(), serverPod, clientPod)
	pipelinedHTTP1(h.sink)

	onceAccounting(t, h.rec)
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	var got []string
	for _, ex := range h.rec.exchanges {
		got = append(got, ex.Conn.Role.String()+": "+opsOf(ex))
	}
	want := []string{"server: read@3000 write@4000", "server: write@5000", "client: write@2000 read@6000", "client: "}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("exchanges' operations = %q, want %q", got, want)
	}
}

func TestResponseWrittenInManySyscallsKeepsEveryWrite(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	manyWriteResponse(h.sink)

	onceAccounting(t, h.rec)
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	if len(h.rec.exchanges) != 1 {
		t.Fatalf("%d exchanges, want 1", len(h.rec.exchanges))
	}
	kinds := map[flow.OpKind]int{}
	for _, op := range h.rec.exchanges[0].Ops {
		kinds[op.Kind]++
	}
	if kinds[flow.OpRead] != 1 || kinds[flow.OpWrite] != manyWrites {
		t.Errorf("exchange carries %d reads and %d writes, want 1 and %d", kinds[flow.OpRead], kinds[flow.OpWrite], manyWrites)
	}
}

func TestTLSConnectionIsHandedOnAsTLS(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	g := &connGen{id: 26, proc: proc(1)}
	h.sink.ConnOpen(g.open(event.RoleClient, "10.0.0.2:40000", "192.0.2.9:443", 1000))
	hello := append([]byte{0x16, 0x03, 0x01, 0x00, 0x40, 0x01}, make([]byte, 0x3f)...)
	feed(h.sink, g.completeSyscall(event.Egress, hello, 2000, 2100))
	feed(h.sink, g.completeSyscall(event.Ingress, []byte{0x16, 0x03, 0x03, 0x00, 0x02, 0x02, 0x00}, 3000, 3100))
	h.sink.ConnClose(event.ConnClose{Conn: 26, Proc: g.proc, FD: 5, Start: 4000, End: 4100, Success: true})
	protos := onceAccounting(t, h.rec)
	if len(protos) != 4 {
		t.Errorf("%d operations handed on, want connect, write, read, close", len(protos))
	}
	for op, p := range protos {
		if p != flow.ProtoTLS {
			t.Errorf("%s handed on as %d, want ProtoTLS", op.Kind, p)
		}
	}
}

// An operation no exchange claims within IOHoldDelay goes on its own.
func TestUnclaimedHTTPReadGoesOnItsOwnAfterTheHoldDelay(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	g := &connGen{id: 27, proc: proc(1)}
	h.sink.ConnOpen(g.open(event.RoleServer, "10.0.0.2:80", "10.0.0.3:40000", 1000))
	// A request whose response never comes.
	feed(h.sink, g.completeSyscall(event.Ingress, []byte(httpReq), 2000, 2100))
	h.now.Store(uint64(2100 + IOHoldDelay.Nanoseconds() + 1))
	waitFor(t, "the held read to go on its own", func() bool {
		h.rec.mu.Lock()
		defer h.rec.mu.Unlock()
		for _, c := range h.rec.connOps {
			if c.op.Kind == flow.OpRead {
				return c.proto == flow.ProtoHTTP1
			}
		}
		return false
	})
	if n := h.m.metrics.ioUnclaimed[ioHeldTooLong].Load(); n != 1 {
		t.Errorf("held_too_long = %d, want 1", n)
	}
}

// A connect is held until the connection's protocol is known, but not
// forever: a failed connect goes at once, an idle one after IOHoldDelay.
func TestConnectWithoutDataIsNotHeldForever(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	failed := &connGen{id: 28, proc: proc(1)}
	open := failed.open(event.RoleClient, "10.0.0.2:40001", "192.0.2.9:5432", 1000)
	open.Success, open.Errno = false, 111
	h.sink.ConnOpen(open)
	idle := &connGen{id: 29, proc: proc(1)}
	h.sink.ConnOpen(idle.open(event.RoleClient, "10.0.0.2:40002", "192.0.2.9:5432", 1000))
	connects := func() int {
		h.rec.mu.Lock()
		defer h.rec.mu.Unlock()
		return len(h.rec.connOps)
	}
	if n := connects(); n != 1 {
		t.Fatalf("%d connects handed on at once, want the failed one only", n)
	}
	h.now.Store(uint64(1100 + IOHoldDelay.Nanoseconds() + 1))
	waitFor(t, "the idle connection's connect after IOHoldDelay", func() bool { return connects() == 2 })
}

// TestDecryptedTLSExchangesClaimNoSocketOperations: a connection whose
// requests are parsed from a TLS library's plaintext has records placed in
// the plaintext stream, which says nothing of the socket's offsets: its
// exchanges claim no socket read or write, and those go on their own at
// once, each exactly once.
func TestDecryptedTLSExchangesClaimNoSocketOperations(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	sock := &connGen{id: 31, proc: proc(1)}
	h.sink.ConnOpen(sock.open(event.RoleClient, "10.0.0.2:40000", "192.0.2.9:443", 1000))
	plain := &connGen{id: 31, proc: proc(1)} // the plaintext stream's own Seq and offsets
	tlsSyscall := func(g *connGen, sys event.Syscall, dir event.Direction, b []byte, start event.Timestamp) []event.Data {
		evs := g.syscall(dir, b, 4096, start, start+100)
		for i := range evs {
			evs[i].Syscall = sys
		}
		return evs
	}
	feed(h.sink, sock.syscall(event.Egress, []byte("\x16\x03\x01\x00\x05hello"), 4096, 2000, 2100))
	feed(h.sink, tlsSyscall(plain, event.SysSSLWrite, event.Egress, []byte(httpReq), 3000))
	feed(h.sink, sock.syscall(event.Egress, make([]byte, 90), 4096, 3010, 3050))
	feed(h.sink, sock.syscall(event.Ingress, make([]byte, 80), 4096, 4010, 4050))
	feed(h.sink, tlsSyscall(plain, event.SysSSLRead, event.Ingress, []byte(httpResp), 4000))
	if got := h.m.metrics.ioUnclaimed[ioTLS].Load(); got != 3 {
		t.Errorf("socket operations on their own as tls_plaintext: %d, want 3", got)
	}
	h.rec.mu.Lock()
	exchanges := len(h.rec.exchanges)
	var claimed int
	for _, ex := range h.rec.exchanges {
		claimed += len(ex.Ops)
	}
	h.rec.mu.Unlock()
	if exchanges != 1 || claimed != 0 {
		t.Fatalf("%d exchanges claiming %d operations, want 1 claiming none", exchanges, claimed)
	}
	onceAccounting(t, h.rec)
}

// TestSyscallsOverlappingInTimeAreClaimedByTheirBytes: two threads write
// the requests of streams 1 and 3, the write of stream 3 blocking from
// before stream 1's write until after it. The times overlap; the bytes do
// not, and each stream claims the write that carried its HEADERS.
func TestSyscallsOverlappingInTimeAreClaimedByTheirBytes(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	g := &connGen{id: 25, proc: proc(1)}
	h.sink.ConnOpen(g.open(event.RoleClient, "10.0.0.2:40000", "192.0.2.9:80", 1000))
	clientStart, serverStart, next := h2cBench()
	req1, resp1 := next(0)
	req1, resp1 = slices.Clone(req1), slices.Clone(resp1)
	req3, resp3 := next(1)
	feed(h.sink, g.syscall(event.Egress, clientStart, 4096, 1000, 1100))
	feed(h.sink, g.syscall(event.Ingress, serverStart, 4096, 1200, 1300))
	feed(h.sink, g.syscall(event.Egress, req1, 4096, 2000, 2100))
	feed(h.sink, g.syscall(event.Egress, req3, 4096, 1900, 6000))
	feed(h.sink, g.syscall(event.Ingress, resp1, 4096, 7000, 7100))
	feed(h.sink, g.syscall(event.Ingress, resp3, 4096, 8000, 8100))
	h.sink.ConnClose(event.ConnClose{Conn: 25, Proc: g.proc, FD: 5, Start: 9000, End: 9100, Success: true})

	onceAccounting(t, h.rec)
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	got := opsByStream(h.rec)
	want := map[uint32]string{1: "write@2000 read@7000", 3: "write@1900 read@8000"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("exchanges' operations by stream = %v, want %v", got, want)
	}
}

// TestResponseTailLostAtCloseStillEndsItsExchange: a server's response
// whose last events were lost (the ring was full until the connection
// closed) has no later event to show the loss; the close event's byte
// totals do, and the table declares the gap before the close. The HTTP/1
// parser then skips the rest of the body it knows the length of, so the
// exchange is recorded with what was seen (method, path, status, sizes);
// the write whose last event was lost is completed without it (counted)
// and handed on once, with its exchange.
func TestResponseTailLostAtCloseStillEndsItsExchange(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	g := &connGen{id: 31, proc: proc(1)}
	h.sink.ConnOpen(g.open(event.RoleServer, "10.0.0.2:80", "10.0.0.3:40000", 1000))
	feed(h.sink, g.completeSyscall(event.Ingress, []byte(httpReq), 2000, 2100))
	body := strings.Repeat("x", 6000)
	resp := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	write := g.completeSyscall(event.Egress, []byte(resp), 3000, 3100)
	if len(write) != 2 {
		t.Fatalf("the response's write is %d chunks, want 2", len(write))
	}
	feed(h.sink, write[:1]) // the second chunk, the write's last, is lost
	h.sink.ConnClose(event.ConnClose{Conn: 31, Proc: g.proc, FD: 5, Start: 9000, End: 9100, Success: true,
		BytesSent: uint64(len(resp)), BytesRecv: uint64(len(httpReq))})

	waitFor(t, "the exchange", func() bool {
		h.rec.mu.Lock()
		defer h.rec.mu.Unlock()
		return len(h.rec.exchanges) == 1
	})
	onceAccounting(t, h.rec)
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	r := h.rec.exchanges[0].Record
	if r.Method != "GET" || r.Path != "/items?id=1" || r.Status != 200 || r.RespBodyBytes != uint64(len(body)) {
		t.Errorf("record %s %s → %d, response body %d bytes; want GET /items?id=1 → 200 with %d",
			r.Method, r.Path, r.Status, r.RespBodyBytes, len(body))
	}
	if r.Incomplete {
		// Only body bytes of a known length were lost: nothing the
		// record reports (without the gap it said 4055 body bytes,
		// incomplete).
		t.Errorf("record marked incomplete, though only body bytes of a known length were lost")
	}
	if got := opsOf(h.rec.exchanges[0]); got != "read@2000 write@3000" {
		t.Errorf("exchange operations %q, want the request's read and the response's write", got)
	}
	if n := h.m.metrics.opsIncomplete.Load(); n != 1 {
		t.Errorf("operations completed without their last event = %d, want 1 (the write)", n)
	}
}
