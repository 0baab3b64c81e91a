package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/daemon/streamdump"
)

// fakeCollector stands in for the eBPF side: it records enrollments and
// hands Run's sink to the test, which feeds it recorded events.
type fakeCollector struct {
	mu      sync.Mutex
	calls   []string
	sinks   chan event.Sink
	closed  atomic.Bool
	enrollE error
}

func newFakeCollector() *fakeCollector { return &fakeCollector{sinks: make(chan event.Sink, 1)} }

func (f *fakeCollector) Enroll(netns uint64, id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("enroll %d %d", netns, id))
	return f.enrollE
}

func (f *fakeCollector) Unenroll(netns uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("unenroll %d", netns))
	return nil
}

func (f *fakeCollector) Run(ctx context.Context, sink event.Sink) error {
	f.sinks <- sink
	<-ctx.Done()
	return nil
}

func (f *fakeCollector) Features() bpf.Features {
	return bpf.Features{
		Capture:       bpf.CaptureSocket,
		CaptureReason: "kernel has the socket tracepoints",
		Tier:          bpf.TierBase,
		Tiers:         []bpf.TierStatus{{Tier: bpf.TierBase, Available: true}, {Tier: bpf.TierFentry, Reason: "lockdown"}},
		Hooks:         []bpf.HookStatus{{Name: "tp_btf/sched_process_fork", Tier: bpf.TierBase, Attached: true}},
		Metrics: []bpf.MetricStatus{
			{Metric: event.MetricRTT, Name: "rtt", Available: true, Reason: "at close"},
			{Metric: event.MetricL4Duration, Name: "l4_duration", Reason: "needs the fentry tier"},
		},
	}
}

func (f *fakeCollector) Counters() (bpf.Counters, error) {
	return bpf.Counters{"ringbuf_full": 7, "chunk_truncated": 0}, nil
}

func (f *fakeCollector) ReaderStats() bpf.ReaderStats {
	return bpf.ReaderStats{Records: 11, RingBufferUsed: 4096, RingBufferSize: 1 << 20}
}

func (f *fakeCollector) Close() error { f.closed.Store(true); return nil }

func (f *fakeCollector) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// recorder is a flow.OpConsumer that logs what it receives. ConnOp calls
// go to connOps only, so that log shows what every consumer sees.
type recorder struct {
	mu        sync.Mutex
	log       []string
	ops       []*flow.KernelOp
	exchanges []*flow.Exchange
	connOps   []connOp
}

type connOp struct {
	op    *flow.KernelOp
	proto flow.Protocol
}

func (r *recorder) ConnOp(op *flow.KernelOp, proto flow.Protocol) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.connOps = append(r.connOps, connOp{op, proto})
}

func (r *recorder) KernelOp(op *flow.KernelOp) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
	r.log = append(r.log, fmt.Sprintf("op %s bytes=%d", op.Kind, op.Bytes))
}

func (r *recorder) Exchange(ex *flow.Exchange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exchanges = append(r.exchanges, ex)
	r.log = append(r.log, fmt.Sprintf("exchange %s %s %d ops=%d", ex.Record.Method, ex.Record.Path, ex.Record.Status, len(ex.Ops)))
}

// Retransmit makes the recorder a flow.RetransmitConsumer.
func (r *recorder) Retransmit(rt *flow.Retransmit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, fmt.Sprintf("retransmit conn=%d segs=%d state=%d", rt.Conn.ID, rt.Segments, rt.State))
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

var testBoot = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type harness struct {
	m    *Monitor
	coll *fakeCollector
	rec  *recorder
	sink event.Sink
	now  atomic.Uint64 // event clock
}

func testConfig() config.Config {
	cfg := config.Default()
	cfg.Requests.Keep = 100
	return cfg
}

// start builds a Monitor over a fake collector and runs it.
func start(t *testing.T, cfg config.Config, pods ...*registry.Pod) *harness {
	t.Helper()
	return startWith(t, cfg, nil, pods...)
}

// startWith is start with more consumers after the recorder.
func startWith(t *testing.T, cfg config.Config, more []flow.Consumer, pods ...*registry.Pod) *harness {
	t.Helper()
	rec := &recorder{}
	h := startConsumers(t, cfg, append([]flow.Consumer{rec}, more...), pods...)
	h.rec = rec
	return h
}

