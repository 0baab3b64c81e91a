package metrics

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/registry"
)

type noPods struct{}

func (noPods) List() []*registry.Pod { return nil }

func serve(t *testing.T, a *Aggregator) http.Handler {
	t.Helper()
	s := api.New(noPods{}, slog.New(slog.DiscardHandler))
	a.RegisterHTTP(s)
	return s
}

func getJSON(t *testing.T, h http.Handler, path string) (int, any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	if ct := rec.Result().Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: content-type %q", path, ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET %s: body is not JSON: %v: %s", path, err, body)
	}
	return rec.Code, v
}

func keys(v any) []string {
	m, _ := v.(map[string]any)
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func wantKeys(t *testing.T, what string, v any, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := keys(v); !slices.Equal(got, want) {
		t.Errorf("%s keys = %v, want %v", what, got, want)
	}
}

var (
	httpKeys    = []string{"requests", "errors", "rpm", "successRate", "latencyMs"}
	latencyKeys = []string{"p50", "p90", "p99", "avg"}
	tcpKeys     = []string{"connects", "accepts", "closes", "bytesSent", "bytesRecv", "retransmits", "drops", "rttMs"}
)

func checkHTTPTCP(t *testing.T, what string, obj map[string]any) {
	t.Helper()
	wantKeys(t, what+".http", obj["http"], httpKeys...)
	wantKeys(t, what+".http.latencyMs", obj["http"].(map[string]any)["latencyMs"], latencyKeys...)
	wantKeys(t, what+".tcp", obj["tcp"], tcpKeys...)
}

func TestAPIJSONShapes(t *testing.T) {
	a, _ := newAgg(t, Options{})
	feedConnection(a, 1)
	c, s := pairConns(1, frontend, catalog0)
	a.Exchange(exchange(s, "GET", "/api/items", 200, 2*time.Millisecond))
	a.Exchange(exchange(c, "GET", "/api/items", 200, 3*time.Millisecond))
	h := serve(t, a)

	code, v := getJSON(t, h, "/api/v1/services")
	list, ok := v.([]any)
	if code != 200 || !ok || len(list) != 2 {
		t.Fatalf("services = %d %v", code, v)
	}
	svc := list[0].(map[string]any)
	wantKeys(t, "service", svc, "name", "service", "namespace", "pods", "kubernetesService", "http", "tcp")
	checkHTTPTCP(t, "service", svc)
	if svc["name"] != "catalog.shop" || svc["service"] != "catalog" || svc["namespace"] != "shop" || svc["pods"] != 1.0 ||
		svc["kubernetesService"] != true || list[1].(map[string]any)["kubernetesService"] != false {
		t.Errorf("service = %v", svc)
	}
	if svc["http"].(map[string]any)["successRate"] != 1.0 || svc["http"].(map[string]any)["requests"] != 1.0 {
		t.Errorf("service http = %v", svc["http"])
	}

	code, v = getJSON(t, h, "/api/v1/topology?window=10m")
	wantKeys(t, "topology", v, "nodes", "edges")
	topo := v.(map[string]any)
	nodes, edges := topo["nodes"].([]any), topo["edges"].([]any)
	if code != 200 || len(nodes) != 2 || len(edges) != 1 {
		t.Fatalf("topology = %d %v", code, v)
	}
	wantKeys(t, "node", nodes[0], "id", "kind", "namespace")
	edge := edges[0].(map[string]any)
	wantKeys(t, "edge", edge, "source", "target", "protocol", "http", "tcp", "error")
	checkHTTPTCP(t, "edge", edge)
	if edge["source"] != "frontend.shop" || edge["target"] != "catalog.shop" || edge["protocol"] != "HTTP/1.1" || edge["error"] != true {
		t.Errorf("edge = %v", edge)
	}

	code, v = getJSON(t, h, "/api/v1/services/catalog.shop/endpoints")
	eps, _ := v.([]any)
	if code != 200 || len(eps) != 1 {
		t.Fatalf("endpoints = %d %v", code, v)
	}
	ep := eps[0].(map[string]any)
	wantKeys(t, "endpoint", ep, "endpoint", "method", "path", "requests", "errors", "rpm", "successRate", "latencyMs")
	wantKeys(t, "endpoint.latencyMs", ep["latencyMs"], latencyKeys...)
	if ep["endpoint"] != "GET:/api/items" || ep["method"] != "GET" || ep["path"] != "/api/items" || ep["requests"] != 1.0 {
		t.Errorf("endpoint = %v", ep)
	}

	code, v = getJSON(t, h, "/api/v1/services/catalog.shop/series?window=15m&step=1m")
	wantKeys(t, "series", v, "step", "points")
	ser := v.(map[string]any)
	pts := ser["points"].([]any)
	if code != 200 || ser["step"] != "1m" || len(pts) != 15 {
		t.Fatalf("series = %d step %v, %d points", code, ser["step"], len(pts))
	}
	last := pts[14].(map[string]any)
	wantKeys(t, "point", last, "time", "httpRequests", "httpErrors", "p99Ms", "avgMs", "bytesSent", "bytesRecv",
		"retransmits", "drops", "connects")
	if tm, err := time.Parse(time.RFC3339, last["time"].(string)); err != nil || !tm.Equal(t0) {
		t.Errorf("last point time %v (%v), want %s", last["time"], err, t0.Format(time.RFC3339))
	}
	if last["httpRequests"] != 1.0 || last["bytesSent"] != 300.0 || last["avgMs"] != 2.0 {
		t.Errorf("last point = %v", last)
	}
}

func TestAPIEmptyListsAreArrays(t *testing.T) {
	a, _ := newAgg(t, Options{})
	h := serve(t, a)
	for path, want := range map[string]string{
		"/api/v1/services": "[]",
		"/api/v1/topology": `{"nodes":[],"edges":[]}`,
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if got := strings.TrimSpace(rec.Body.String()); got != want {
			t.Errorf("%s = %s, want %s", path, got, want)
		}
	}
}

func TestAPIErrors(t *testing.T) {
	a, _ := newAgg(t, Options{})
	_, s := pairConns(1, frontend, catalog0)
	a.Exchange(exchange(s, "GET", "/", 200, time.Millisecond))
	h := serve(t, a)
	for path, want := range map[string]struct {
		code int
		msg  string
	}{
		"/api/v1/services/nope.shop/endpoints":                      {404, `unknown service "nope.shop"`},
		"/api/v1/services/nope.shop/series":                         {404, `unknown service "nope.shop"`},
		"/api/v1/services?window=yesterday":                         {400, `window="yesterday" is not a duration`},
		"/api/v1/topology?window=-5m":                               {400, "must be positive"},
		"/api/v1/services?window=1h":                                {400, "retention"},
		"/api/v1/services/catalog.shop/series?step=7s":              {400, "multiple of 10s"},
		"/api/v1/services/catalog.shop/series?window=30m&step=10ms": {400, "multiple of 10s"},
	} {
		code, v := getJSON(t, h, path)
		msg, _ := v.(map[string]any)["error"].(string)
		if code != want.code || !strings.Contains(msg, want.msg) {
			t.Errorf("GET %s = %d %q, want %d containing %q", path, code, msg, want.code, want.msg)
		}
	}
}
