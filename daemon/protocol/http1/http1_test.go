package http1

import (
	"strings"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/record"
)

type harness struct {
	p     *Parser
	st    *record.Stats
	recs  []*record.Record
	clock event.Timestamp
}

func newHarness(t *testing.T, mod ...func(*record.Limits)) *harness {
	t.Helper()
	lim := record.DefaultLimits()
	for _, m := range mod {
		m(&lim)
	}
	if err := lim.Validate(); err != nil {
		t.Fatal(err)
	}
	h := &harness{st: &record.Stats{}}
	h.p = New(lim, h.st, func(r *record.Record) { h.recs = append(h.recs, r) })
	return h
}

// send feeds s in one Data call with a fresh [t, t+1] syscall window.
func (h *harness) send(s Side, data string) Switch {
	h.clock += 10
	sw, _, _ := h.p.Data(s, []byte(data), h.clock, h.clock+1)
	return sw
}

func (h *harness) req(data string)  { h.send(Request, data) }
func (h *harness) resp(data string) { h.send(Response, data) }

func (h *harness) want(t *testing.T, n int) {
	t.Helper()
	if len(h.recs) != n {
		for _, r := range h.recs {
			t.Logf("%+v", *r)
		}
		t.Fatalf("got %d records, want %d", len(h.recs), n)
	}
}