// startConsumers is start with these consumers only (h.rec is nil).
func startConsumers(t *testing.T, cfg config.Config, consumers []flow.Consumer, pods ...*registry.Pod) *harness {
	t.Helper()
	h := &harness{coll: newFakeCollector()}
	h.now.Store(0) // event time stands still unless a test moves it
	m, err := New(Options{
		Config: cfg, Collector: h.coll, Consumers: consumers,
		BootTime: testBoot, Clock: func() event.Timestamp { return event.Timestamp(h.now.Load()) },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.m = m
	for _, p := range pods {
		m.PodEnrolled(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if !h.coll.closed.Load() {
			t.Error("collector not closed after Run")
		}
	})
	h.sink = <-h.coll.sinks
	return h
}

func pod(id uint32, ns, name, ip string, netns uint64) *registry.Pod {
	return &registry.Pod{
		ID: id, Namespace: ns, Name: name, Network: "net", ContainerID: fmt.Sprintf("sandbox%02d0123456789", id),
		Ifname: "eth0", NetnsInode: netns, IPs: []registry.IPConfig{{Address: ip + "/24"}},
		EnrolledAt: testBoot,
	}
}

var (
	serverPod = pod(1, "shop", "web-7d4b9c8f5-x2x9z", "10.0.0.2", 4026532001)
	clientPod = pod(2, "shop", "client-0", "10.0.0.3", 4026532002)
)

func proc(podID uint32) event.Process {
	return event.Process{TGID: 100 + podID, TID: 100 + podID, Comm: "app", PodID: podID, NetnsIno: 4026532000 + uint64(podID)}
}

// connGen produces the events of one connection as the kernel side does.
type connGen struct {
	id   event.ConnID
	proc event.Process
	seq  [2]uint64
	off  [2]uint64
}

func (g *connGen) open(role event.Role, local, remote string, ts event.Timestamp) event.ConnOpen {
	sys := event.SysConnect
	if role == event.RoleServer {
		sys = event.SysAccept4
	}
	return event.ConnOpen{
		Conn: g.id, Proc: g.proc, FD: 5, Role: role, Syscall: sys, Start: ts, End: ts + 100, Success: true,
		Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote),
	}
}

// syscall returns the chunks of one syscall moving b, chunk bytes each,
// the last one marked so as the kernel marks it.
func (g *connGen) syscall(dir event.Direction, b []byte, chunk int, start, end event.Timestamp) []event.Data {
	sys := event.SysWrite
	if dir == event.Ingress {
		sys = event.SysRead
	}
	var out []event.Data
	for len(b) > 0 {
		n := min(chunk, len(b))
		out = append(out, event.Data{
			Conn: g.id, Proc: g.proc, FD: 5, Direction: dir, Syscall: sys, Seq: g.seq[dir], StreamOffset: g.off[dir],
			Size: uint32(n), Payload: b[:n], Start: start, End: end,
		})
		g.seq[dir]++
		g.off[dir] += uint64(n)
		b = b[n:]
	}
	if len(out) > 0 {
		out[len(out)-1].Last = true
	}
	return out
}

func feed(s event.Sink, evs []event.Data) {
	for _, e := range evs {
		s.Data(e)
	}
}

const (
	httpReq  = "GET /items?id=1 HTTP/1.1\r\nHost: web\r\nUser-Agent: t\r\n\r\n"
	httpResp = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServerExchangeCarriesItsSyscallsAndIdentities(t *testing.T) {
	h := start(t, testConfig(), serverPod, clientPod)
	g := &connGen{id: 42, proc: proc(1)}
	h.sink.ConnOpen(g.open(event.RoleServer, "10.0.0.2:80", "10.0.0.3:40000", 1000))
	// The request arrives in one read reported as two chunks.
	feed(h.sink, g.syscall(event.Ingress, []byte(httpReq), 20, 2000, 2100))
	resp := g.syscall(event.Egress, []byte(httpResp), 4096, 3000, 3100)
	send := &event.SendMetrics{Measured: event.MetricPackets, Packets: 1, PacketBytes: 100}
	resp[len(resp)-1].Send = send // kernel metrics ride on the last chunk
	feed(h.sink, resp)
	// A later request's read on the same connection: the first read is
	// complete once another syscall starts.
	sock := &event.SocketStats{Measured: event.MetricRTT, SRTT: 50_000}
	h.sink.ConnClose(event.ConnClose{Conn: 42, Proc: g.proc, FD: 5, Start: 9000, End: 9100, Success: true, Socket: sock})

	want := []string{
		"op accept bytes=0",
		// The read is over once the write, which started after it
		// returned, arrives; the write carries its end in its metrics.
		fmt.Sprintf("op read bytes=%d", len(httpReq)),
		fmt.Sprintf("op write bytes=%d", len(httpResp)),
		"exchange GET /items?id=1 200 ops=2",
		"op close bytes=0",
	}
	if got := h.rec.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("consumer saw:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	ex := h.rec.exchanges[0]
	if ex.Ops[0].Kind != flow.OpRead || ex.Ops[1].Kind != flow.OpWrite || ex.Ops[1].Send != send {
		t.Errorf("exchange ops = %v %v, want the read then the write with its metrics", ex.Ops[0].Kind, ex.Ops[1].Kind)
	}
	c := ex.Conn
	if c.Role != event.RoleServer || c.Local.Pod == nil || c.Local.Pod.Name != serverPod.Name || c.Local.Pod.Service != "web" ||
		c.Remote.Pod == nil || c.Remote.Pod.Name != "client-0" || c.Remote.Pod.Service != "client" || c.Process.PID != 101 {
		t.Errorf("connection identity = %+v local pod %+v remote pod %+v", c, c.Local.Pod, c.Remote.Pod)
	}
	closeOp := h.rec.ops[len(h.rec.ops)-1]
	if closeOp.Kind != flow.OpClose || closeOp.Socket != sock || closeOp.Start != 9000 || closeOp.End != 9100 {
		t.Errorf("close op = %+v", closeOp)
	}
	if acc := h.rec.ops[0]; acc.Syscall != event.SysAccept4 || acc.Start != 1000 || acc.End != 1100 || !acc.Success {
		t.Errorf("accept op = %+v", acc)
	}
}

func TestRetransmitOutsideSyscallsReachesTheConsumersWithItsConnection(t *testing.T) {
	h := start(t, testConfig(), serverPod, clientPod)
	g := &connGen{id: 21, proc: proc(2)}
	h.sink.ConnOpen(g.open(event.RoleClient, "10.0.0.3:40000", "10.0.0.2:80", 1000))
	h.sink.Retransmit(event.Retransmit{Conn: 21, Segments: 2, State: 1, Time: 1500})
	h.sink.Retransmit(event.Retransmit{Conn: 99, Segments: 1, State: 1, Time: 1600}) // never opened
	h.sink.ConnClose(event.ConnClose{Conn: 21, Proc: g.proc, FD: 5, Start: 2000, End: 2100, Success: true})
	want := []string{"op connect bytes=0", "retransmit conn=21 segs=2 state=1", "op close bytes=0"}
	if got := h.rec.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("consumer saw %v, want %v", got, want)
	}
}

// TestOperationCompletesAtItsLastEvent: a syscall's operation is complete
// when its last event arrives, marked by the kernel, with no metrics, no
// next syscall and no time passing; its exchange goes at once.
func TestOperationCompletesAtItsLastEvent(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	g := &connGen{id: 7, proc: proc(1)}
	h.sink.ConnOpen(g.open(event.RoleClient, "10.0.0.2:40000", "192.0.2.9:80", 1000))
	feed(h.sink, g.syscall(event.Egress, []byte(httpReq), 20, 2000, 2100))
	feed(h.sink, g.syscall(event.Ingress, []byte(httpResp), 20, 3000, 3100))
	want := []string{"op connect bytes=0", fmt.Sprintf("op write bytes=%d", len(httpReq)),
		fmt.Sprintf("op read bytes=%d", len(httpResp)), "exchange GET /items?id=1 200 ops=2"}
	if got := h.rec.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("consumer saw %v, want %v", got, want)
	}
	if n := h.m.metrics.opsIncomplete.Load(); n != 0 {
		t.Errorf("incomplete operations = %d, want 0", n)
	}
}

// TestOperationWithoutItsLastEventCompletesWhenLossShows: when a syscall's
// last event never comes, its operation completes (counted) at the next
// syscall of its direction, or, with nothing after it, after IOHoldDelay;
// the exchange waiting for it goes then.
func TestOperationWithoutItsLastEventCompletesWhenLossShows(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	g := &connGen{id: 7, proc: proc(1)}
	h.sink.ConnOpen(g.open(event.RoleClient, "10.0.0.2:40000", "192.0.2.9:80", 1000))
	unmarked := func(evs []event.Data) []event.Data {
		evs[len(evs)-1].Last = false
		return evs
	}
	feed(h.sink, g.syscall(event.Egress, []byte(httpReq), 4096, 2000, 2100))
	feed(h.sink, unmarked(g.syscall(event.Ingress, []byte(httpResp), 4096, 3000, 3100)))
	feed(h.sink, g.syscall(event.Egress, []byte(httpReq), 4096, 4000, 4100))
	// The next read shows the first one over.
	feed(h.sink, unmarked(g.syscall(event.Ingress, []byte(httpResp), 4096, 5000, 5100)))
	first := []string{"op connect bytes=0", fmt.Sprintf("op write bytes=%d", len(httpReq)),
		fmt.Sprintf("op write bytes=%d", len(httpReq)), fmt.Sprintf("op read bytes=%d", len(httpResp)),
		"exchange GET /items?id=1 200 ops=2"}
	if got := h.rec.snapshot(); !slices.Equal(got, first) {
		t.Fatalf("consumer saw %v, want %v", got, first)
	}
	// Nothing follows the second read: it waits for IOHoldDelay.
	time.Sleep(100 * time.Millisecond) // sweeps at the same clock
	if got := h.rec.snapshot(); !slices.Equal(got, first) {
		t.Fatalf("before IOHoldDelay: %v, want %v", got, first)
	}
	h.now.Store(uint64(5100 + IOHoldDelay))
	waitFor(t, "the exchange after IOHoldDelay", func() bool { return len(h.rec.snapshot()) == len(first)+2 })
	want := append(first, fmt.Sprintf("op read bytes=%d", len(httpResp)), "exchange GET /items?id=1 200 ops=2")
	if got := h.rec.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("consumer saw %v, want %v", got, want)
	}
	if n := h.m.metrics.opsIncomplete.Load(); n != 2 {
		t.Errorf("incomplete operations = %d, want 2", n)
	}
}

