package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/metrics"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// metricsAPI serves the real API with a real aggregator fed with known
// flows: frontend (client) → catalog (server), 4 requests of which one
// fails, 100 bytes each way, plus an external client of catalog. It
// returns the URL and a log of the query strings the daemon received.
func metricsAPI(t *testing.T) (string, *queryLog) {
	t.Helper()
	// The daemon started an hour before the flows, so windows are full
	// and rates are per window (a younger daemon reports rates over its
	// life instead).
	clock := now.Add(-time.Hour)
	agg, err := metrics.New(metrics.Options{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	clock = now
	fe := &flow.Pod{ID: 1, Namespace: "shop", Name: "frontend-0", Service: "frontend"}
	cat := &flow.Pod{ID: 2, Namespace: "shop", Name: "catalog-0", Service: "catalog"}
	cli := &flow.Connection{ID: 1, Role: event.RoleClient,
		Local:  flow.Peer{Addr: netip.MustParseAddrPort("10.0.0.2:4000"), Pod: fe},
		Remote: flow.Peer{Addr: netip.MustParseAddrPort("10.0.0.3:80"), Pod: cat}}
	srv := &flow.Connection{ID: 2, Role: event.RoleServer,
		Local:  flow.Peer{Addr: netip.MustParseAddrPort("10.0.0.3:80"), Pod: cat},
		Remote: flow.Peer{Addr: netip.MustParseAddrPort("10.0.0.2:4000"), Pod: fe}}
	ext := &flow.Connection{ID: 3, Role: event.RoleServer,
		Local:  flow.Peer{Addr: netip.MustParseAddrPort("10.0.0.3:80"), Pod: cat},
		Remote: flow.Peer{Addr: netip.MustParseAddrPort("192.0.2.7:5000")}}
	agg.KernelOp(&flow.KernelOp{Conn: cli, Kind: flow.OpConnect, Success: true, Start: 1, End: 2})
	agg.KernelOp(&flow.KernelOp{Conn: cli, Kind: flow.OpWrite, Success: true, Bytes: 100})
	agg.KernelOp(&flow.KernelOp{Conn: cli, Kind: flow.OpRead, Success: true, Bytes: 2048})
	agg.KernelOp(&flow.KernelOp{Conn: srv, Kind: flow.OpAccept, Success: true})
	agg.KernelOp(&flow.KernelOp{Conn: ext, Kind: flow.OpAccept, Success: true})
	for i, st := range []int{200, 200, 200, 500} {
		for _, c := range []*flow.Connection{cli, srv} {
			agg.Exchange(&flow.Exchange{Conn: c, Record: &record.Record{
				Protocol: record.HTTP11, Method: "GET", Path: "/items/" + string(rune('a'+i)), Status: st, GRPCStatus: -1,
				ReqStart: 1_000_000, RespEnd: 1_000_000 + 4_000_000,
			}})
		}
	}
	s := api.New(podList(nil), slog.New(slog.DiscardHandler))
	agg.RegisterHTTP(s)
	ql := &queryLog{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ql.add(r.URL.Path + "?" + r.URL.RawQuery)
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts.URL, ql
}

type queryLog struct {
	mu   sync.Mutex
	reqs []string
}

func (q *queryLog) add(s string) {
	q.mu.Lock()
	q.reqs = append(q.reqs, s)
	q.mu.Unlock()
}

func (q *queryLog) all() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.reqs...)
}

func TestServicesTable(t *testing.T) {
	url, _ := metricsAPI(t)
	code, out, errOut := runCtl(t, nil, "--http", url, "services")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := strings.Join([]string{
		"SERVICE        PODS  RPM  SUCCESS  P50     P99     AVG     CONNS  SENT  RECV    RETRANS  DROPS  RTT",
		"catalog.shop   1     0.8  75.0%    4.00ms  4.00ms  4.00ms  2      0B    0B      0        0      -",
		"frontend.shop  1     -    -        -       -       -       1      100B  2.0KiB  0        0      -",
		"",
	}, "\n")
	if out != want {
		t.Fatalf("table:\n%s\nwant:\n%s", out, want)
	}
}

func TestServicesJSONAndWindow(t *testing.T) {
	url, ql := metricsAPI(t)
	code, out, errOut := runCtl(t, nil, "--http", url, "services", "-o", "json", "--window", "10m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var svcs []wire.Service
	if err := json.Unmarshal([]byte(out), &svcs); err != nil {
		t.Fatalf("not a JSON service list: %v\n%s", err, out)
	}
	if len(svcs) != 2 || svcs[0].Name != "catalog.shop" || svcs[0].HTTP.Requests != 4 || svcs[0].HTTP.Errors != 1 ||
		svcs[0].HTTP.RPM != 0.4 {
		t.Fatalf("services = %+v, want catalog with 4 requests, 1 error, 0.4 rpm over 10m", svcs)
	}
	if reqs := ql.all(); len(reqs) != 1 || reqs[0] != "/api/v1/services?window=10m" {
		t.Errorf("requests = %v, want the window passed through", reqs)
	}
}

func TestTopologyTableFlagsErrorEdges(t *testing.T) {
	url, _ := metricsAPI(t)
	code, out, errOut := runCtl(t, nil, "--http", url, "topology")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := strings.Join([]string{
		"SOURCE         TARGET        PROTOCOL  RPM  SUCCESS  P99     CONNS  SENT  RECV    RETRANS  DROPS  STATUS",
		"192.0.2.7      catalog.shop  TCP       -    -        -       1      0B    0B      0        0      ok",
		"frontend.shop  catalog.shop  HTTP/1.1  0.8  75.0%    4.00ms  1      100B  2.0KiB  0        0      ERROR",
		"",
	}, "\n")
	if out != want {
		t.Fatalf("table:\n%s\nwant:\n%s", out, want)
	}
	code, out, _ = runCtl(t, nil, "--http", url, "topology", "-o", "json")
	var topo wire.Topology
	if code != 0 || json.Unmarshal([]byte(out), &topo) != nil || len(topo.Nodes) != 3 || len(topo.Edges) != 2 {
		t.Fatalf("json topology: exit %d %s", code, out)
	}
}

func TestEndpoints(t *testing.T) {
	url, _ := metricsAPI(t)
	code, out, errOut := runCtl(t, nil, "--http", url, "endpoints", "catalog.shop")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := strings.Join([]string{
		"ENDPOINT      RPM  REQUESTS  SUCCESS  P50     P90     P99     AVG",
		"GET:/items/a  0.2  1         100.0%   4.00ms  4.00ms  4.00ms  4.00ms",
		"GET:/items/b  0.2  1         100.0%   4.00ms  4.00ms  4.00ms  4.00ms",
		"GET:/items/c  0.2  1         100.0%   4.00ms  4.00ms  4.00ms  4.00ms",
		"GET:/items/d  0.2  1         0.0%     4.00ms  4.00ms  4.00ms  4.00ms",
		"",
	}, "\n")
	if out != want {
		t.Fatalf("endpoints table:\n%s\nwant:\n%s", out, want)
	}
	// Flags after the positional argument work too.
	code, out, _ = runCtl(t, nil, "--http", url, "endpoints", "catalog.shop", "-o", "json")
	var eps []wire.Endpoint
	if code != 0 || json.Unmarshal([]byte(out), &eps) != nil || len(eps) != 4 || eps[0].Method != "GET" {
		t.Fatalf("json endpoints: exit %d %s", code, out)
	}
	code, _, errOut = runCtl(t, nil, "--http", url, "endpoints", "nope.shop")
	if code != 1 || !strings.Contains(errOut, `no service "nope.shop"`) {
		t.Errorf("unknown service: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCtl(t, nil, "--http", url, "endpoints")
	if code != 2 || !strings.Contains(errOut, "missing SERVICE") {
		t.Errorf("no service: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = runCtl(t, nil, "--http", url, "endpoints", "a.b", "c.d")
	if code != 2 || !strings.Contains(errOut, `unexpected argument "c.d"`) {
		t.Errorf("two services: exit %d, stderr %q", code, errOut)
	}
}

func TestTopOnce(t *testing.T) {
	url, _ := metricsAPI(t)
	code, out, errOut := runCtl(t, nil, "--http", url, "top", "--once")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.Contains(out, clearScreen) {
		t.Error("--once cleared the screen")
	}
	if !strings.HasPrefix(out, "weir top  "+url+"  window 5m  12:00:00\n\nSERVICE") ||
		strings.Index(out, "catalog.shop   1") > strings.Index(out, "frontend.shop  1") ||
		!strings.Contains(out, "frontend.shop  catalog.shop  HTTP/1.1") {
		t.Fatalf("top output:\n%s", out)
	}
	code, out, _ = runCtl(t, nil, "--http", url, "top", "--once", "-o", "json")
	var snap topSnapshot
	if code != 0 || json.Unmarshal([]byte(out), &snap) != nil || len(snap.Services) != 2 || len(snap.Edges) != 2 ||
		!snap.Time.Equal(now) || snap.Edges[0].Source != "frontend.shop" {
		t.Fatalf("json top: exit %d %s", code, out)
	}
}

// syncBuffer is a bytes.Buffer safe to read while top writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTopRefreshesUntilCancelled(t *testing.T) {
	url, ql := metricsAPI(t)
	client, err := wire.NewClient(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- topLoop(ctx, env{client: client, stdout: &out, now: func() time.Time { return now }},
			topOptions{output: "table", window: "5m", interval: topMinInterval, reqTimeout: 5 * time.Second})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), clearScreen) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("top after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("top did not stop after its context was cancelled")
	}
	if n := strings.Count(out.String(), clearScreen); n < 3 {
		t.Fatalf("%d frames in 10 s, want at least 3", n)
	}
	if n := len(ql.all()); n < 6 {
		t.Errorf("%d requests, want services and topology per frame", n)
	}
}

func TestTopOutlivesTheCommandTimeoutButNotCancel(t *testing.T) {
	withDeadline, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	live := untilCancelled(withDeadline)
	<-withDeadline.Done()
	select {
	case <-live.Done():
		t.Fatal("the command's deadline ended the live view")
	case <-time.After(50 * time.Millisecond):
	}

	cancellable, cancel2 := context.WithTimeout(context.Background(), time.Hour)
	live = untilCancelled(cancellable)
	cancel2()
	select {
	case <-live.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling did not end the live view")
	}
}

func TestViewsWhenDaemonIsDown(t *testing.T) {
	dead := deadAddr(t)
	for _, args := range [][]string{{"services"}, {"topology"}, {"endpoints", "a.b"}, {"top", "--once"}} {
		code, out, errOut := runCtl(t, nil, append([]string{"--http", dead}, args...)...)
		if code != 1 || out != "" || !strings.Contains(errOut, "weir-daemon is not reachable at "+dead+": is it running?") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	// top without --once fails the same way rather than spinning.
	code, _, errOut := runCtl(t, nil, "--http", dead, "top")
	if code != 1 || !strings.Contains(errOut, "is not reachable") {
		t.Errorf("live top with the daemon down: exit %d, stderr %q", code, errOut)
	}
}

func TestViewUsageErrors(t *testing.T) {
	url, _ := metricsAPI(t)
	for name, args := range map[string][]string{
		"bad window":     {"services", "--window", "soon"},
		"zero window":    {"topology", "--window", "0s"},
		"bad output":     {"topology", "-o", "yaml"},
		"stray argument": {"services", "extra"},
		"fast top":       {"top", "--interval", "1ms"},
	} {
		code, _, errOut := runCtl(t, nil, append([]string{"--http", url}, args...)...)
		if code != 2 {
			t.Errorf("%s: exit %d, want 2 (stderr %q)", name, code, errOut)
		}
	}
}

func TestFmtBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 1536: "1.5KiB", 20 << 20: "20MiB", 3 << 40: "3.0TiB"} {
		if got := fmtBytes(n); got != want {
			t.Errorf("fmtBytes(%d) = %s, want %s", n, got, want)
		}
	}
}
