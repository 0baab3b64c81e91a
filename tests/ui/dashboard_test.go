package ui

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/dashboard"
	"github.com/weirnet/weir/daemon/registry"
)

// The canned answers follow the aggregation API (daemon/metrics) field for
// field: the demo application's three services, an external peer, a lossy
// reviews edge and a failing reviews route.
const (
	servicesJSON = `[
 {"name":"frontend.shop","service":"frontend","namespace":"shop","pods":1,"kubernetesService":true,
  "http":{"requests":6000,"errors":0,"rpm":1200,"successRate":1,"latencyMs":{"p50":4.1,"p90":9.5,"p99":21.7,"avg":5.2}},
  "tcp":{"connects":12,"accepts":40,"closes":30,"bytesSent":5242880,"bytesRecv":1048576,"retransmits":0,"drops":0,"rttMs":0.2}},
 {"name":"catalog.data","service":"catalog","namespace":"data","pods":2,"kubernetesService":true,
  "http":{"requests":6000,"errors":0,"rpm":1200,"successRate":1,"latencyMs":{"p50":0.8,"p90":1.4,"p99":3.3,"avg":0.9}},
  "tcp":{"connects":0,"accepts":2,"closes":0,"bytesSent":2097152,"bytesRecv":900000,"retransmits":0,"drops":0,"rttMs":0.1}},
 {"name":"reviews.data","service":"reviews","namespace":"data","pods":1,
  "http":{"requests":6000,"errors":612,"rpm":1200,"successRate":0.898,"latencyMs":{"p50":1.2,"p90":2.9,"p99":250.4,"avg":8.1}},
  "tcp":{"connects":0,"accepts":40,"closes":38,"bytesSent":1500000,"bytesRecv":800000,"retransmits":57,"drops":3,"rttMs":0.4}}
]`
	topologyJSON = `{
 "nodes":[{"id":"frontend.shop","kind":"service","namespace":"shop"},{"id":"catalog.data","kind":"service","namespace":"data"},
  {"id":"reviews.data","kind":"service","namespace":"data"},{"id":"10.213.7.1","kind":"external"}],
 "edges":[
  {"source":"frontend.shop","target":"catalog.data","protocol":"HTTP/2",
   "http":{"requests":6000,"errors":0,"rpm":1200,"successRate":1,"latencyMs":{"p50":0.9,"p90":1.5,"p99":3.5,"avg":1}},
   "tcp":{"bytesSent":900000,"bytesRecv":2097152,"retransmits":0,"drops":0},"error":false},
  {"source":"frontend.shop","target":"reviews.data","protocol":"HTTP/1.1",
   "http":{"requests":6000,"errors":612,"rpm":1200,"successRate":0.898,"latencyMs":{"p50":1.3,"p90":3,"p99":251,"avg":8.3}},
   "tcp":{"bytesSent":800000,"bytesRecv":1500000,"retransmits":57,"drops":3},"error":true},
  {"source":"10.213.7.1","target":"frontend.shop","protocol":"HTTP/1.1",
   "http":{"requests":6000,"errors":0,"rpm":1200,"successRate":1,"latencyMs":{"p50":4.2,"p90":9.6,"p99":22,"avg":5.3}},
   "tcp":{"bytesSent":1048576,"bytesRecv":5242880,"retransmits":0,"drops":0},"error":false}
 ]}`
	reviewsEndpointsJSON = `[
 {"endpoint":"GET:/reviews/{id}","method":"GET","path":"/reviews/{id}","requests":6000,"errors":612,"rpm":1200,
  "successRate":0.898,"latencyMs":{"p50":1.2,"p90":2.9,"p99":250.4,"avg":8.1}}]`
	frontendEndpointsJSON = `[
 {"endpoint":"GET:/product/{id}","method":"GET","path":"/product/{id}","requests":5000,"errors":0,"rpm":1000,
  "successRate":1,"latencyMs":{"p50":4.3,"p90":9.9,"p99":22.5,"avg":5.4}},
 {"endpoint":"GET:/","method":"GET","path":"/","requests":1000,"errors":0,"rpm":200,
  "successRate":1,"latencyMs":{"p50":3.1,"p90":6.2,"p99":12.9,"avg":3.5}}]`
)