func TestRequestsAPI(t *testing.T) {
	cfg := testConfig()
	cfg.Requests.Keep = 2
	h := start(t, cfg, serverPod, clientPod)
	srv := api.New(nil, slog.New(slog.DiscardHandler))
	h.m.RegisterHTTP(srv)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)

	// Server side of a client pod's request, then a request of the client
	// pod to an address outside the node, then another.
	s := &connGen{id: 1, proc: proc(1)}
	h.sink.ConnOpen(s.open(event.RoleServer, "10.0.0.2:80", "10.0.0.3:40000", 1000))
	feed(h.sink, s.syscall(event.Ingress, []byte(httpReq), 4096, 1_000_000, 1_000_100))
	feed(h.sink, s.syscall(event.Egress, []byte(httpResp), 4096, 3_000_000, 3_500_000))
	c := &connGen{id: 2, proc: proc(2)}
	h.sink.ConnOpen(c.open(event.RoleClient, "10.0.0.3:50000", "192.0.2.9:8080", 1000))
	for i := range 2 {
		feed(h.sink, c.syscall(event.Egress, []byte(strings.Replace(httpReq, "/items", fmt.Sprintf("/out%d", i), 1)), 4096, 5000, 5100))
		feed(h.sink, c.syscall(event.Ingress, []byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), 4096, 6000, 6100))
	}

	get := func(query string) (int, []map[string]any) {
		t.Helper()
		resp, err := http.Get(ts.URL + "/api/v1/requests" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out []map[string]any
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, out
	}
	// keep=2: the server's exchange was pushed out by the client's two.
	code, all := get("")
	if code != 200 || len(all) != 2 || all[0]["path"] != "/out1?id=1" || all[1]["path"] != "/out0?id=1" {
		t.Fatalf("requests = %d %v, want /out1 then /out0", code, all)
	}
	if got := h.m.requests.Overwritten(); got != 1 {
		t.Errorf("overwritten = %d, want 1", got)
	}
	want := map[string]any{
		"time": testBoot.Add(5000).Format(time.RFC3339Nano), "pod": "shop/client-0", "peer": "192.0.2.9:8080",
		"role": "client", "protocol": "HTTP/1.1", "method": "GET", "path": "/out1?id=1", "host": "web", "status": 404.0,
		"latencyMs": 0.0011, "reqBytes": float64(len(httpReq) - 1), "respBytes": 45.0, "incomplete": false, "connectionId": 2.0,
	}
	if fmt.Sprint(all[0]) != fmt.Sprint(want) {
		t.Errorf("request JSON =\n%v\nwant\n%v", all[0], want)
	}

	// A fresh ring: identity of a peer that is a local pod.
	cfg.Requests.Keep = 10
	h2 := start(t, cfg, serverPod, clientPod)
	s = &connGen{id: 1, proc: proc(1)}
	h2.sink.ConnOpen(s.open(event.RoleServer, "10.0.0.2:80", "10.0.0.3:40000", 1000))
	feed(h2.sink, s.syscall(event.Ingress, []byte(httpReq), 4096, 1_000_000, 1_000_100))
	feed(h2.sink, s.syscall(event.Egress, []byte(httpResp), 4096, 3_000_000, 3_500_000))
	reqs := h2.m.requests.Latest("shop/web-7d4b9c8f5-x2x9z", 10)
	if len(reqs) != 1 || reqs[0].PeerPod != "shop/client-0" || reqs[0].Peer != "10.0.0.3:40000" || reqs[0].Role != "server" ||
		reqs[0].LatencyMs != 2.5 || reqs[0].Status != 200 || reqs[0].RespBytes != uint64(len(httpResp)) {
		t.Fatalf("server-side request = %+v", reqs)
	}
	if other := h2.m.requests.Latest("shop/nobody", 10); len(other) != 0 {
		t.Errorf("pod filter let through %v", other)
	}

	for _, q := range []string{"?limit=0", "?limit=3", "?pod=shop", "?x=1", "?limit=1&limit=2"} {
		if code, _ := get(q); code != http.StatusBadRequest {
			t.Errorf("GET %s = %d, want 400", q, code)
		}
	}
	if code, one := get("?pod=shop/client-0&limit=1"); code != 200 || len(one) != 1 || one[0]["path"] != "/out1?id=1" {
		t.Errorf("filtered = %d %v", code, one)
	}
}

