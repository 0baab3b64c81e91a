package export

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weirnet/weir/tests/harness"
)

// scrape is one parsed GET /metrics.
type scrape struct {
	raw      []byte
	families map[string]*dto.MetricFamily
}

func (f *fixture) scrape(ctx context.Context) (scrape, error) {
	raw, err := f.daemon.Get(ctx, "/metrics")
	if err != nil {
		return scrape{}, fmt.Errorf("scrape: %w", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return scrape{}, fmt.Errorf("parse scrape: %w", err)
	}
	return scrape{raw: raw, families: fams}, nil
}

// sum adds the values of name's samples whose labels include want.
func (s scrape) sum(name string, want map[string]string) float64 {
	var v float64
	for _, m := range s.families[name].GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v
}

// byLabel sums name's samples matching want, by the value of label.
func (s scrape) byLabel(name, label string, want map[string]string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range s.families[name].GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}

// nonZero drops zero entries, so a class the daemon lists at 0 compares
// equal to one the truth never saw.
func nonZero[V int | float64](m map[string]V) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if v != 0 {
			out[k] = float64(v)
		}
	}
	return out
}

func (f *fixture) testPrometheus(t *testing.T) {
	ctx := runCtx(t, 60*time.Second)
	// Traffic of its own on top of what the suite made so far: a few
	// requests of each status class over new connections.
	var paths []string
	for i := range 9 {
		paths = append(paths, fmt.Sprintf("/prom/%d/status/%d", i, []int{200, 404, 503}[i%3]))
	}
	f.get(ctx, t, f.apiAddr, true, paths)
	truth := f.snapshotTruth()
	t.Logf("client pod truth: %d connections (%d to api), %d bytes sent, %d received, requests by class %v (to api %v)",
		truth.conns, truth.apiConns, truth.sent, truth.recv, truth.statusClass, truth.apiStatusClass)

	web := map[string]string{"namespace": "shop", "pod": "web", "service": "web"}
	webClient := map[string]string{"namespace": "shop", "pod": "web", "service": "web", "role": "client"}
	api := map[string]string{"namespace": "data", "pod": "api", "service": "api"}
	pair := map[string]string{"client_namespace": "shop", "client_service": "web", "server_namespace": "data", "server_service": "api"}

	// Requests by status class match the known mix exactly; wait for the
	// pipeline to count them all, then check the rest on the same scrape.
	var s scrape
	var podHTTP, pairHTTP map[string]float64
	err := harness.Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		var err error
		if s, err = f.scrape(ctx); err != nil {
			return false, err
		}
		podHTTP = nonZero(s.byLabel("weir_pod_http_requests_total", "status_class", webClient))
		pairHTTP = nonZero(s.byLabel("weir_pair_http_requests_total", "status_class", pair))
		return maps.Equal(podHTTP, nonZero(truth.statusClass)) && maps.Equal(pairHTTP, nonZero(truth.apiStatusClass)) &&
			s.sum("weir_pod_tcp_connects_total", web) >= float64(truth.conns), nil
	})
	if err != nil {
		t.Errorf("HTTP requests by status class: pod %v, pair %v; the client made %v, %v to api (%v)",
			podHTTP, pairHTTP, truth.statusClass, truth.apiStatusClass, err)
	}
	if got := s.byLabel("weir_pod_http_requests_total", "method", webClient); len(nonZero(got)) != 1 || got["GET"] == 0 {
		t.Errorf("web client requests by method %v, want GET only", got)
	}

	// Every family this test reads is served: a missing one would read
	// as zero and hide a component whose metrics never reach /metrics.
	for _, name := range []string{"weir_pod_http_requests_total", "weir_pair_http_requests_total",
		"weir_pod_tcp_connects_total", "weir_pod_tcp_closes_total", "weir_pod_tcp_accepts_total",
		"weir_pair_tcp_connects_total", "weir_pod_tcp_sent_bytes_total", "weir_pod_tcp_received_bytes_total",
		"weir_pair_tcp_bytes_total", "weir_enrolled_pods", "weir_hook_tier",
		"weir_skywalking_entries_received_total", "weir_skywalking_entries_filtered_total",
		"weir_skywalking_entries_dropped_total", "weir_skywalking_entries_sent_total",
		"weir_skywalking_messages_sent_total", "weir_skywalking_queue_entries", "weir_skywalking_stream_errors_total"} {
		if s.families[name] == nil {
			t.Errorf("metric family %s is not in the scrape", name)
		}
	}
	check := func(what string, got float64, low, high float64) {
		t.Helper()
		if got < low || got > high {
			t.Errorf("%s = %v, want in [%v, %v]", what, got, low, high)
		} else {
			t.Logf("%s = %v, in [%v, %v]", what, got, low, high)
		}
	}
	// Connections: the client pod's only TCP connections are the
	// http-client's, one successful connect each, so the counts are
	// exact, closes included: sockets the client's process released by
	// exiting are closed at its exit (see the SkyWalking case).
	conns, apiConns := float64(truth.conns), float64(truth.apiConns)
	check("weir_pod_tcp_connects_total{web}", s.sum("weir_pod_tcp_connects_total", web), conns, conns)
	check("weir_pod_tcp_closes_total{web}", s.sum("weir_pod_tcp_closes_total", web), conns, conns)
	check("weir_pair_tcp_connects_total{web→api}", s.sum("weir_pair_tcp_connects_total", pair), apiConns, apiConns)
	check("weir_pod_tcp_accepts_total{api}", s.sum("weir_pod_tcp_accepts_total", api), apiConns, apiConns)
	// Bytes: the http-client counts every byte its connections read and
	// wrote; the daemon counts syscall return values. Received bytes agree
	// exactly. Sent bytes: the client's count can miss the last request
	// of a connection — Go's transport writes requests from a background
	// goroutine whose count can land after the response was read and the
	// report taken — so the daemon may see up to one request line and
	// headers (under 256 bytes here) more per connection than the truth.
	check("weir_pod_tcp_sent_bytes_total{web}", s.sum("weir_pod_tcp_sent_bytes_total", web), float64(truth.sent), float64(truth.sent)+256*conns)
	check("weir_pod_tcp_received_bytes_total{web}", s.sum("weir_pod_tcp_received_bytes_total", web), float64(truth.recv), float64(truth.recv))
	if t.Failed() {
		f.logConnDiff(ctx, t, truth)
	}
	dir := s.byLabel("weir_pair_tcp_bytes_total", "direction", pair)
	if len(dir) != 2 {
		t.Errorf("weir_pair_tcp_bytes_total{web→api} by direction: %v, want two directions", dir)
	}
	for d, v := range dir {
		if v <= 0 {
			t.Errorf("weir_pair_tcp_bytes_total{web→api, direction=%q} = %v, want > 0", d, v)
		}
	}
	if v := s.sum("weir_enrolled_pods", nil); v != 2 {
		t.Errorf("weir_enrolled_pods = %v, want 2 (shop/web, data/api)", v)
	}
	if v := s.sum("weir_hook_tier", map[string]string{"tier": "base"}); v != 1 {
		t.Errorf(`weir_hook_tier{tier="base"} = %v, want 1`, v)
	}

	// Lint the whole scrape, promtool-style.
	problems, err := promlint.New(bytes.NewReader(s.raw)).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	var lines []string
	for _, p := range problems {
		lines = append(lines, p.Metric+": "+p.Text)
	}
	slices.Sort(lines)
	if len(lines) > 0 {
		t.Errorf("promlint found %d problems in the scrape:\n  %s", len(lines), strings.Join(lines, "\n  "))
	}
	t.Logf("scrape: %d metric families, %d bytes, %d lint problems", len(s.families), len(s.raw), len(lines))
}

