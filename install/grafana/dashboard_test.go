package grafana

import (
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	dashboardsdk "github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/weirnet/weir/daemon"
	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/daemon/export/skywalking"
	"github.com/weirnet/weir/daemon/identity"
	"github.com/weirnet/weir/daemon/metrics"
	"github.com/weirnet/weir/daemon/monitor"
)

// targetLabels are added by Prometheus or its relabeling, not by Weir: the
// chart's ServiceMonitor/PodMonitor add node; cluster is an external label
// in multi-cluster setups.
var targetLabels = []string{"cluster", "node", "instance", "job"}

// describer is a prometheus.Registerer that records the descriptors of what
// is registered on it: the metric names and labels the daemon exports.
type describer map[string][]string // metric name → variable labels

func (d describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		name, labels, err := parseDesc(desc)
		if err != nil {
			return err
		}
		d[name] = labels
	}
	return nil
}

func (d describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := d.Register(c); err != nil {
			panic(err)
		}
	}
}

func (d describer) Unregister(prometheus.Collector) bool { return false }

// descPattern reads a Desc's name and variable labels from its String, the
// only place client_golang exposes them.
var descPattern = regexp.MustCompile(`^Desc\{fqName: ("(?:[^"\\]|\\.)*"), .*variableLabels: \{([^}]*)\}\}$`)

func parseDesc(d *prometheus.Desc) (string, []string, error) {
	if err := d.Err(); err != nil {
		return "", nil, err
	}
	m := descPattern.FindStringSubmatch(d.String())
	if m == nil {
		return "", nil, &descError{d.String()}
	}
	name, err := strconv.Unquote(m[1])
	if err != nil {
		return "", nil, err
	}
	var ls []string
	if m[2] != "" {
		for l := range strings.SplitSeq(m[2], ",") {
			ls = append(ls, strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"))
		}
	}
	return name, ls, nil
}

type descError struct{ s string }

func (e *descError) Error() string { return "unrecognised descriptor " + e.s }

// exported builds the daemon's components as weir-daemon does (SkyWalking
// export on, capture off so that no kernel is needed: the descriptors are
// the same) and returns every metric the daemon registers.
func exported(t *testing.T) describer {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	cfg := config.Default()
	cfg.Capture.Enabled = false
	agg, err := metrics.New(metrics.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	exp, err := skywalking.New(skywalking.Config{OAP: "127.0.0.1:11800", Insecure: true, NodeName: "n"}, log)
	if err != nil {
		t.Fatal(err)
	}
	names, err := identity.New(identity.Options{NodeName: "n", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	mon, err := monitor.New(monitor.Options{Config: cfg, Logger: log, Consumers: nil, Services: names})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mon.Close() })
	d := describer{}
	if err := daemon.RegisterMetrics(d, nil, []daemon.Component{names, mon, agg, exp}); err != nil {
		t.Fatal(err)
	}
	return d
}

// The describer must see what the daemon registers, or every check below
// passes vacuously.
func TestDescriptorsNameTheDaemonsMetrics(t *testing.T) {
	d := exported(t)
	for _, name := range []string{"weir_enrolled_pods", "weir_hook_tier", "weir_pod_http_requests_total",
		"weir_pair_http_requests_total", "weir_skywalking_queue_entries", "weir_capture_drops_total", "go_goroutines"} {
		if _, ok := d[name]; !ok {
			t.Errorf("%s is not among the %d described metrics", name, len(d))
		}
	}
	if got := d["weir_pod_http_requests_total"]; !slices.Equal(got, []string{"namespace", "pod", "service", "role", "method", "status_class"}) {
		t.Errorf("weir_pod_http_requests_total labels %v", got)
	}
}

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func load(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile("weir.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("weir.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("weir.json has no title, uid or panels")
	}
	return d
}

// expressions yields every PromQL expression of the dashboard, named by
// where it is: panel targets and the variables' label_values queries.
func expressions(t *testing.T, d dashboard) map[string]string {
	t.Helper()
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
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		mm := labelValues.FindStringSubmatch(q)
		if mm == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q)
			continue
		}
		// The label must be one the selector's metric has: check it as a
		// matcher on the selector.
		sel := mm[1]
		matcher := mm[2] + `=~".*"`
		if strings.HasSuffix(sel, "}") {
			sel = strings.TrimSuffix(sel, "}") + ", " + matcher + "}"
		} else {
			sel += "{" + matcher + "}"
		}
		out["variable "+v.Name] = sel
	}
	return out
}