func TestConnectionsAndFeaturesAPI(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	srv := api.New(nil, slog.New(slog.DiscardHandler))
	h.m.RegisterHTTP(srv)
	g := &connGen{id: 3, proc: proc(1)}
	h.sink.ConnOpen(g.open(event.RoleServer, "10.0.0.2:80", "10.0.0.3:40000", 1000))

	rr := httptest.NewRecorder()
	srv.ServeHTTP(rr, httptest.NewRequest("GET", "/api/v1/connections", nil))
	var conns []map[string]any
	if err := json.Unmarshal(rr.Body.Bytes(), &conns); err != nil || len(conns) != 1 {
		t.Fatalf("connections: %v %s", err, rr.Body)
	}
	if conns[0]["namespace"] != "shop" || conns[0]["pod"] != serverPod.Name || conns[0]["role"] != "server" {
		t.Errorf("connection = %v", conns[0])
	}

	rr = httptest.NewRecorder()
	srv.ServeHTTP(rr, httptest.NewRequest("GET", "/api/v1/features", nil))
	var f wire.Features
	if err := json.Unmarshal(rr.Body.Bytes(), &f); err != nil {
		t.Fatal(err)
	}
	if !f.Capture || f.Tier != "base" || f.CaptureTier != "socket" || f.CaptureTierReason == "" || len(f.Tiers) != 2 || f.Tiers[1].Reason != "lockdown" || len(f.Hooks) != 1 ||
		!f.Hooks[0].Available || len(f.Metrics) != 2 || !f.Metrics[0].Available || f.Metrics[1].Available ||
		f.Metrics[1].Reason != "needs the fentry tier" {
		t.Errorf("features = %+v", f)
	}
	// Which SkyWalking fields an unmeasured metric leaves out: with
	// nothing else of their layers measured, not sent at all.
	if sw := f.Metrics[1].SkyWalking; !strings.Contains(sw, "write L4 total duration") || !strings.Contains(sw, "left out") {
		t.Errorf("l4_duration's SkyWalking impact = %q", sw)
	}
}