// logConnDiff lists, per connection of the client pod, the bytes the daemon
// saw against the client's own counts, to locate a byte count mismatch.
func (f *fixture) logConnDiff(ctx context.Context, t *testing.T, truth truth) {
	conns, err := f.daemon.Connections(ctx, harness.ConnQuery{Pod: "shop/web", Limit: 10000})
	if err != nil {
		t.Logf("connections: %v", err)
		return
	}
	byLocal := map[string]harness.Connection{}
	for _, c := range conns {
		byLocal[c.Local.String()] = c
	}
	for _, c := range truth.connList {
		d, ok := byLocal[c.Local]
		if !ok {
			t.Logf("conn %s→%s: client sent %d recv %d; not in the daemon's table", c.Local, c.Remote, c.Sent, c.Recv)
			continue
		}
		delete(byLocal, c.Local)
		if int64(d.BytesSent) != c.Sent || int64(d.BytesRecv) != c.Recv {
			t.Logf("conn %s→%s: client sent %d recv %d; daemon %d/%d syscalls %d/%d close %+v", c.Local, c.Remote, c.Sent, c.Recv,
				d.BytesSent, d.BytesRecv, d.SyscallsSent, d.SyscallsRecv, d.Close)
		}
	}
	for l, d := range byLocal {
		t.Logf("daemon connection %s→%s (%s, %s) sent %d recv %d is not the client's", l, d.Remote, d.Comm, d.Role, d.BytesSent, d.BytesRecv)
	}
}