// Grafana's variables and macros, replaced by values PromQL accepts.
var macros = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
	"$cluster", ".*", "$node", ".*", "$namespace", ".*", "$service", ".*")

func TestDashboardVariables(t *testing.T) {
	d := load(t)
	var names []string
	for _, v := range d.Templating.List {
		names = append(names, v.Name)
	}
	for _, want := range []string{"datasource", "cluster", "node", "namespace", "service"} {
		if !slices.Contains(names, want) {
			t.Errorf("dashboard has no %q variable (has %v)", want, names)
		}
	}
}

func TestDashboardPanelsUseTheDatasourceVariable(t *testing.T) {
	d := load(t)
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "${datasource}") {
				t.Errorf("panel %q does not use ${datasource}: imported or provisioned, it would have no data", p.Title)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
}

// Every expression parses as PromQL, and every metric and label matcher
// it uses is one the daemon exports.
func TestDashboardQueriesUseExportedMetrics(t *testing.T) {
	d := load(t)
	exp := exported(t)
	used := map[string]bool{}
	p := parser.NewParser(parser.Options{})
	for where, expr := range expressions(t, d) {
		if expr == "" {
			t.Errorf("%s: empty expression", where)
			continue
		}
		e, err := p.ParseExpr(macros.Replace(expr))
		if err != nil {
			t.Errorf("%s: %v\n  %s", where, err, expr)
			continue
		}
		for _, vs := range parser.ExtractSelectors(e) {
			var name string
			for _, m := range vs {
				if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
			base, ok := exportedName(exp, name)
			if !ok {
				t.Errorf("%s: metric %q is not exported by weir-daemon", where, name)
				continue
			}
			used[base] = true
			for _, m := range vs {
				if m.Name == model.MetricNameLabel || slices.Contains(targetLabels, m.Name) {
					continue
				}
				if m.Name == "le" && base != name {
					continue
				}
				if !slices.Contains(exp[base], m.Name) {
					t.Errorf("%s: %s has no label %q (labels %v)", where, name, m.Name, exp[base])
				}
			}
		}
	}
	t.Logf("dashboard uses %d of the %d metrics the daemon describes", len(used), len(exp))
}

// exportedName maps a series name to the metric that exports it: itself,
// or a histogram's _bucket, _sum and _count series. Descriptors carry no
// type, so the suffixes are accepted on any described metric; the lint of
// the daemon's /metrics (tests/export) is where types are checked.
func exportedName(exp describer, name string) (string, bool) {
	if _, ok := exp[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if _, ok := exp[base]; ok {
				return base, true
			}
		}
	}
	return "", false
}

// The check above must catch a metric the daemon does not export.
func TestUnknownMetricIsCaught(t *testing.T) {
	exp := exported(t)
	for _, name := range []string{"weir_pod_http_requests", "weir_no_such_metric_total", "weir_pod_http_request_duration_bucket"} {
		if _, ok := exportedName(exp, name); ok {
			t.Errorf("%s accepted", name)
		}
	}
	if _, ok := exportedName(exp, "weir_pod_http_request_duration_seconds_bucket"); !ok {
		t.Error("a histogram's _bucket series is refused")
	}
}

// The dashboard decodes strictly with Grafana's own dashboard schema (the
// foundation SDK, generated from Grafana's schemas, with the panel plugins'
// option types registered): a misspelt or misplaced field fails, as it
// would be silently ignored by Grafana on import.
func TestDashboardMatchesGrafanaSchema(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	data, err := os.ReadFile("weir.json")
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 weir.json is a classic (v1) dashboard, the format Grafana imports from a file; v1 is its schema
	var d dashboardsdk.Dashboard
	if err := d.UnmarshalJSONStrict(data); !noErrors(err) {
		t.Fatalf("weir.json does not match Grafana's dashboard schema: %v", err)
	}
	if err := d.Validate(); !noErrors(err) {
		t.Errorf("weir.json: %v", err)
	}
}

// noErrors reports whether err is nil, or the SDK's empty error list: its
// generated code returns a nil cog.BuildErrors as a non-nil error.
func noErrors(err error) bool {
	var be cog.BuildErrors
	if errors.As(err, &be) {
		return len(be) == 0
	}
	return err == nil
}
