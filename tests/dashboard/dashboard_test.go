package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

func TestMain(m *testing.M) { peers.Main(m) }

const (
	apiPort = 8080
	// node is the target label the chart's ServiceMonitor adds.
	node = "node-1"
	// scrapeGap is the time between the two scrapes as stored: the rate
	// window below covers both.
	scrapeGap = 30 * time.Second
)

// Grafana's variables and macros, as the dashboard's "All" selections
// resolve them.
var macros = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "30s", "$__range", "1h",
	"$cluster", ".*", "$node", ".*", "$namespace", ".*", "$service", ".*")

// mayBeEmpty are the queries this traffic cannot fill, and why. Every other
// query must return at least one series.
var mayBeEmpty = map[string]string{
	"Services/H":              "kernel drops: none on a veth between two idle pods",
	"Retransmits and drops/B": "kernel drops: none on a veth between two idle pods",
}

// expect are values this traffic fixes exactly: per scrape interval the web
// pod makes 60 requests to the api pod (2 per second, 120 per minute), one
// in five answered 503, two in five 200, one 201, one 404. A value below 0
// only asks for the series.
var expect = map[string][]struct {
	labels map[string]string
	value  float64
}{
	"Services/A":                            {{map[string]string{"namespace": "data", "service": "api"}, 120}},
	"Services/B":                            {{map[string]string{"namespace": "data", "service": "api"}, 0.8}},
	"Caller error rate/A":                   {{map[string]string{"client_namespace": "shop", "client_service": "web"}, 0.2}},
	"Callers (requests per minute)/A":       {{map[string]string{"client_namespace": "shop", "client_service": "web"}, 120}},
	"Service map/edges":                     {{map[string]string{"id": "shop/web -> data/api", "source": "shop/web", "target": "data/api"}, 120}},
	"Service map/nodes":                     {{map[string]string{"id": "shop/web"}, -1}, {map[string]string{"id": "data/api"}, -1}},
	"Requests per minute by status class/A": {{map[string]string{"status_class": "2xx"}, 72}, {map[string]string{"status_class": "4xx"}, 24}, {map[string]string{"status_class": "5xx"}, 24}},
	"Endpoints/A":                           {{map[string]string{"endpoint": "GET:/dash/3/status/503"}, 4}},
	"Endpoints/B":                           {{map[string]string{"endpoint": "GET:/dash/3/status/503"}, 0}, {map[string]string{"endpoint": "GET:/dash/2/status/404"}, 1}},
	"Hook tier per node/A":                  {{map[string]string{"node": node, "tier": "base"}, 1}},
	"Hook tier per node/C":                  {{map[string]string{"node": node}, 2}},
}

