package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/daemon/api/wire"
)

// fakeDaemon serves canned JSON per path and records the queries it got.
func fakeDaemon(t *testing.T, bodies map[string]any) (string, *[]string) {
	t.Helper()
	var queries []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RequestURI())
		b, ok := bodies[r.URL.Path]
		if !ok {
			wire.WriteError(w, http.StatusNotFound, "no such path")
			return
		}
		wire.WriteJSON(w, http.StatusOK, b)
	}))
	t.Cleanup(ts.Close)
	return ts.URL, &queries
}

func TestConnectionsTable(t *testing.T) {
	url, _ := fakeDaemon(t, map[string]any{"/api/v1/connections": []wire.ConnInfo{
		{ID: 7, Namespace: "shop", Pod: "web-1", PID: 42, Comm: "nginx", Local: netip.MustParseAddrPort("10.0.0.2:80"),
			Remote: netip.MustParseAddrPort("10.0.0.3:5555"), Role: "server", State: "open", BytesSent: 100, BytesRecv: 20,
			Skipped: map[string]uint64{"h2_data": 900, "budget": 47}, TLS: "openssl"},
		{ID: 5, PID: 9, Comm: "curl", Role: "unknown", State: "closed", CloseReason: "idle"},
	}})
	code, out, errOut := runCtl(t, nil, "--http", url, "connections")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := strings.Join([]string{
		"ID   POD         PROCESS       LOCAL         REMOTE           ROLE      TLS       STATE          SENT   RECV   SKIPPED",
		"7    shop/web-1  nginx[42]     10.0.0.2:80   10.0.0.3:5555    server    openssl   open           100    20     budget=47,h2_data=900",
		"5    <unknown>   curl[9]       -             -                unknown   -         closed(idle)   0      0      -",
		"",
	}, "\n")
	if normalize(out) != normalize(want) {
		t.Fatalf("table:\n%s\nwant:\n%s", out, want)
	}
}

// normalize collapses runs of spaces, so the tests pin the columns and
// their order rather than tabwriter's padding.
func normalize(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

func TestRequestsTablePassesFiltersAndShowsPeerPod(t *testing.T) {
	grpc0 := 0
	reqs := []wire.Request{
		{Time: time.Date(2025, 6, 1, 12, 0, 1, 500e6, time.UTC), Pod: "shop/web-1", Peer: "10.0.0.3:5555",
			PeerPod: "shop/client-0", Role: "server", Method: "GET", Path: "/items", Status: 200, LatencyMs: 1.25},
		{Time: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), Pod: "shop/web-1", Peer: "10.96.0.1:443", Role: "client",
			Method: "POST", Path: "/pkg.Svc/Call", Status: 200, GRPCStatus: &grpc0, LatencyMs: 1500, Incomplete: true},
	}
	url, queries := fakeDaemon(t, map[string]any{"/api/v1/requests": reqs})
	code, out, errOut := runCtl(t, nil, "--http", url, "requests", "--pod", "shop/web-1", "--limit", "5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got := (*queries)[0]; got != "/api/v1/requests?limit=5&pod=shop%2Fweb-1" {
		t.Errorf("query = %s", got)
	}
	want := strings.Join([]string{
		"TIME POD PEER METHOD PATH STATUS LATENCY",
		"12:00:01.500 shop/web-1 shop/client-0 GET /items 200 1.25ms",
		"12:00:00.000 shop/web-1 10.96.0.1:443 POST /pkg.Svc/Call 200 grpc=0 (incomplete) 1.5s",
		"",
	}, "\n")
	if normalize(out) != want {
		t.Fatalf("table:\n%s\nwant:\n%s", out, want)
	}

	code, out, _ = runCtl(t, nil, "--http", url, "requests", "-o", "json")
	var got []wire.Request
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 2 || *got[1].GRPCStatus != 0 || got[0].PeerPod != "shop/client-0" {
		t.Fatalf("json: exit %d, %s", code, out)
	}
	if (*queries)[1] != "/api/v1/requests" {
		t.Errorf("query without filters = %s", (*queries)[1])
	}
	for _, args := range [][]string{{"requests", "--pod", "web-1"}, {"requests", "--limit", "-1"}, {"requests", "-o", "yaml"}} {
		if code, _, _ := runCtl(t, nil, append([]string{"--http", url}, args...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestFeaturesTableAndJSON(t *testing.T) {
	f := wire.Features{
		Capture: true, Payload: true, Tier: "base",
		Tiers: []wire.TierStatus{{Tier: "base", Available: true}, {Tier: "fentry", Reason: "attach: lockdown"}},
		Hooks: []wire.HookStatus{{Name: "tp_btf/sched_process_fork", Tier: "base", Available: true}},
		Metrics: []wire.MetricStatus{{Name: "rtt", Reason: "no program measures it"},
			{Name: "l4_duration", Reason: "needs fentry", SkyWalking: "write L4 total duration: sent as 0 in write L4"}},
	}
	url, _ := fakeDaemon(t, map[string]any{"/api/v1/features": f})
	code, out, errOut := runCtl(t, nil, "--http", url, "features")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := strings.Join([]string{
		"Capture: on", "Payload: on", "Tier: base", "",
		"TIER STATUS REASON", "base available -", "fentry unavailable attach: lockdown", "",
		"HOOK TIER STATUS REASON", "tp_btf/sched_process_fork base available -", "",
		"METRIC STATUS REASON SKYWALKING (ACCESS-LOG FIELDS)", "rtt unavailable no program measures it -",
		"l4_duration unavailable needs fentry write L4 total duration: sent as 0 in write L4", "",
	}, "\n")
	if normalize(out) != want {
		t.Fatalf("features:\n%s\nwant:\n%s", out, want)
	}
	code, out, _ = runCtl(t, nil, "--http", url, "features", "-o", "json")
	var got wire.Features
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Tier != "base" || len(got.Hooks) != 1 || got.Tiers[1].Reason != "attach: lockdown" {
		t.Fatalf("json: exit %d, %s", code, out)
	}

	off, _ := fakeDaemon(t, map[string]any{"/api/v1/features": wire.Features{Reason: "capture.enabled is false"}})
	if code, out, _ := runCtl(t, nil, "--http", off, "features"); code != 0 || out != "Capture: off (capture.enabled is false)\n" {
		t.Fatalf("capture off: exit %d, %q", code, out)
	}
}