func TestCaptureDisabledReportsWhy(t *testing.T) {
	cfg := testConfig()
	cfg.Capture.Enabled = false
	m, err := New(Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.PodEnrolled(serverPod) // no collector: identity only, no panic
	f := m.Features()
	if f.Capture || !strings.Contains(f.Reason, "capture.enabled is false") {
		t.Fatalf("features = %+v", f)
	}
}

func TestEnrollmentFollowsTheRegistry(t *testing.T) {
	h := start(t, testConfig())
	a := pod(1, "ns", "a", "10.0.0.2", 500)
	b := pod(2, "ns", "a", "10.0.1.2", 500) // second attachment, same netns
	c := pod(3, "ns", "c", "10.0.0.4", 600)
	h.m.PodEnrolled(a)
	h.m.PodEnrolled(b)
	h.m.PodEnrolled(a) // re-enrolled: netns 500 stays pod 1's
	h.m.PodEnrolled(c)
	h.m.PodRemoved(a) // netns 500 stays, now under pod 2
	h.m.PodRemoved(b)
	noNetns := pod(4, "ns", "d", "10.0.0.5", 0)
	h.m.PodEnrolled(noNetns)
	want := []string{"enroll 500 1", "enroll 600 3", "enroll 500 2", "unenroll 500"}
	if got := h.coll.callLog(); !slices.Equal(got, want) {
		t.Fatalf("collector calls = %v, want %v", got, want)
	}
	if p := h.m.pods.ByAddr(netip.MustParseAddr("10.0.0.2")); p != nil {
		t.Errorf("removed pod still found by IP: %+v", p)
	}
	if p := h.m.pods.ByAddr(netip.MustParseAddr("10.0.0.4")); p == nil || p.Name != "c" {
		t.Errorf("pod by IP = %+v", p)
	}
}

func TestEnrollFailureIsCountedAndUnready(t *testing.T) {
	h := start(t, testConfig())
	h.coll.enrollE = fmt.Errorf("map full")
	h.m.PodEnrolled(serverPod)
	srv := api.New(nil, slog.New(slog.DiscardHandler))
	h.m.RegisterHTTP(srv)
	rr := httptest.NewRecorder()
	srv.ServeHTTP(rr, httptest.NewRequest("GET", "/readyz", nil))
	if rr.Code != http.StatusServiceUnavailable || !strings.Contains(rr.Body.String(), "capture: 1 enrolled network namespaces") ||
		!strings.Contains(rr.Body.String(), "map full") {
		t.Fatalf("readyz = %d %s", rr.Code, rr.Body)
	}
	// The pod goes away (e.g. its deletion was spooled while the daemon
	// was down): the failure no longer matters and the daemon is ready.
	h.m.PodRemoved(serverPod)
	rr = httptest.NewRecorder()
	srv.ServeHTTP(rr, httptest.NewRequest("GET", "/readyz", nil))
	if rr.Code != http.StatusOK {
		t.Fatalf("readyz after the pod left = %d %s", rr.Code, rr.Body)
	}
	if n := h.m.enroller.Errors(); n != 1 {
		t.Errorf("enroll errors = %d, want 1 (counted even when resolved)", n)
	}
}

// A pod deleted while the daemon was down is replayed from disk before
// reconcile drops it; its host veth is gone. That is no failure.
func TestEnrollOfAPodWhoseHostInterfaceIsGoneIsNoFailure(t *testing.T) {
	h := start(t, testConfig())
	h.coll.enrollE = fmt.Errorf("attach TCX: %w", syscall.ENODEV)
	h.m.PodEnrolled(serverPod)
	srv := api.New(nil, slog.New(slog.DiscardHandler))
	h.m.RegisterHTTP(srv)
	rr := httptest.NewRecorder()
	srv.ServeHTTP(rr, httptest.NewRequest("GET", "/readyz", nil))
	if rr.Code != http.StatusOK {
		t.Fatalf("readyz = %d %s, want ready", rr.Code, rr.Body)
	}
	if n := h.m.enroller.Errors(); n != 0 {
		t.Errorf("enroll errors = %d, want 0", n)
	}
}

func TestDumpWritesStreamsAndGaps(t *testing.T) {
	cfg := testConfig()
	cfg.Capture.DumpDir = filepath.Join(t.TempDir(), "dump")
	h := start(t, cfg, serverPod)
	g := &connGen{id: 9, proc: proc(1)}
	h.sink.ConnOpen(g.open(event.RoleClient, "10.0.0.2:40000", "192.0.2.9:80", 1000))
	feed(h.sink, g.syscall(event.Egress, []byte("abcd"), 4096, 2000, 2100))
	// A chunk of 10 bytes of which the kernel captured 3, then 2 more.
	ev := g.syscall(event.Egress, []byte("0123456789"), 4096, 3000, 3100)
	ev[0].Payload, ev[0].Truncated = ev[0].Payload[:3], true
	feed(h.sink, ev)
	feed(h.sink, g.syscall(event.Egress, []byte("xy"), 4096, 4000, 4100))
	feed(h.sink, g.syscall(event.Ingress, []byte("response"), 4096, 5000, 5100))
	// Open: only the partial files exist, so a reader never sees a dump
	// under its final name before it is complete.
	for _, name := range []string{"9-egress.bin", "9-ingress.bin", "9.json"} {
		if _, err := os.Stat(filepath.Join(cfg.Capture.DumpDir, name)); !os.IsNotExist(err) {
			t.Errorf("%s exists while the connection is open (%v)", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.Capture.DumpDir, "9-egress.bin.partial")); err != nil {
		t.Errorf("partial dump: %v", err)
	}
	h.sink.ConnClose(event.ConnClose{Conn: 9, Proc: g.proc, FD: 5, Start: 6000, End: 6100, Success: true, BytesSent: 16, BytesRecv: 8})

	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(cfg.Capture.DumpDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read("9-egress.bin"); got != "abcd012xy" {
		t.Errorf("egress dump = %q", got)
	}
	if got := read("9-ingress.bin"); got != "response" {
		t.Errorf("ingress dump = %q", got)
	}
	var sum streamdump.Summary
	if err := json.Unmarshal([]byte(read("9.json")), &sum); err != nil {
		t.Fatal(err)
	}
	if want := []streamdump.Gap{{Direction: "egress", Offset: 7, Length: 7}}; !slices.Equal(sum.Gaps, want) {
		t.Errorf("gaps = %+v, want %+v", sum.Gaps, want)
	}
	if sum.Connection.ID != 9 || sum.Connection.State != "closed" || sum.Connection.BytesSent != 16 ||
		sum.Connection.Close == nil || *sum.Connection.Close.KernelBytesSent != 16 {
		t.Errorf("connection summary = %+v", sum.Connection)
	}
}

func TestMetricsExposeCollectorAndPipeline(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	reg := prometheus.NewPedanticRegistry()
	if err := h.m.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	g := &connGen{id: 5, proc: proc(1)}
	h.sink.ConnOpen(g.open(event.RoleClient, "10.0.0.2:40000", "192.0.2.9:80", 1000))
	expected := `
# HELP weir_bpf_events_lost_total What the eBPF side could not report at all, by reason: ring buffer records, syscalls, operations of connections or processes it could not track, bytes not counted, unlinked TLS plaintext.
# TYPE weir_bpf_events_lost_total counter
weir_bpf_events_lost_total{reason="ringbuf_full"} 7
# HELP weir_bpf_events_partial_total Events the eBPF side delivered in part, by reason: payload sent size-only past a bound (the event's skip reason says why), or a kernel metric or drop attribution missing (marked unmeasured).
# TYPE weir_bpf_events_partial_total counter
weir_bpf_events_partial_total{reason="chunk_truncated"} 0
# HELP weir_hook_tier eBPF hook tiers in use, 1 for each active one: the capture tier (socket or syscall) and the richest per-function tier (base, fentry or kprobe).
# TYPE weir_hook_tier gauge
weir_hook_tier{tier="base"} 1
weir_hook_tier{tier="fentry"} 0
weir_hook_tier{tier="kprobe"} 0
weir_hook_tier{tier="socket"} 1
weir_hook_tier{tier="syscall"} 0
# HELP weir_pipeline_kernel_ops_total Kernel operations handed to consumers, by kind.
# TYPE weir_pipeline_kernel_ops_total counter
weir_pipeline_kernel_ops_total{kind="accept"} 0
weir_pipeline_kernel_ops_total{kind="close"} 0
weir_pipeline_kernel_ops_total{kind="connect"} 1
weir_pipeline_kernel_ops_total{kind="read"} 0
weir_pipeline_kernel_ops_total{kind="write"} 0
# HELP weir_bpf_records_total Ring buffer records read.
# TYPE weir_bpf_records_total counter
weir_bpf_records_total 11
# HELP weir_bpf_ring_buffer_used_bytes Bytes waiting in the eBPF ring buffer to be read.
# TYPE weir_bpf_ring_buffer_used_bytes gauge
weir_bpf_ring_buffer_used_bytes 4096
# HELP weir_bpf_ring_buffer_size_bytes Size of the eBPF ring buffer.
# TYPE weir_bpf_ring_buffer_size_bytes gauge
weir_bpf_ring_buffer_size_bytes 1.048576e+06
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected),
		"weir_bpf_events_lost_total", "weir_bpf_events_partial_total", "weir_hook_tier", "weir_pipeline_kernel_ops_total", "weir_bpf_records_total",
		"weir_bpf_ring_buffer_used_bytes", "weir_bpf_ring_buffer_size_bytes"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "weir_capture_events_total"); err != nil || n != 4 {
		t.Fatalf("capture collector: %d series, %v", n, err)
	}
}

// vethCollector is a collector that also counts packets on host veths.
type vethCollector struct {
	*fakeCollector
}

func (v vethCollector) EnrollPod(netns uint64, id uint32, veth int) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls = append(v.calls, fmt.Sprintf("enroll-pod %d %d veth %d", netns, id, veth))
	return nil
}

func TestEnrollmentPassesTheHostVeth(t *testing.T) {
	fc := newFakeCollector()
	m, err := New(Options{Config: testConfig(), Collector: vethCollector{fc}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := pod(1, "ns", "a", "10.0.0.2", 500)
	p.HostVethIndex = 17
	m.PodEnrolled(p)
	if got := fc.callLog(); !slices.Equal(got, []string{"enroll-pod 500 1 veth 17"}) {
		t.Fatalf("calls = %v", got)
	}
}

func TestExplainNamesTheCause(t *testing.T) {
	for err, want := range map[error]string{
		fmt.Errorf("load: %w", &bpf.HookError{Hook: "tp_btf/tcp_probe", Err: fmt.Errorf("not in BTF")}): "lacks the eBPF hook tp_btf/tcp_probe",
		fmt.Errorf("load: %w: no file", bpf.ErrBTFMissing):                                              "the kernel has no BTF",
		fmt.Errorf("load: %w", bpf.ErrPermission):                                                       "run weir-daemon as root",
		fmt.Errorf("something else"):                                                                    "something else",
	} {
		if got := Explain(err); !strings.Contains(got, want) {
			t.Errorf("Explain(%v) = %q, want it to contain %q", err, got, want)
		}
	}
}

func TestPlainTCPConnectionReportsOpsAndNoRequests(t *testing.T) {
	h := start(t, testConfig(), serverPod)
	g := &connGen{id: 11, proc: proc(1)}
	h.sink.ConnOpen(g.open(event.RoleClient, "10.0.0.2:40000", "192.0.2.9:5432", 1000))
	first := []byte("\x00\x00\x00\x08\x04\xd2\x16\x2f not http at all, a database protocol")
	write := g.syscall(event.Egress, first, 10, 2000, 2100)
	feed(h.sink, write[:len(write)-1])
	feed(h.sink, g.syscall(event.Ingress, []byte("N"), 4096, 3000, 3100))
	// The write's last chunk comes after the read's (ring buffer order):
	// the write is still one operation with all its bytes, complete at it.
	feed(h.sink, write[len(write)-1:])
	feed(h.sink, g.syscall(event.Egress, []byte("more"), 4096, 4000, 4100))
	h.sink.ConnClose(event.ConnClose{Conn: 11, Proc: g.proc, FD: 5, Start: 5000, End: 5100, Success: true})
	want := []string{"op connect bytes=0", "op read bytes=1", fmt.Sprintf("op write bytes=%d", len(first)),
		"op write bytes=4", "op close bytes=0"}
	if got := h.rec.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("consumer saw %v, want %v", got, want)
	}
	if n := h.m.metrics.opsIncomplete.Load(); n != 0 {
		t.Errorf("incomplete operations = %d, want 0", n)
	}
	if n := len(h.m.requests.Latest("", 100)); n != 0 {
		t.Errorf("%d requests recorded for a non-HTTP connection", n)
	}
}