type panel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func queries(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile("../../install/grafana/weir.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out[p.Title+"/"+tg.RefID] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// memStore is the smallest storage.Queryable the PromQL engine runs on:
// float samples in memory, by series. Prometheus' TSDB would do the same
// at the cost of its dependency tree (cloud SDKs among it).
type memStore map[string]*memSeries

type memSeries struct {
	lset    labels.Labels
	samples []chunks.Sample
}

// fsample is a float sample (chunks.Sample).
type fsample struct {
	t int64
	f float64
}

func (s fsample) T() int64                      { return s.t }
func (s fsample) ST() int64                     { return 0 }
func (s fsample) F() float64                    { return s.f }
func (s fsample) H() *histogram.Histogram       { return nil }
func (s fsample) FH() *histogram.FloatHistogram { return nil }
func (s fsample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fsample) Copy() chunks.Sample           { return s }

func (m memStore) queryable() storage.Queryable {
	return storage.QueryableFunc(func(mint, maxt int64) (storage.Querier, error) {
		return &storage.MockQuerier{SelectMockFunction: func(_ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
			var out []storage.Series
			for _, s := range m {
				if matches(s.lset, ms) {
					var in []chunks.Sample
					for _, x := range s.samples {
						if x.T() >= mint && x.T() <= maxt {
							in = append(in, x)
						}
					}
					out = append(out, storage.NewListSeries(s.lset, in))
				}
			}
			slices.SortFunc(out, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
			return &seriesSet{series: out, i: -1}
		}}, nil
	})
}

func matches(l labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(l.Get(m.Name)) {
			return false
		}
	}
	return true
}

type seriesSet struct {
	series []storage.Series
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series                { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// store adds one scrape to m at ts, with the target labels Prometheus
// would add.
func store(t *testing.T, m memStore, raw []byte, ts time.Time) int {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	n := 0
	add := func(name string, metric *dto.Metric, v float64, extra ...string) {
		b := labels.NewBuilder(labels.EmptyLabels())
		b.Set(model.MetricNameLabel, name)
		for _, l := range metric.GetLabel() {
			b.Set(l.GetName(), l.GetValue())
		}
		b.Set("node", node)
		b.Set("instance", "192.0.2.10:9847")
		b.Set("job", "weir")
		for i := 0; i+1 < len(extra); i += 2 {
			b.Set(extra[i], extra[i+1])
		}
		lset := b.Labels()
		key := lset.String()
		s := m[key]
		if s == nil {
			s = &memSeries{lset: lset}
			m[key] = s
		}
		s.samples = append(s.samples, fsample{t: ts.UnixMilli(), f: v})
		n++
	}
	for name, f := range fams {
		for _, metric := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(name, metric, metric.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, metric, metric.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, metric, metric.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := metric.GetHistogram()
				for _, b := range h.GetBucket() {
					add(name+"_bucket", metric, float64(b.GetCumulativeCount()), "le", model.FloatString(b.GetUpperBound()).String())
				}
				add(name+"_bucket", metric, float64(h.GetSampleCount()), "le", "+Inf")
				add(name+"_sum", metric, h.GetSampleSum())
				add(name+"_count", metric, float64(h.GetSampleCount()))
			case dto.MetricType_SUMMARY:
				sm := metric.GetSummary()
				add(name+"_sum", metric, sm.GetSampleSum())
				add(name+"_count", metric, float64(sm.GetSampleCount()))
			}
		}
	}
	return n
}

func TestDashboardQueriesReturnDataForRealTraffic(t *testing.T) {
	harness.RequireRoot(t)
	bins := harness.FindBinaries(t, []string{"weir-daemon"}, []string{"bridge", "host-local", "weir"})
	// An OAP nobody listens on: the exporter and its metrics run, nothing
	// is delivered.
	daemon := harness.StartDaemon(t, bins, harness.DaemonOptions{NodeName: node, ExtraArgs: []string{
		"--oap", "127.0.0.1:1", "--oap-insecure", "--cri-socket", "",
	}})
	chain := harness.NewNetwork(t, bins, harness.NetworkOptions{
		Weir: &harness.WeirConf{DaemonSocket: daemon.Socket, SpoolDir: daemon.SpoolDir, Timeout: "2s"},
	})
	web := chain.AddPod(t, harness.PodSpec{Namespace: "shop", Name: "web"})
	api := chain.AddPod(t, harness.PodSpec{Namespace: "data", Name: "api"})
	apiAddr := netip.AddrPortFrom(api.IPv4(), apiPort)
	peers.Start(t, api, "api http-server", "http-server", "-listen", apiAddr.String(), "-name", "api")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	st := memStore{}
	t0 := time.Unix(1_800_000_000, 0)

	// Requests of every class the dashboard splits, over new connections
	// and one keep-alive connection. A series needs two samples for a
	// rate, so the same mix runs before each of the two scrapes.
	var paths []string
	for i := range 30 {
		paths = append(paths, fmt.Sprintf("/dash/%d/status/%d", i, []int{200, 200, 404, 503, 201}[i%5]))
	}
	requests := 0.0
	scrape := func() []byte {
		t.Helper()
		for _, newConn := range []bool{true, false} {
			args := []string{"http-client", "-url", "http://" + apiAddr.String(), "-n", fmt.Sprint(len(paths)),
				"-paths", strings.Join(paths, ","), "-timeout", "20s"}
			if newConn {
				args = append(args, "-new-conn")
			}
			var rep peers.HTTPClientReport
			if err := peers.RunJSON(ctx, web, &rep, args...); err != nil {
				t.Fatalf("http-client: %v", err)
			}
			requests += float64(len(paths))
		}
		// Each request counts once at the client pod and once at the
		// server pod.
		var raw []byte
		err := harness.Poll(ctx, 200*time.Millisecond, func() (bool, error) {
			var err error
			if raw, err = daemon.Get(ctx, "/metrics"); err != nil {
				return false, err
			}
			return countRequests(raw) >= 2*requests, nil
		})
		if err != nil {
			t.Fatalf("the daemon did not count %v requests per side: %v", requests, err)
		}
		return raw
	}
	before := scrape()
	after := scrape()
	// The scrape of a daemon that has seen traffic passes Prometheus'
	// own lint (units, _total on counters, help text, snake_case...).
	problems, err := promlint.New(bytes.NewReader(after)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	n0 := store(t, st, before, t0)
	n1 := store(t, st, after, t0.Add(scrapeGap))
	t.Logf("stored %d and %d samples", n0, n1)

	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: 30 * time.Second, LookbackDelta: 5 * time.Minute})
	at := t0.Add(scrapeGap)
	qs := queries(t)
	names := make([]string, 0, len(qs))
	for k := range qs {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, where := range names {
		expr := macros.Replace(qs[where])
		q, err := engine.NewInstantQuery(ctx, st.queryable(), nil, expr, at)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		res := q.Exec(ctx)
		if res.Err != nil {
			t.Errorf("%s: %v", where, res.Err)
			q.Close()
			continue
		}
		vec, err := res.Vector()
		q.Close()
		if err != nil {
			t.Errorf("%s: result is not a vector: %v", where, err)
			continue
		}
		if len(vec) == 0 {
			if why, ok := mayBeEmpty[where]; ok {
				t.Logf("%s: empty (%s)", where, why)
				continue
			}
			t.Errorf("%s: no series for real traffic\n  %s", where, qs[where])
			continue
		}
		if why, ok := mayBeEmpty[where]; ok {
			t.Logf("%s: listed as empty (%s) but returned %d series", where, why, len(vec))
		}
		t.Logf("%s: %d series, e.g. %s = %g", where, len(vec), vec[0].Metric, vec[0].F)
		for _, e := range expect[where] {
			found := false
			for _, smp := range vec {
				if !hasLabels(smp.Metric, e.labels) {
					continue
				}
				found = true
				if e.value >= 0 && math.Abs(smp.F-e.value) > 1e-9*math.Max(1, e.value) {
					t.Errorf("%s%v = %g, want %g", where, e.labels, smp.F, e.value)
				}
			}
			if !found {
				t.Errorf("%s: no series with %v", where, e.labels)
			}
		}
	}
}

// countRequests sums weir_pod_http_requests_total over a scrape.
func countRequests(raw []byte) float64 {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return 0
	}
	var v float64
	for _, m := range fams["weir_pod_http_requests_total"].GetMetric() {
		v += m.GetCounter().GetValue()
	}
	return v
}

func hasLabels(l labels.Labels, want map[string]string) bool {
	for k, v := range want {
		if l.Get(k) != v {
			return false
		}
	}
	return true
}
