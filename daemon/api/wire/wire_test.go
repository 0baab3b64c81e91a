package wire

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// keys returns the JSON object keys of v, nested ones as "outer.inner"
// (array elements as "outer[]."), sorted.
func keys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(prefix string, d any)
	walk = func(prefix string, d any) {
		switch d := d.(type) {
		case map[string]any:
			for k, v := range d {
				out = append(out, prefix+k)
				walk(prefix+k+".", v)
			}
		case []any:
			if len(d) > 0 {
				walk(strings.TrimSuffix(prefix, ".")+"[].", d[0])
			}
		}
	}
	walk("", doc)
	sort.Strings(out)
	return out
}

func sorted(s ...string) []string { sort.Strings(s); return s }

// The dashboard (daemon/dashboard) and tests/ui read these names; weirctl
// and the e2e harness decode them. Each document is filled completely so
// that omitempty fields show, and its keys are compared with the names the
// API has always served: a rename or a lost field fails here first.
func TestWireFieldNamesAreTheAPIs(t *testing.T) {
	ts := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	n := uint64(1)
	grpc := 0
	ap := netip.MustParseAddrPort("10.0.0.1:80")
	for _, tc := range []struct {
		name string
		doc  any
		want []string
	}{
		{"pod", Pod{CNIVersion: "1.1.0"}, sorted("id", "network", "namespace", "name", "uid", "sandboxID",
			"infraContainerID", "netns", "netnsInode", "ifname", "ifIndex", "hostVeth", "hostVethIndex", "ips",
			"cniVersion", "enrolledAt")},
		{"request", Request{PeerPod: "a/b", Host: "h", GRPCStatus: &grpc, TraceID: "t"}, sorted("time", "pod",
			"peer", "peerPod", "role", "protocol", "method", "path", "host", "status", "grpcStatus", "latencyMs",
			"reqBytes", "respBytes", "traceId", "incomplete", "connectionId")},
		{"connection", ConnInfo{Namespace: "ns", Pod: "p", ContainerID: "c", CloseReason: "fin", Local: ap,
			Remote: ap, Skipped: map[string]uint64{"body": 1}, FirstSeen: ts, LastSeen: ts,
			Connect: &ConnectInfo{InProgress: true, Errno: 1}, Close: &CloseInfo{KernelBytesSent: &n, KernelBytesRecv: &n}},
			sorted("id", "podID", "namespace", "pod", "pid", "comm", "cgroupID", "containerID", "fd", "local",
				"remote", "role", "state", "closeReason", "openSeen", "bytesSent", "bytesRecv", "syscallsSent",
				"syscallsRecv", "gaps", "gapBytes", "truncated", "skipped", "skipped.body", "firstSeen", "lastSeen",
				"connect", "connect.syscall", "connect.start", "connect.end", "connect.success",
				"connect.inProgress", "connect.errno", "close", "close.time", "close.kernelBytesSent",
				"close.kernelBytesRecv")},
		{"features", Features{Reason: "r", CaptureTier: "socket", CaptureTierReason: "r", Tier: "base", TierError: "e",
			Tiers:   []TierStatus{{Reason: "r"}},
			Hooks:   []HookStatus{{Reason: "r"}},
			Metrics: []MetricStatus{{Reason: "r", SkyWalking: "s"}}},
			sorted("capture", "reason", "payload", "captureTier", "captureTierReason", "tier", "tierError", "tiers", "tiers[].tier",
				"tiers[].available", "tiers[].reason", "hooks", "hooks[].name", "hooks[].tier",
				"hooks[].available", "hooks[].reason", "metrics", "metrics[].name", "metrics[].available",
				"metrics[].reason", "metrics[].skywalking")},
		{"error", ErrorBody{Error: "x"}, []string{"error"}},
		{"service", Service{}, sorted("name", "service", "namespace", "pods", "kubernetesService",
			"http", "http.requests", "http.errors", "http.rpm", "http.successRate", "http.latencyMs",
			"http.latencyMs.p50", "http.latencyMs.p90", "http.latencyMs.p99", "http.latencyMs.avg",
			"tcp", "tcp.connects", "tcp.accepts", "tcp.closes", "tcp.bytesSent", "tcp.bytesRecv",
			"tcp.retransmits", "tcp.drops", "tcp.rttMs")},
		{"topology", Topology{Nodes: []Node{{}}, Edges: []Edge{{}}}, sorted("nodes", "nodes[].id",
			"nodes[].kind", "nodes[].namespace", "edges", "edges[].source", "edges[].target",
			"edges[].protocol", "edges[].error", "edges[].http", "edges[].http.requests", "edges[].http.errors",
			"edges[].http.rpm", "edges[].http.successRate", "edges[].http.latencyMs",
			"edges[].http.latencyMs.p50", "edges[].http.latencyMs.p90", "edges[].http.latencyMs.p99",
			"edges[].http.latencyMs.avg", "edges[].tcp", "edges[].tcp.connects", "edges[].tcp.accepts",
			"edges[].tcp.closes", "edges[].tcp.bytesSent", "edges[].tcp.bytesRecv", "edges[].tcp.retransmits",
			"edges[].tcp.drops", "edges[].tcp.rttMs")},
		{"endpoint", Endpoint{}, sorted("endpoint", "method", "path", "requests", "errors", "rpm",
			"successRate", "latencyMs", "latencyMs.p50", "latencyMs.p90", "latencyMs.p99", "latencyMs.avg")},
		{"series", Series{Points: []Point{{}}}, sorted("step", "points", "points[].time",
			"points[].httpRequests", "points[].httpErrors", "points[].p99Ms", "points[].avgMs",
			"points[].bytesSent", "points[].bytesRecv", "points[].retransmits", "points[].drops",
			"points[].connects")},
	} {
		if got := keys(t, tc.doc); !slices.Equal(got, tc.want) {
			t.Errorf("%s: JSON keys\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// An empty list is [] and not null: the dashboard iterates over it.
func TestFeaturesWithoutCaptureKeepsEmptyLists(t *testing.T) {
	b, err := json.Marshal(Features{Tiers: []TierStatus{}, Hooks: []HookStatus{}, Metrics: []MetricStatus{}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"capture":false,"payload":false,"tiers":[],"hooks":[],"metrics":[]}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}

func TestWriteErrorIsTheAPIsErrorDocument(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteError(rec, http.StatusBadRequest, `parameter limit="x": want <an integer>`)
	if rec.Code != http.StatusBadRequest || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	// The same bytes json.Encoder wrote for the connections API before it
	// shared this writer: HTML characters escaped, one trailing newline.
	if want := `{"error":"parameter limit=\"x\": want \u003can integer\u003e"}` + "\n"; rec.Body.String() != want {
		t.Errorf("body %q, want %q", rec.Body.String(), want)
	}
}

func TestWriteJSONThatCannotEncodeIsAnError(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusOK, map[string]any{"f": func() {}})
	var eb ErrorBody
	if rec.Code != http.StatusInternalServerError || json.Unmarshal(rec.Body.Bytes(), &eb) != nil ||
		!strings.HasPrefix(eb.Error, "encode response: ") {
		t.Errorf("status %d body %q, want 500 with an encode error", rec.Code, rec.Body)
	}
}