// featuresJSON is a node like this one: base tier, fentry refused by
// lockdown, and one kernel metric that tier cannot measure. It is built
// from the daemon's own type so the test follows the wire format.
func featuresJSON(t *testing.T) string {
	t.Helper()
	f := wire.Features{Capture: true, Payload: true, Tier: "base",
		Tiers: []wire.TierStatus{{Tier: "base", Available: true}, {Tier: "fentry", Reason: "fentry refused: lockdown"}},
		Hooks: []wire.HookStatus{{Name: "tracepoint/syscalls/sys_enter_connect", Tier: "base", Available: true},
			{Name: "fentry/tcp_sendmsg", Tier: "fentry", Reason: "fentry refused: lockdown"}},
		Metrics: []wire.MetricStatus{{Name: "retransmits", Available: true},
			{Name: "netfilter-time", Reason: "needs the fentry tier"}},
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// seriesJSON is 15 one-minute points with a rising error count.
func seriesJSON() string {
	var b strings.Builder
	b.WriteString(`{"step":"1m0s","points":[`)
	start := time.Now().Add(-15 * time.Minute).Truncate(time.Minute)
	for i := range 15 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"time":%q,"httpRequests":%d,"httpErrors":%d,"p99Ms":%g,"avgMs":%g,"bytesSent":%d,"bytesRecv":%d,"retransmits":%d,"drops":%d,"connects":%d}`,
			start.Add(time.Duration(i)*time.Minute).Format(time.RFC3339), 1150+10*i, 100+i*2, 200+float64(i*5), 8+float64(i)/4,
			90000+1000*i, 50000+800*i, 3+i%4, i%2, 2+i%3)
	}
	b.WriteString("]}")
	return b.String()
}

type fakePods []*registry.Pod

func (f fakePods) List() []*registry.Pod { return f }

func demoPods() fakePods {
	at := time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC)
	pod := func(id uint32, ns, name, ip, veth string) *registry.Pod {
		return &registry.Pod{ID: id, Namespace: ns, Name: name, Netns: "/run/netns/wdemo-" + name, NetnsInode: 4026532000 + uint64(id),
			HostVeth: veth, IPs: []registry.IPConfig{{Address: ip}}, EnrolledAt: at}
	}
	return fakePods{pod(1, "shop", "frontend", "10.213.7.2/24", "veth1a2b3c"), pod(2, "data", "catalog", "10.213.7.3/24", "veth4d5e6f"),
		pod(3, "data", "reviews", "10.213.7.4/24", "veth7a8b9c"), pod(4, "shop", "loadgen", "10.213.7.5/24", "vethabcdef")}
}

// startDashboard serves the dashboard exactly as the daemon mounts it
// (api.Server + RegisterHTTP), with the aggregation endpoints answering
// from answers (path → JSON; a missing path is the API's JSON 404).
func startDashboard(t *testing.T, pods fakePods, answers map[string]string) string {
	t.Helper()
	srv := api.New(pods, slog.New(slog.DiscardHandler))
	dashboard.New().RegisterHTTP(srv)
	srv.Handle("GET /api/v1/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := answers[r.URL.Path]
		if !ok {
			wire.WriteError(w, http.StatusNotFound, "unknown service or path "+r.URL.Path)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts.URL
}

func demoAnswers(t *testing.T) map[string]string {
	return map[string]string{
		"/api/v1/services":                            servicesJSON,
		"/api/v1/topology":                            topologyJSON,
		"/api/v1/features":                            featuresJSON(t),
		"/api/v1/services/reviews.data/endpoints":     reviewsEndpointsJSON,
		"/api/v1/services/frontend.shop/endpoints":    frontendEndpointsJSON,
		"/api/v1/services/catalog.data/endpoints":     `[]`,
		"/api/v1/services/reviews.data/series":        seriesJSON(),
		"/api/v1/services/frontend.shop/series":       seriesJSON(),
		"/api/v1/services/catalog.data/series":        seriesJSON(),
		"/api/v1/services/does-not-exist.x/endpoints": `[]`,
	}
}

func assertContains(t *testing.T, view, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s view lacks %q; it shows:\n%s", view, w, text)
		}
	}
}

func assertCount(t *testing.T, b *Browser, selector string, want int) {
	t.Helper()
	n, err := b.Count(selector)
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Errorf("%d elements match %q, want %d", n, selector, want)
	}
}

func shot(t *testing.T, b *Browser, name string) {
	t.Helper()
	path, err := b.Screenshot(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

func TestDashboardRendersEveryViewFromTheAggregationAPI(t *testing.T) {
	base := startDashboard(t, demoPods(), demoAnswers(t))
	b := NewBrowser(t)

	t.Run("services", func(t *testing.T) {
		text, err := b.View(base+"/#/services", "services", `tr[data-service="reviews.data"]`)
		if err != nil {
			t.Fatal(err)
		}
		assertContains(t, "services", text, "frontend.shop", "catalog.data", "reviews.data", "1200", "89.8%", "250 ms", "57", "6.0 MiB")
		assertCount(t, b, "#services tbody tr", 3)
		assertCount(t, b, `tr[data-service="reviews.data"] td.bad`, 3) // success rate, retransmits, drops
		// reviews is named by Weir, not by a Service the OAP resolves:
		// marked, and the page says what that means in SkyWalking.
		assertCount(t, b, `tr[data-service="reviews.data"] .unresolved`, 1)
		assertCount(t, b, "#services .unresolved", 1)
		assertContains(t, "services", text, "as Unknown in other nodes' data")
		shot(t, b, "services")
	})
	t.Run("topology", func(t *testing.T) {
		text, err := b.View(base+"/#/topology", "topology", "g.edge")
		if err != nil {
			t.Fatal(err)
		}
		assertContains(t, "topology", text, "frontend.shop", "catalog.data", "reviews.data", "10.213.7.1",
			"HTTP/2 · 1200 rpm", "100% ok · p99 3.5 ms", "89.8% ok · p99 251 ms", "57 retrans", "3 drops")
		assertCount(t, b, "g.node", 4)
		assertCount(t, b, "g.node.external", 1)
		assertCount(t, b, "g.edge", 3)
		assertCount(t, b, `g.edge.error[data-source="frontend.shop"][data-target="reviews.data"]`, 1)
		shot(t, b, "topology")
	})
	t.Run("service detail", func(t *testing.T) {
		text, err := b.View(base+"/#/service/reviews.data", "service", ".chart svg path.line")
		if err != nil {
			t.Fatal(err)
		}
		assertContains(t, "service", text, "reviews.data", "namespace data", "HTTP requests per minute", "HTTP success rate",
			"HTTP latency", "TCP bytes", "TCP retransmits and drops", "/reviews/{id}", "89.8%")
		assertCount(t, b, ".chart", 6)
		assertCount(t, b, ".chart path.line", 9) // rpm, success, p99+avg, sent+recv, retrans+drops, connects
		shot(t, b, "service-reviews")
	})
	t.Run("endpoints", func(t *testing.T) {
		text, err := b.View(base+"/#/endpoints/frontend.shop", "endpoints", `tr[data-endpoint="GET:/product/{id}"]`)
		if err != nil {
			t.Fatal(err)
		}
		assertContains(t, "endpoints", text, "GET /product/{id}", "GET /", "1000", "22.5 ms")
		assertCount(t, b, "table.endpoints tbody tr", 2)
		shot(t, b, "endpoints")
	})
	t.Run("pods", func(t *testing.T) {
		text, err := b.View(base+"/#/pods", "pods", `tr[data-pod="data/reviews"]`)
		if err != nil {
			t.Fatal(err)
		}
		assertContains(t, "pods", text, "frontend", "catalog", "reviews", "loadgen", "10.213.7.4/24", "veth7a8b9c",
			"payload captured", "hook tier: base", "netfilter-time", "needs the fentry tier", "2 hooks, 1 attached")
		assertCount(t, b, "#pods tbody tr", 4)
		assertCount(t, b, "#metrics .badge.off", 1)
		assertCount(t, b, "#hooks tbody tr", 2)
		shot(t, b, "pods")
	})
	if errs := b.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("browser console errors:\n%s", strings.Join(errs, "\n"))
	}
}

func TestDashboardSaysNoTrafficYetBeforeAnyTraffic(t *testing.T) {
	base := startDashboard(t, fakePods{}, map[string]string{
		"/api/v1/services": `[]`, "/api/v1/topology": `{"nodes":[],"edges":[]}`, "/api/v1/features": featuresJSON(t),
	})
	b := NewBrowser(t)
	for _, v := range []struct{ route, view, want string }{
		{"services", "services", "no traffic yet"},
		{"topology", "topology", "no traffic yet"},
		{"endpoints", "endpoints", "no traffic yet"},
		{"pods", "pods", "no pods enrolled"},
	} {
		text, err := b.View(base+"/#/"+v.route, v.view, ".empty")
		if err != nil {
			t.Fatal(err)
		}
		assertContains(t, v.view, text, v.want)
	}
	shot(t, b, "empty-services")
	if errs := b.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("browser console errors:\n%s", strings.Join(errs, "\n"))
	}
}

func TestDashboardSaysDaemonUnreachableWhenTheAPIDoesNotAnswer(t *testing.T) {
	// The page loads, then every API request gets its connection closed
	// without an answer: what a browser sees when weir-daemon is gone.
	mux := http.NewServeMux()
	page := dashboard.Handler()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /ui/", page)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	b := NewBrowser(t)
	text, err := b.View(ts.URL+"/#/services", "services", "#error")
	if err != nil {
		t.Fatal(err)
	}
	assertContains(t, "services", text, "weir-daemon unreachable")
	assertCount(t, b, "#status.down", 1)
	shot(t, b, "unreachable")
}

func TestDashboardShowsTheAPIErrorForAnUnknownService(t *testing.T) {
	base := startDashboard(t, demoPods(), demoAnswers(t))
	b := NewBrowser(t)
	text, err := b.View(base+"/#/service/does-not-exist.x", "service", "#error")
	if err != nil {
		t.Fatal(err)
	}
	assertContains(t, "service", text, "unknown service or path /api/v1/services/does-not-exist.x/series", "HTTP 404")
}
