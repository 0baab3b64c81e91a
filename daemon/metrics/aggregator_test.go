package metrics

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/flow"
)

func findService(t *testing.T, svcs []wire.Service, name string) wire.Service {
	t.Helper()
	for _, s := range svcs {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("service %s not in %+v", name, svcs)
	return wire.Service{}
}

func findEdge(t *testing.T, topo wire.Topology, src, dst string) wire.Edge {
	t.Helper()
	for _, e := range topo.Edges {
		if e.Source == src && e.Target == dst {
			return e
		}
	}
	t.Fatalf("edge %s -> %s not in %+v", src, dst, topo.Edges)
	return wire.Edge{}
}

// feedConnection plays one connection between local pods as both sides see
// it: 100 bytes client → server, 300 back, with one retransmit and three
// netfilter drops on the client's write and a 4 ms RTT at the client's close.
func feedConnection(a *Aggregator, id event.ConnID) {
	c, s := pairConns(id, frontend, catalog0)
	connect := op(c, flow.OpConnect, 0)
	connect.End = connect.Start + event.Timestamp(2*time.Millisecond)
	a.KernelOp(connect)
	a.KernelOp(op(s, flow.OpAccept, 0))
	w := op(c, flow.OpWrite, 100)
	w.Send = &event.SendMetrics{
		Measured: event.MetricPackets | event.MetricRetransmits | event.MetricDrops,
		Packets:  2, Retransmits: 1, Drops: []event.Drop{{Reason: "NETFILTER_DROP", Count: 3}},
	}
	a.KernelOp(w)
	a.KernelOp(op(s, flow.OpRead, 100))
	a.KernelOp(op(s, flow.OpWrite, 300))
	a.KernelOp(op(c, flow.OpRead, 300))
	cl := op(c, flow.OpClose, 0)
	cl.Socket = &event.SocketStats{Measured: event.MetricRTT, SRTT: uint64(4 * time.Millisecond)}
	a.KernelOp(cl)
	a.KernelOp(op(s, flow.OpClose, 0))
}

func TestKernelOpsCountPerServiceAndOncePerEdge(t *testing.T) {
	a, _ := newAgg(t, Options{})
	feedConnection(a, 1)

	svcs, err := a.Services(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 2 {
		t.Fatalf("services = %+v, want catalog and frontend", svcs)
	}
	fe := findService(t, svcs, "frontend.shop")
	want := wire.TCP{Connects: 1, Closes: 1, BytesSent: 100, BytesRecv: 300, Retransmits: 1, Drops: 3, RTTMs: 4}
	if fe.TCP != want || fe.Pods != 1 || fe.Service != "frontend" || fe.Namespace != "shop" {
		t.Errorf("frontend = %+v, want tcp %+v and 1 pod", fe, want)
	}
	cat := findService(t, svcs, "catalog.shop")
	if want := (wire.TCP{Accepts: 1, Closes: 1, BytesSent: 300, BytesRecv: 100}); cat.TCP != want {
		t.Errorf("catalog tcp = %+v, want %+v", cat.TCP, want)
	}

	topo, err := a.Topology(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(topo.Edges) != 1 {
		t.Fatalf("edges = %+v, want exactly one (the server side must not add a second)", topo.Edges)
	}
	e := findEdge(t, topo, "frontend.shop", "catalog.shop")
	// The edge is the client's view: its connect, its bytes, no accept.
	if want := (wire.TCP{Connects: 1, Closes: 1, BytesSent: 100, BytesRecv: 300, Retransmits: 1, Drops: 3, RTTMs: 4}); e.TCP != want {
		t.Errorf("edge tcp = %+v, want %+v", e.TCP, want)
	}
	if e.Protocol != "TCP" || !e.Error {
		t.Errorf("edge protocol %q error %v, want TCP and an error edge (drops and retransmits)", e.Protocol, e.Error)
	}
	wantNodes := []wire.Node{{ID: "catalog.shop", Kind: "service", Namespace: "shop"}, {ID: "frontend.shop", Kind: "service", Namespace: "shop"}}
	if fmt.Sprint(topo.Nodes) != fmt.Sprint(wantNodes) {
		t.Errorf("nodes = %+v, want %+v", topo.Nodes, wantNodes)
	}
}

func TestRetransmitsOutsideSyscallsCountForServiceEdgeAndSeries(t *testing.T) {
	a, _ := newAgg(t, Options{})
	c, _ := pairConns(1, frontend, catalog0)
	a.KernelOp(op(c, flow.OpConnect, 0))
	// The connection stays open: the timer's retransmits must show
	// while it lives, not only at its close.
	a.Retransmit(&flow.Retransmit{Conn: c, Segments: 1, State: 1, Time: 2_000_000})
	a.Retransmit(&flow.Retransmit{Conn: c, Segments: 2, State: 1, Time: 3_000_000})
	a.Retransmit(&flow.Retransmit{Conn: &flow.Connection{ID: 9, Role: event.RoleClient}, Segments: 1}) // no pod

	svcs, err := a.Services(0)
	if err != nil {
		t.Fatal(err)
	}
	if fe := findService(t, svcs, "frontend.shop"); fe.TCP.Retransmits != 3 {
		t.Errorf("frontend retransmits = %d, want 3", fe.TCP.Retransmits)
	}
	topo, err := a.Topology(0)
	if err != nil {
		t.Fatal(err)
	}
	if e := findEdge(t, topo, "frontend.shop", "catalog.shop"); e.TCP.Retransmits != 3 || !e.Error {
		t.Errorf("edge tcp = %+v error %v, want 3 retransmits on an error edge", e.TCP, e.Error)
	}
	series, err := a.Series("frontend.shop", 3*time.Minute, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, p := range series.Points {
		total += p.Retransmits
	}
	if total != 3 {
		t.Errorf("series retransmits sum to %d, want 3", total)
	}
}

func TestExternalClientIsANodeNamedByIP(t *testing.T) {
	a, _ := newAgg(t, Options{})
	s := &flow.Connection{ID: 9, Role: event.RoleServer,
		Local: flow.Peer{Addr: ap("10.22.0.3:8080"), Pod: catalog0}, Remote: flow.Peer{Addr: ap("[::ffff:203.0.113.9]:5555")}}
	a.KernelOp(op(s, flow.OpAccept, 0))
	a.KernelOp(op(s, flow.OpRead, 70))
	a.KernelOp(op(s, flow.OpWrite, 700))
	a.Exchange(exchange(s, "GET", "/", 200, time.Millisecond))

	topo, _ := a.Topology(0)
	e := findEdge(t, topo, "203.0.113.9", "catalog.shop")
	// Seen from the server: what it read was sent by the client.
	if e.TCP.Accepts != 1 || e.TCP.BytesSent != 70 || e.TCP.BytesRecv != 700 || e.Protocol != "HTTP/1.1" || e.HTTP.Requests != 1 {
		t.Errorf("edge = %+v", e)
	}
	if e.Error {
		t.Errorf("edge without errors flagged: %+v", e)
	}
	var ext *wire.Node
	for i := range topo.Nodes {
		if topo.Nodes[i].ID == "203.0.113.9" {
			ext = &topo.Nodes[i]
		}
	}
	if ext == nil || ext.Kind != wire.KindExternal || ext.Namespace != "" {
		t.Fatalf("external node = %+v in %+v", ext, topo.Nodes)
	}
}

func TestHTTPSuccessRateLatencyAndServerSideView(t *testing.T) {
	a, _ := newAgg(t, Options{})
	c, s := pairConns(1, frontend, catalog0)
	// 100 requests, latencies 1..100 ms; the last 10 fail with 503.
	for i := 1; i <= 100; i++ {
		status := 200
		if i > 90 {
			status = 503
		}
		a.Exchange(exchange(s, "GET", fmt.Sprintf("/api/items/%d", i%7), status, time.Duration(i)*time.Millisecond))
		a.Exchange(exchange(c, "GET", fmt.Sprintf("/api/items/%d", i%7), status, time.Duration(i)*time.Millisecond+time.Millisecond))
	}
	svcs, _ := a.Services(5 * time.Minute)
	cat := findService(t, svcs, "catalog.shop").HTTP
	if cat.Requests != 100 || cat.Errors != 10 || cat.SuccessRate != 0.9 || cat.RPM != 20 {
		t.Errorf("catalog http = %+v, want 100 requests, 10 errors, 0.9 success, 20 rpm over 5m", cat)
	}
	if cat.LatencyMs.Avg != 50.5 {
		t.Errorf("avg = %v, want exactly 50.5", cat.LatencyMs.Avg)
	}
	for q, want := range map[string][2]float64{"p50": {cat.LatencyMs.P50, 50}, "p90": {cat.LatencyMs.P90, 90}, "p99": {cat.LatencyMs.P99, 99}} {
		if math.Abs(want[0]-want[1])/want[1] > 0.0625 {
			t.Errorf("%s = %v, want %v within 6.25%%", q, want[0], want[1])
		}
	}
	// The client is not a server: no HTTP of its own in the services view.
	if fe := findService(t, svcs, "frontend.shop").HTTP; fe.Requests != 0 || fe.SuccessRate != 1 {
		t.Errorf("frontend http = %+v, want none (server-side view)", fe)
	}
	topo, _ := a.Topology(0)
	e := findEdge(t, topo, "frontend.shop", "catalog.shop")
	if e.HTTP.Requests != 100 || e.HTTP.LatencyMs.Avg != 51.5 || !e.Error || e.Protocol != "HTTP/1.1" {
		t.Errorf("edge = %+v, want the client's 100 requests (avg 51.5 ms) and an error edge (90%% < 95%%)", e)
	}
}

func TestPercentilesOfIdenticalLatenciesAreExact(t *testing.T) {
	a, _ := newAgg(t, Options{})
	_, s := pairConns(1, frontend, catalog0)
	for range 5 {
		a.Exchange(exchange(s, "GET", "/", 200, 1234567*time.Nanosecond))
	}
	svcs, _ := a.Services(0)
	l := findService(t, svcs, "catalog.shop").HTTP.LatencyMs
	if l.P50 != 1.234567 || l.P99 != 1.234567 || l.Avg != 1.234567 {
		t.Fatalf("latency = %+v, want 1.234567 ms everywhere (clamped to min/max)", l)
	}
}

func TestGRPCStatusDecidesSuccess(t *testing.T) {
	a, _ := newAgg(t, Options{})
	_, s := pairConns(1, frontend, catalog0)
	for _, gs := range []int{0, 0, 14, 5} {
		x := exchange(s, "POST", "/catalog.Catalog/Get", 200, time.Millisecond)
		x.Record.GRPC, x.Record.GRPCStatus, x.Record.Protocol = true, gs, "HTTP/2"
		a.Exchange(x)
	}
	// No response at all is an error too.
	x := exchange(s, "POST", "/catalog.Catalog/Get", 0, 0)
	x.Record.GRPC, x.Record.RespEnd = true, 0
	a.Exchange(x)
	eps, err := a.Endpoints("catalog.shop", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 1 || eps[0].Endpoint != "POST:/catalog.Catalog/Get" || eps[0].Requests != 5 || eps[0].Errors != 3 {
		t.Fatalf("endpoints = %+v, want POST:/catalog.Catalog/Get with 5 requests and 3 errors", eps)
	}
	if eps[0].Method != "POST" || eps[0].Path != "/catalog.Catalog/Get" || eps[0].SuccessRate != 0.4 {
		t.Errorf("endpoint = %+v", eps[0])
	}
}

func TestWindowsAndRetention(t *testing.T) {
	a, clk := newAgg(t, Options{})
	_, s := pairConns(1, frontend, catalog0)
	a.Exchange(exchange(s, "GET", "/a", 200, time.Millisecond))
	clk.Add(10 * time.Minute)
	a.Exchange(exchange(s, "GET", "/a", 200, time.Millisecond))
	a.Exchange(exchange(s, "GET", "/a", 200, time.Millisecond))

	requests := func(w time.Duration) uint64 {
		t.Helper()
		svcs, err := a.Services(w)
		if err != nil {
			t.Fatalf("window %s: %v", w, err)
		}
		for _, s := range svcs {
			if s.Name == "catalog.shop" {
				return s.HTTP.Requests
			}
		}
		return 0
	}
	if got := requests(5 * time.Minute); got != 2 {
		t.Errorf("5m window: %d requests, want 2", got)
	}
	if got := requests(15 * time.Minute); got != 3 {
		t.Errorf("15m window: %d requests, want 3", got)
	}
	// The first request leaves the 30 m retention 30 m after its step.
	clk.Add(20*time.Minute - time.Second)
	if got := requests(30 * time.Minute); got != 3 {
		t.Errorf("just inside retention: %d requests, want 3", got)
	}
	clk.Add(time.Second)
	if got := requests(30 * time.Minute); got != 2 {
		t.Errorf("past retention: %d requests, want 2", got)
	}
	if _, err := a.Services(31 * time.Minute); err == nil || !strings.Contains(err.Error(), "retention") {
		t.Errorf("window over retention: err %v", err)
	}
	// A slot reused after wrapping around the ring does not leak old data.
	clk.Add(30 * time.Minute)
	a.Exchange(exchange(s, "GET", "/a", 200, time.Millisecond))
	if got := requests(30 * time.Minute); got != 1 {
		t.Errorf("after wrap: %d requests, want 1", got)
	}
}

func TestEndpointsUseRoutePatternsAndAreBounded(t *testing.T) {
	a, _ := newAgg(t, Options{MaxEndpointsPerService: 3, RoutePatterns: []string{"/api/items/{id}", "/static/{file...}"}})
	_, s := pairConns(1, frontend, catalog0)
	for i := range 50 {
		a.Exchange(exchange(s, "GET", fmt.Sprintf("/api/items/%d?x=1", i), 200, time.Millisecond))
	}
	a.Exchange(exchange(s, "GET", "/static/css/site.css", 200, time.Millisecond))
	for _, p := range []string{"/a", "/b", "/c", "/d", "/e", "/a"} {
		a.Exchange(exchange(s, "GET", p, 500, time.Millisecond))
	}
	a.Exchange(exchange(s, "BREW", "/a", 200, time.Millisecond)) // a new method is a new endpoint: over the limit
	got, eps := endpointRequests(t, a, "catalog.shop")
	want := map[string]uint64{"GET:/api/items/{id}": 50, "GET:/static/{file...}": 1, "GET:/a": 2, "GET:/b": 1, "GET:/c": 1, "<other>": 3}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("endpoints = %v, want %v", got, want)
	}
	if eps[0].Endpoint != "GET:/api/items/{id}" {
		t.Errorf("first endpoint %s, want the busiest", eps[0].Endpoint)
	}
	a.mu.Lock()
	overflow := a.overflow[kindEndpoint]
	a.mu.Unlock()
	if overflow != 3 {
		t.Errorf("endpoint overflow = %d, want 3", overflow)
	}
	if _, err := a.Endpoints("nope.shop", 0); !errors.Is(err, ErrUnknownService) {
		t.Errorf("unknown service: %v", err)
	}
}

func TestSeriesBucketsBySteps(t *testing.T) {
	a, clk := newAgg(t, Options{})
	c, s := pairConns(1, frontend, catalog0)
	clk.Add(30 * time.Second) // t0+30s: first minute
	for range 3 {
		a.Exchange(exchange(s, "GET", "/", 200, 2*time.Millisecond))
	}
	a.KernelOp(op(s, flow.OpWrite, 1000))
	clk.Add(time.Minute) // t0+1m30s: second minute
	a.Exchange(exchange(s, "GET", "/", 503, 4*time.Millisecond))
	a.KernelOp(op(s, flow.OpRead, 10))
	a.KernelOp(op(c, flow.OpConnect, 0)) // the client's connect counts for frontend, not catalog

	ser, err := a.Series("catalog.shop", 3*time.Minute, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if ser.Step != "1m" || len(ser.Points) != 3 {
		t.Fatalf("series = %+v, want step 1m and 3 points", ser)
	}
	times := []time.Time{t0.Add(-time.Minute), t0, t0.Add(time.Minute)}
	for i, p := range ser.Points {
		if !p.Time.Equal(times[i]) {
			t.Errorf("point %d time %s, want %s", i, p.Time, times[i])
		}
	}
	if p := ser.Points[1]; p.HTTPRequests != 3 || p.HTTPErrors != 0 || p.AvgMs != 2 || p.P99Ms != 2 || p.BytesSent != 1000 {
		t.Errorf("point 1 = %+v", p)
	}
	if p := ser.Points[2]; p.HTTPRequests != 1 || p.HTTPErrors != 1 || p.AvgMs != 4 || p.BytesRecv != 10 || p.Connects != 0 {
		t.Errorf("point 2 = %+v", p)
	}
	if p := ser.Points[0]; p.HTTPRequests != 0 || p.BytesSent != 0 {
		t.Errorf("point 0 = %+v, want empty", p)
	}
	def, err := a.Series("catalog.shop", 15*time.Minute, 0)
	if err != nil || def.Step != "20s" || len(def.Points) != 45 {
		t.Errorf("default step for 15m: step %q, %d points, %v; want 20s and 45", def.Step, len(def.Points), err)
	}
	if _, err := a.Series("catalog.shop", 5*time.Minute, 15*time.Second); err == nil {
		t.Error("a step that is not a multiple of 10s was accepted")
	}
}

func TestUnknownRoleCountsForThePodOnly(t *testing.T) {
	a, _ := newAgg(t, Options{})
	c := &flow.Connection{ID: 5, Role: event.RoleUnknown,
		Local: flow.Peer{Addr: ap("10.22.0.2:1234"), Pod: frontend}, Remote: flow.Peer{Addr: ap("10.0.0.1:80")}}
	a.KernelOp(op(c, flow.OpWrite, 10))
	a.KernelOp(&flow.KernelOp{Kind: flow.OpWrite, Bytes: 1, Conn: &flow.Connection{}}) // no local pod
	a.Exchange(&flow.Exchange{Conn: c})                                                // no record: counted, not a panic
	topo, _ := a.Topology(0)
	if len(topo.Edges) != 0 {
		t.Errorf("edges %+v from a connection of unknown role", topo.Edges)
	}
	svcs, _ := a.Services(0)
	if fe := findService(t, svcs, "frontend.shop"); fe.TCP.BytesSent != 10 {
		t.Errorf("frontend bytesSent %d, want 10", fe.TCP.BytesSent)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.unattributed[unattrUnknownRole] != 1 || a.unattributed[unattrNoPod] != 1 || a.unattributed[unattrNoRecord] != 1 {
		t.Errorf("unattributed = %v, want one unknown role and one without pod", a.unattributed)
	}
}

func TestCardinalityLimitsAreCountedNotGrown(t *testing.T) {
	a, _ := newAgg(t, Options{MaxPods: 1, MaxServices: 2, MaxEdges: 1, MaxDropReasons: 1})
	other := &flow.Pod{ID: 9, Namespace: "ops", Name: "probe", Service: "probe"}
	c, _ := pairConns(1, frontend, catalog0)
	a.KernelOp(op(c, flow.OpConnect, 0))
	c2, _ := pairConns(2, frontend, catalog1) // same services: same edge, new pod (not local side)
	a.KernelOp(op(c2, flow.OpConnect, 0))
	c3, _ := pairConns(3, other, catalog0) // third pod, third service
	a.KernelOp(op(c3, flow.OpConnect, 0))
	w := op(c, flow.OpWrite, 1)
	w.Send = &event.SendMetrics{Measured: event.MetricDrops, Drops: []event.Drop{{Reason: "A", Count: 1}, {Reason: "B", Count: 2}}}
	a.KernelOp(w)
	ext := &flow.Connection{ID: 4, Role: event.RoleClient, Local: flow.Peer{Addr: ap("10.22.0.2:1"), Pod: frontend},
		Remote: flow.Peer{Addr: ap("192.0.2.1:443")}}
	a.KernelOp(op(ext, flow.OpConnect, 0)) // a second edge

	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pods) != 1 || len(a.services) != 2 || len(a.edges) != 1 {
		t.Fatalf("pods %d services %d edges %d, want 1, 2, 1", len(a.pods), len(a.services), len(a.edges))
	}
	// The drop reason overflowed in the pod's and the edge's totals.
	if a.overflow[kindPod] != 1 || a.overflow[kindService] != 1 || a.overflow[kindEdge] != 1 || a.overflow[kindDropReason] != 2 {
		t.Errorf("overflow = %v", a.overflow)
	}
	for _, ed := range a.edges {
		if ed.tcp.connects != 2 || ed.tcp.drops["A"] != 1 || ed.tcp.drops[otherReason] != 2 {
			t.Errorf("edge tcp = %+v", ed.tcp)
		}
	}
}

func TestEvictIdleDropsSeriesAfterRetention(t *testing.T) {
	a, clk := newAgg(t, Options{})
	feedConnection(a, 1)
	_, s := pairConns(1, frontend, catalog0)
	a.Exchange(exchange(s, "GET", "/x", 200, time.Millisecond))
	clk.Add(29 * time.Minute)
	a.EvictIdle()
	if a.seriesCount() != [4]int{2, 2, 1, 1} {
		t.Fatalf("evicted too early: %v", a.seriesCount())
	}
	clk.Add(time.Minute + 10*time.Second)
	a.EvictIdle()
	if a.seriesCount() != [4]int{} {
		t.Fatalf("after retention: %v, want nothing", a.seriesCount())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.evictions[kindPod] != 2 || a.evictions[kindService] != 2 || a.evictions[kindEdge] != 1 || a.evictions[kindEndpoint] != 1 {
		t.Errorf("evictions = %v", a.evictions)
	}
}

func (a *Aggregator) seriesCount() [4]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return [4]int{len(a.pods), len(a.services), len(a.edges), a.nEndpoints}
}

func TestOptionsAreValidated(t *testing.T) {
	for name, o := range map[string]Options{
		"bad pattern":        {RoutePatterns: []string{"api/x"}},
		"mixed wildcard":     {RoutePatterns: []string{"/a/x{id}"}},
		"rest not last":      {RoutePatterns: []string{"/a/{p...}/b"}},
		"fractional step":    {Step: 1500 * time.Millisecond},
		"retention not step": {Retention: 25 * time.Second},
		"too many slots":     {Retention: 24 * time.Hour, Step: time.Second},
		"window > retention": {DefaultWindow: time.Hour},
		"negative limit":     {MaxPods: -1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestConnectionCacheIsBoundedAndNeverStale(t *testing.T) {
	a, clk := newAgg(t, Options{MaxConnCache: 1})
	c1, _ := pairConns(1, frontend, catalog0)
	c2, _ := pairConns(2, frontend, catalog1)
	a.KernelOp(op(c1, flow.OpWrite, 1))
	a.KernelOp(op(c2, flow.OpWrite, 2)) // does not fit: attributed without the cache
	a.KernelOp(op(c2, flow.OpWrite, 2))
	svcs, _ := a.Services(0)
	if fe := findService(t, svcs, "frontend.shop"); fe.TCP.BytesSent != 5 {
		t.Fatalf("bytesSent %d, want 5", fe.TCP.BytesSent)
	}
	a.mu.Lock()
	if len(a.conns) != 1 || a.overflow[kindConnCache] != 2 {
		t.Errorf("cache %d entries, overflow %d; want 1 and 2", len(a.conns), a.overflow[kindConnCache])
	}
	a.mu.Unlock()
	a.KernelOp(op(c1, flow.OpClose, 0))
	a.mu.Lock()
	if len(a.conns) != 0 {
		t.Errorf("close left %d cache entries", len(a.conns))
	}
	a.mu.Unlock()

	// A connection idle past the retention: its series are evicted, and a
	// later flow must land in fresh series, not the evicted ones.
	a.KernelOp(op(c2, flow.OpWrite, 7))
	clk.Add(DefaultRetention + time.Minute)
	a.EvictIdle()
	a.KernelOp(op(c2, flow.OpWrite, 11))
	svcs, _ = a.Services(0)
	if fe := findService(t, svcs, "frontend.shop"); fe.TCP.BytesSent != 11 {
		t.Fatalf("after eviction bytesSent %d, want 11", fe.TCP.BytesSent)
	}
	topo, _ := a.Topology(0)
	if e := findEdge(t, topo, "frontend.shop", "catalog.shop"); e.TCP.BytesSent != 11 {
		t.Fatalf("after eviction edge bytesSent %d, want 11", e.TCP.BytesSent)
	}
}

// A daemon that started 40 s ago has seen 40 s of traffic: its rate in a
// five-minute window is requests per 40 s, not per five minutes.
func TestRatesOfAYoungDaemonCoverOnlyItsLife(t *testing.T) {
	c := &clock{now: t0}
	a, err := New(Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, s := pairConns(1, frontend, catalog0)
	c.Add(40 * time.Second)
	for range 40 {
		a.Exchange(exchange(s, "GET", "/", 200, time.Millisecond))
	}
	svcs, _ := a.Services(5 * time.Minute)
	if rpm := findService(t, svcs, "catalog.shop").HTTP.RPM; rpm != 60 {
		t.Fatalf("rpm = %v, want 60 (40 requests in the daemon's 40 s)", rpm)
	}
	c.Add(10 * time.Minute)
	a.Exchange(exchange(s, "GET", "/", 200, time.Millisecond))
	svcs, _ = a.Services(5 * time.Minute)
	if rpm := findService(t, svcs, "catalog.shop").HTTP.RPM; rpm != 0.2 {
		t.Fatalf("rpm = %v, want 0.2 (1 request in a full 5m window)", rpm)
	}
}

// The front array before the connection cache answers only with entries
// the cache holds: connections whose IDs share a slot, a closed
// connection's ID taken by a new connection to another pod, and an
// eviction each leave the counts where the cache alone would put them.
func TestConnectionFrontAnswersOnlyWhatTheCacheHolds(t *testing.T) {
	a, clk := newAgg(t, Options{})
	// Two client connections whose IDs land in the same front slot.
	id2 := event.ConnID(2)
	for frontSlot(id2) != frontSlot(1) {
		id2++
	}
	c1, _ := pairConns(1, frontend, catalog0)
	c2, _ := pairConns(id2, frontend, catalog1)
	for range 3 {
		a.KernelOp(op(c1, flow.OpWrite, 1))
		a.KernelOp(op(c2, flow.OpWrite, 10))
	}
	topo, _ := a.Topology(0)
	if e := findEdge(t, topo, "frontend.shop", "catalog.shop"); e.TCP.BytesSent != 33 {
		t.Fatalf("edge bytesSent %d, want 33", e.TCP.BytesSent)
	}
	checkFront(t, a)

	// c1 closes; a new connection with its ID goes from catalog-1 to
	// frontend: its bytes count for catalog, not for frontend.
	a.KernelOp(op(c1, flow.OpClose, 0))
	checkFront(t, a)
	reused, _ := pairConns(1, catalog1, frontend)
	a.KernelOp(op(reused, flow.OpWrite, 100))
	a.KernelOp(op(reused, flow.OpWrite, 100))
	svcs, _ := a.Services(0)
	if fe := findService(t, svcs, "frontend.shop"); fe.TCP.BytesSent != 33 {
		t.Errorf("frontend bytesSent %d, want 33", fe.TCP.BytesSent)
	}
	if ca := findService(t, svcs, "catalog.shop"); ca.TCP.BytesSent != 200 {
		t.Errorf("catalog bytesSent %d, want 200", ca.TCP.BytesSent)
	}
	checkFront(t, a)

	// Past the retention everything is evicted; the next flow lands in
	// fresh series through a fresh entry.
	clk.Add(DefaultRetention + time.Minute)
	a.EvictIdle()
	checkFront(t, a)
	a.KernelOp(op(c2, flow.OpWrite, 5))
	svcs, _ = a.Services(0)
	if fe := findService(t, svcs, "frontend.shop"); fe.TCP.BytesSent != 5 {
		t.Errorf("after eviction frontend bytesSent %d, want 5", fe.TCP.BytesSent)
	}
	checkFront(t, a)
}

// checkFront fails t unless every entry in a's front array is the cache's
// entry for an ID of its slot.
func checkFront(t *testing.T, a *Aggregator) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, ce := range a.front {
		if ce == nil {
			continue
		}
		if in, ok := a.conns[ce.conn.ID]; !ok || in != ce || frontSlot(ce.conn.ID) != i {
			t.Errorf("front slot %d holds the entry of connection %d, which the cache does not", i, ce.conn.ID)
		}
	}
}

// A connection's entry marks its pod, service and edge active once per
// step; a connection with traffic in every step keeps them past the
// retention however many steps go by, and its entry is still the cache's.
func TestSteadyConnectionKeepsItsSeriesPastTheRetention(t *testing.T) {
	a, clk := newAgg(t, Options{})
	c, _ := pairConns(1, frontend, catalog0)
	var sent uint64
	var first *connEntry
	for elapsed := time.Duration(0); elapsed < DefaultRetention+5*time.Minute; elapsed += DefaultStep {
		for range 3 { // several operations in the step: one marks
			a.KernelOp(op(c, flow.OpWrite, 1))
			sent++
		}
		if first == nil {
			a.mu.Lock()
			first = a.conns[c.ID]
			a.mu.Unlock()
		}
		clk.Add(DefaultStep)
		if elapsed%time.Minute == 0 {
			a.EvictIdle()
		}
	}
	a.mu.Lock()
	evicted, last := a.evictions, a.conns[c.ID]
	a.mu.Unlock()
	if first == nil || last != first {
		t.Errorf("the connection's cache entry was dropped and made again: it was not marked active")
	}
	if evicted != [numKinds]uint64{} {
		t.Fatalf("evictions %v of a connection active in every step", evicted)
	}
	// The client's pod, both services (the server's only through the
	// edge) and the edge.
	if got := a.seriesCount(); got != [4]int{1, 2, 1, 0} {
		t.Errorf("series %v, want [1 2 1 0]", got)
	}
	a.mu.Lock()
	podBytes := a.pods[podKey{id: frontend.ID, namespace: frontend.Namespace, name: frontend.Name,
		service: frontend.Service}].tcp.bytesSent
	a.mu.Unlock()
	if podBytes != sent {
		t.Errorf("frontend pod bytesSent %d, want %d", podBytes, sent)
	}
	checkFront(t, a)
}

// A server connection remembers the endpoint of its last request: repeated
// requests count where endpointLocked would put them, each request past
// the limit still counts an overflow, and an endpoint evicted while the
// connection is idle is made again, not counted in its evicted state.
func TestRepeatedRequestsOfAConnectionCountAsEachAlone(t *testing.T) {
	a, clk := newAgg(t, Options{MaxEndpointsPerService: 1})
	_, s := pairConns(1, frontend, catalog0)
	for _, m := range []struct{ method, path string }{
		{"GET", "/a"}, {"GET", "/a"}, {"GET", "/z"}, {"GET", "/z"}, {"GET", "/a"}, {"BREW", "/a"}, {"GET", "/a"},
		{"GET", "/a?q=1"}, // the same endpoint by another raw path
	} {
		a.Exchange(exchange(s, m.method, m.path, 200, time.Millisecond))
	}
	endpoints := func() map[string]uint64 {
		got, _ := endpointRequests(t, a, "catalog.shop")
		return got
	}
	if got, want := endpoints(), map[string]uint64{"GET:/a": 5, "<other>": 3}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("endpoints = %v, want %v", got, want)
	}
	a.mu.Lock()
	overflow := a.overflow[kindEndpoint]
	a.mu.Unlock()
	if overflow != 3 {
		t.Errorf("endpoint overflow = %d, want 3 (one per request past the limit)", overflow)
	}

	clk.Add(DefaultRetention + time.Minute)
	a.EvictIdle()
	a.Exchange(exchange(s, "GET", "/a", 200, time.Millisecond))
	if got, want := endpoints(), map[string]uint64{"GET:/a": 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after eviction endpoints = %v, want %v", got, want)
	}
}

// endpointRequests returns the requests of each of service's endpoints,
// and the endpoints in the order Endpoints gave them.
func endpointRequests(t *testing.T, a *Aggregator, service string) (map[string]uint64, []wire.Endpoint) {
	t.Helper()
	eps, err := a.Endpoints(service, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, e := range eps {
		got[e.Endpoint] = e.Requests
	}
	return got, eps
}
