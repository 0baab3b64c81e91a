package metrics

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

func gather(t *testing.T, a *Aggregator) map[string]*dto.Metric {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(a); err != nil {
		t.Fatalf("register: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.Metric{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = m
		}
	}
	return out
}

// key names a series as gather does: labels sorted by name.
func key(name string, labels ...string) string {
	var ls []string
	for _, l := range labels {
		ls = append(ls, strings.Split(l, ",")...)
	}
	sort.Strings(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

func TestPrometheusMetricsLintClean(t *testing.T) {
	a, _ := newAgg(t, Options{RoutePatterns: []string{"/api/items/{id}"}})
	feedConnection(a, 1)
	c, s := pairConns(1, frontend, catalog0)
	a.Exchange(exchange(s, "GET", "/api/items/1", 200, 3*time.Millisecond))
	a.Exchange(exchange(c, "GET", "/api/items/1", 200, 4*time.Millisecond))
	problems, err := testutil.CollectAndLint(a)
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(a); n < 40 {
		t.Errorf("only %d series collected", n)
	}
}

func TestPrometheusValuesForKnownFlows(t *testing.T) {
	a, _ := newAgg(t, Options{RoutePatterns: []string{"/api/items/{id}"}})
	feedConnection(a, 1)
	c, s := pairConns(1, frontend, catalog0)
	for i := range 4 {
		status := 200
		if i == 3 {
			status = 503
		}
		a.Exchange(exchange(s, "GET", "/api/items/7", status, 3*time.Millisecond))
		a.Exchange(exchange(c, "GET", "/api/items/7", status, 30*time.Millisecond))
	}
	m := gather(t, a)
	fe := "namespace=shop,pod=frontend-7d9,service=frontend"
	cat := "namespace=shop,pod=catalog-0,service=catalog"
	pair := "client_namespace=shop,client_service=frontend,server_namespace=shop,server_service=catalog"
	counters := map[string]float64{
		key("weir_pod_tcp_connects_total", fe):                                              1,
		key("weir_pod_tcp_accepts_total", cat):                                              1,
		key("weir_pod_tcp_closes_total", cat):                                               1,
		key("weir_pod_tcp_sent_bytes_total", fe):                                            100,
		key("weir_pod_tcp_received_bytes_total", fe):                                        300,
		key("weir_pod_tcp_sent_packets_total", fe):                                          2,
		key("weir_pod_tcp_retransmits_total", fe):                                           1,
		key("weir_pod_tcp_drops_total", fe, "reason=NETFILTER_DROP"):                        3,
		key("weir_pair_tcp_connects_total", pair):                                           1,
		key("weir_pair_tcp_accepts_total", pair):                                            0,
		key("weir_pair_tcp_bytes_total", pair, "direction=client_to_server"):                100,
		key("weir_pair_tcp_bytes_total", pair, "direction=server_to_client"):                300,
		key("weir_pair_tcp_drops_total", pair, "reason=NETFILTER_DROP"):                     3,
		key("weir_pod_http_requests_total", cat, "role=server,method=GET,status_class=2xx"): 3,
		key("weir_pod_http_requests_total", cat, "role=server,method=GET,status_class=5xx"): 1,
		key("weir_pod_http_requests_total", fe, "role=client,method=GET,status_class=2xx"):  3,
		key("weir_pair_http_requests_total", pair, "method=GET,status_class=5xx"):           1,
		key("weir_endpoint_http_requests_total", "namespace=shop,service=catalog",
			"endpoint=GET:/api/items/{id},status_class=2xx"): 3,
		key("weir_metrics_cardinality_overflow_total", "kind=endpoint"): 0,
	}
	for k, want := range counters {
		got, ok := m[k]
		if !ok {
			t.Errorf("%s missing", k)
			continue
		}
		if v := got.GetCounter().GetValue(); v != want {
			t.Errorf("%s = %v, want %v", k, v, want)
		}
	}
	// Histograms: counts, sums and the le semantics.
	h := m[key("weir_pod_tcp_rtt_seconds", fe)].GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 0.004 {
		t.Errorf("rtt histogram count %d sum %v, want 1 and 0.004", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 0.005 {
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("rtt bucket le=%v = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	lat := m[key("weir_pair_http_request_duration_seconds", pair)].GetHistogram()
	if lat.GetSampleCount() != 4 || lat.GetSampleSum() < 0.1199 || lat.GetSampleSum() > 0.1201 {
		t.Errorf("pair latency count %d sum %v, want 4 and 0.12 (the client's view)", lat.GetSampleCount(), lat.GetSampleSum())
	}
	size := m[key("weir_pod_http_response_size_bytes", cat, "role=server")].GetHistogram()
	if size.GetSampleCount() != 4 || size.GetSampleSum() != 4*1150 {
		t.Errorf("response size count %d sum %v", size.GetSampleCount(), size.GetSampleSum())
	}
	cl := m[key("weir_pod_tcp_connect_duration_seconds", fe)].GetHistogram()
	if cl.GetSampleCount() != 1 || cl.GetSampleSum() != 0.002 {
		t.Errorf("connect duration count %d sum %v", cl.GetSampleCount(), cl.GetSampleSum())
	}
	if g := m["weir_metrics_series{kind=edge}"].GetGauge().GetValue(); g != 1 {
		t.Errorf("edge series gauge = %v", g)
	}
}

func TestRegisterMetricsRefusesADuplicate(t *testing.T) {
	a, _ := newAgg(t, Options{})
	reg := prometheus.NewPedanticRegistry()
	if err := a.RegisterMetrics(reg); err != nil {
		t.Fatalf("first registration: %v", err)
	}
	if err := a.RegisterMetrics(reg); err == nil {
		t.Fatal("a second registration of the same collector succeeded")
	}
}

func TestPrometheusOverflowCounter(t *testing.T) {
	a, _ := newAgg(t, Options{MaxEndpointsPerService: 1})
	_, s := pairConns(1, frontend, catalog0)
	for _, p := range []string{"/a", "/b", "/c"} {
		a.Exchange(exchange(s, "GET", p, 200, time.Millisecond))
	}
	m := gather(t, a)
	if v := m["weir_metrics_cardinality_overflow_total{kind=endpoint}"].GetCounter().GetValue(); v != 2 {
		t.Errorf("overflow = %v, want 2", v)
	}
	if v := m["weir_endpoint_http_requests_total{endpoint=<other>,namespace=shop,service=catalog,status_class=2xx}"].GetCounter().GetValue(); v != 2 {
		t.Errorf("<other> endpoint = %v, want 2", v)
	}
}