func TestKeepAliveContentLengthExchanges(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 3; i++ {
		h.req("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
		h.resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	}
	h.want(t, 3)
	r := h.recs[2]
	if r.Method != "GET" || r.Path != "/a" || r.Host != "x" || r.Status != 200 || r.Protocol != record.HTTP11 {
		t.Fatalf("fields: %+v", *r)
	}
	if r.ReqHeaderBytes != 28 || r.ReqBodyBytes != 0 || r.RespHeaderBytes != 38 || r.RespBodyBytes != 5 {
		t.Fatalf("sizes: %+v", *r)
	}
	if r.ReqStart != 50 || r.ReqEnd != 51 || r.RespStart != 60 || r.RespEnd != 61 {
		t.Fatalf("timestamps: %d %d %d %d", r.ReqStart, r.ReqEnd, r.RespStart, r.RespEnd)
	}
	if r.Incomplete || r.GRPCStatus != -1 {
		t.Fatalf("unexpected flags: %+v", *r)
	}
}

func TestPipelinedResponsesPairInOrder(t *testing.T) {
	h := newHarness(t)
	h.req("GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n")
	h.resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na" +
		"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + // HEAD: no body despite the length
		"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
	h.want(t, 3)
	for i, want := range []struct {
		path   string
		status int
		body   uint64
	}{{"/1", 200, 1}, {"/2", 200, 0}, {"/3", 404, 0}} {
		r := h.recs[i]
		if r.Path != want.path || r.Status != want.status || r.RespBodyBytes != want.body {
			t.Errorf("record %d: %s %d body %d, want %+v", i, r.Path, r.Status, r.RespBodyBytes, want)
		}
	}
}

func TestChunkedBodiesWithTrailers(t *testing.T) {
	h := newHarness(t)
	req := "POST /up HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\n"
	h.req(req)
	h.resp(resp)
	h.want(t, 1)
	r := h.recs[0]
	if got := r.ReqHeaderBytes + r.ReqBodyBytes; got != uint64(len(req)) {
		t.Errorf("request bytes %d, want %d", got, len(req))
	}
	if r.ReqBodyBytes != uint64(len("3\r\nabc\r\n0\r\n\r\n")) {
		t.Errorf("request body %d", r.ReqBodyBytes)
	}
	if got := r.RespHeaderBytes + r.RespBodyBytes; got != uint64(len(resp)) {
		t.Errorf("response bytes %d, want %d", got, len(resp))
	}
}

func TestBodylessResponses(t *testing.T) {
	for _, status := range []string{"204 No Content", "304 Not Modified"} {
		h := newHarness(t)
		h.req("GET / HTTP/1.1\r\n\r\n")
		h.resp("HTTP/1.1 " + status + "\r\nContent-Length: 12\r\n\r\n")
		h.want(t, 1)
		if h.recs[0].RespBodyBytes != 0 {
			t.Errorf("%s: body %d", status, h.recs[0].RespBodyBytes)
		}
	}
}

func TestExpectContinueInterimIsNotFinal(t *testing.T) {
	h := newHarness(t)
	h.req("PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	h.resp("HTTP/1.1 100 Continue\r\n\r\n")
	h.want(t, 0)
	h.req("data")
	h.resp("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
	h.want(t, 1)
	r := h.recs[0]
	if r.Status != 201 || r.ReqBodyBytes != 4 || r.RespHeaderBytes != 25+43 {
		t.Fatalf("%+v", *r)
	}
	if r.RespStart != 40 {
		t.Errorf("RespStart %d: want the final response's start 40", r.RespStart)
	}
}

func TestReadUntilCloseCompletesOnClose(t *testing.T) {
	h := newHarness(t)
	h.req("GET /s HTTP/1.0\r\n\r\n")
	h.resp("HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nabc")
	h.resp("defg")
	h.want(t, 0)
	h.p.Close(100)
	h.want(t, 1)
	r := h.recs[0]
	if r.Protocol != record.HTTP10 || r.RespBodyBytes != 7 || r.Incomplete || r.RespEnd != 31 {
		t.Fatalf("%+v", *r)
	}
}

func TestSplitAcrossEveryByte(t *testing.T) {
	req := "GET /x HTTP/1.1\r\nHost: h\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
	h := newHarness(t)
	for i := 0; i < len(req); i++ {
		h.req(req[i : i+1])
	}
	for i := 0; i < len(resp); i++ {
		h.resp(resp[i : i+1])
	}
	h.want(t, 1)
	r := h.recs[0]
	if r.Path != "/x" || r.Host != "h" || r.Trace.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("%+v", *r)
	}
	if r.ReqHeaderBytes != uint64(len(req)) || r.RespHeaderBytes+r.RespBodyBytes != uint64(len(resp)) {
		t.Fatalf("sizes %+v", *r)
	}
	if r.ReqStart != 10 || r.ReqEnd != event.Timestamp(10*len(req)+1) {
		t.Errorf("request window %d..%d", r.ReqStart, r.ReqEnd)
	}
}

func TestSkipInsideBodyKeepsExactSizes(t *testing.T) {
	h := newHarness(t)
	h.req("GET /big HTTP/1.1\r\n\r\n")
	h.resp("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nfirst")
	h.p.Skip(Response, 1000000-5, 40, 41)
	h.req("GET /next HTTP/1.1\r\n\r\n")
	h.resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.want(t, 2)
	if r := h.recs[0]; r.RespBodyBytes != 1000000 || r.Incomplete || r.RespEnd != 41 {
		t.Fatalf("%+v", *r)
	}
	if h.recs[1].Path != "/next" {
		t.Fatalf("%+v", *h.recs[1])
	}
}

func TestSkipInsideHeadersResyncsOnNextTurn(t *testing.T) {
	h := newHarness(t)
	h.req("GET /lost HTTP/1.1\r\nHost: a")
	h.p.Skip(Request, 50, 20, 21)
	// Not a turn (the server has not spoken since): not a candidate, even
	// though a request line follows within the chunk.
	h.req("garbage-tail\r\n\r\nGET /inside HTTP/1.1\r\n\r\n")
	h.resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.req("GET /ok HTTP/1.1\r\n\r\n") // the client speaks after the server: a turn
	h.resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.want(t, 2)
	if r := h.recs[0]; r.Path != "/lost" || !r.Incomplete || r.Status != 200 {
		t.Errorf("first record should be the salvaged, incomplete /lost: %+v", *r)
	}
	if r := h.recs[1]; r.Path != "/ok" || r.Incomplete || r.Status != 200 {
		t.Errorf("second record: %+v", *r)
	}
	if h.st.HTTP1Resyncs.Load() != 1 {
		t.Errorf("resyncs %d", h.st.HTTP1Resyncs.Load())
	}
}

func TestHeaderLimitDegradesToTCP(t *testing.T) {
	h := newHarness(t, func(l *record.Limits) { l.MaxHeaderBytes = 256 })
	sw := h.send(Request, "GET / HTTP/1.1\r\nX: "+strings.Repeat("a", 300))
	if sw != ToTCP || !h.p.Opaque() || h.st.HeaderLimit.Load() != 1 || h.st.DegradedToTCP.Load() != 1 {
		t.Fatalf("switch %d opaque %v stats %d/%d", sw, h.p.Opaque(), h.st.HeaderLimit.Load(), h.st.DegradedToTCP.Load())
	}
}

func TestPendingLimitFlushesAndDegrades(t *testing.T) {
	h := newHarness(t, func(l *record.Limits) { l.MaxPending = 2 })
	sw := h.send(Request, "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n")
	if sw != ToTCP || h.st.PendingLimit.Load() != 1 {
		t.Fatalf("switch %d, pending limit hits %d", sw, h.st.PendingLimit.Load())
	}
	h.want(t, 2)
	for _, r := range h.recs {
		if !r.Incomplete {
			t.Errorf("flushed record not marked incomplete: %+v", *r)
		}
	}
}

func TestWebSocketUpgradeLeavesTCP(t *testing.T) {
	h := newHarness(t)
	h.req("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	sw := h.send(Response, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello")
	if sw != ToTCP || !h.p.Opaque() {
		t.Fatalf("switch %d", sw)
	}
	h.want(t, 1)
	if h.recs[0].Status != 101 {
		t.Fatalf("%+v", *h.recs[0])
	}
}

func TestH2CUpgradeHandsOverBothDirections(t *testing.T) {
	h := newHarness(t)
	h.req("GET /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
	h.clock += 10
	sw, carry, n := h.p.Data(Request, []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), h.clock, h.clock)
	if sw != ToHTTP2 || n != 0 || carry != nil {
		t.Fatalf("request side: switch %d n %d carry %q", sw, n, carry)
	}
	rec := h.p.H2CRequest()
	if rec == nil || rec.Path != "/up" {
		t.Fatalf("h2c request %+v", rec)
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
	sw, _, n = h.p.Data(Response, []byte(resp+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"), 1, 2)
	if sw != ToHTTP2 || n != len(resp) {
		t.Fatalf("response side: switch %d n %d", sw, n)
	}
	h.p.Close(99)
	h.want(t, 0) // stream 1 belongs to the HTTP/2 parser now
	if rec.RespHeaderBytes != uint64(len(resp)) {
		t.Errorf("101 header bytes %d", rec.RespHeaderBytes)
	}
}

func TestResponseWithoutRequestIsIncomplete(t *testing.T) {
	h := newHarness(t)
	h.resp("HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nno")
	h.want(t, 1)
	if r := h.recs[0]; r.Status != 500 || !r.Incomplete || r.Method != "" {
		t.Fatalf("%+v", *r)
	}
}

func TestCloseEmitsUnansweredRequestsIncomplete(t *testing.T) {
	h := newHarness(t)
	h.req("GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
	h.p.Close(50)
	h.want(t, 2)
	for _, r := range h.recs {
		if !r.Incomplete || r.Status != 0 {
			t.Errorf("%+v", *r)
		}
	}
}

func TestMalformedContentLengthResyncsOnNextTurn(t *testing.T) {
	h := newHarness(t)
	h.req("GET /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nGET /inside HTTP/1.1\r\n\r\n")
	h.resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.req("GET /b HTTP/1.1\r\n\r\n")
	h.resp("HTTP/1.1 204 No Content\r\n\r\n")
	h.want(t, 2)
	// The response to the malformed request is real (its direction is in
	// sync) but has no request to pair with.
	if r := h.recs[0]; r.Path != "" || r.Status != 200 || !r.Incomplete {
		t.Errorf("%+v", *r)
	}
	if r := h.recs[1]; r.Path != "/b" || r.Status != 204 || r.Incomplete || h.st.ProtocolErrors.Load() != 1 {
		t.Fatalf("%+v errors %d", *r, h.st.ProtocolErrors.Load())
	}
}
