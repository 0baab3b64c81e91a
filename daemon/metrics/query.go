package metrics

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/weirnet/weir/daemon/api/wire"
)

// ErrUnknownService is returned for a service the aggregator has no data
// for.
var ErrUnknownService = errors.New("unknown service")

// MaxSeriesPoints bounds the points of one series query.
const MaxSeriesPoints = 1000

// checkWindow validates a query window; 0 means the default.
func (a *Aggregator) checkWindow(w time.Duration) (time.Duration, error) {
	if w == 0 {
		return a.opts.DefaultWindow, nil
	}
	if w < 0 || w > a.opts.Retention {
		return 0, fmt.Errorf("window %s must be in (0, %s] (the retention)", w, a.opts.Retention)
	}
	return w, nil
}

// epochs returns the slots [from, to] a window covers: the current step
// and the ones before it, ceil(window/Step) in all.
func (a *Aggregator) epochs(w time.Duration) (from, to int64) {
	to = a.epoch()
	n := int64((w + a.opts.Step - 1) / a.opts.Step)
	return to - n + 1, to
}

type httpAgg struct {
	requests, errors, latSum, latN uint64
	hist                           histAcc
}

func (h *httpAgg) addSlot(s *httpSlot) {
	if s == nil {
		return
	}
	h.requests += s.requests
	h.errors += s.errors
	h.latSum += s.latSum
	h.latN += s.latN
	h.hist.merge(&s.lat)
}

func (h *httpAgg) addRing(r httpRing, from, to int64) {
	for e := from; e <= to; e++ {
		h.addSlot(r.get(e))
	}
}

func ms(ns uint64) float64 { return float64(ns) / 1e6 }

func (h *httpAgg) latency() wire.Latency {
	l := wire.Latency{P50: ms(h.hist.quantile(0.50)), P90: ms(h.hist.quantile(0.90)), P99: ms(h.hist.quantile(0.99))}
	if h.latN > 0 {
		l.Avg = float64(h.latSum) / float64(h.latN) / 1e6
	}
	return l
}

func successRate(requests, errors uint64) float64 {
	if requests == 0 {
		return 1
	}
	return float64(requests-errors) / float64(requests)
}

// rateSpan is the time a window's rates are computed over: the window, or
// less when the aggregator has existed for less (at least one step), so a
// daemon started 40 s ago does not report a fifth of its real rate in a
// five-minute window.
func (a *Aggregator) rateSpan(w time.Duration) time.Duration {
	if life := a.opts.Now().Sub(a.started); life < w {
		return max(life, a.opts.Step)
	}
	return w
}

func (h *httpAgg) view(w time.Duration) wire.HTTP {
	return wire.HTTP{
		Requests: h.requests, Errors: h.errors, RPM: float64(h.requests) / w.Minutes(),
		SuccessRate: successRate(h.requests, h.errors), LatencyMs: h.latency(),
	}
}

type tcpAgg tcpSlot

func (t *tcpAgg) addSlot(s *tcpSlot) {
	if s == nil {
		return
	}
	t.connects += s.connects
	t.accepts += s.accepts
	t.closes += s.closes
	t.bytesSent += s.bytesSent
	t.bytesRecv += s.bytesRecv
	t.retransmits += s.retransmits
	t.drops += s.drops
	t.rttSum += s.rttSum
	t.rttN += s.rttN
}

func (t *tcpAgg) addRing(r tcpRing, from, to int64) {
	for e := from; e <= to; e++ {
		t.addSlot(r.get(e))
	}
}

func (t *tcpAgg) view() wire.TCP {
	v := wire.TCP{
		Connects: t.connects, Accepts: t.accepts, Closes: t.closes, BytesSent: t.bytesSent, BytesRecv: t.bytesRecv,
		Retransmits: t.retransmits, Drops: t.drops,
	}
	if t.rttN > 0 {
		v.RTTMs = float64(t.rttSum) / float64(t.rttN) / 1e6
	}
	return v
}

// Services returns every service active in the window, by name.
func (a *Aggregator) Services(w time.Duration) ([]wire.Service, error) {
	w, err := a.checkWindow(w)
	if err != nil {
		return nil, err
	}
	from, to := a.epochs(w)
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]wire.Service, 0, len(a.services))
	for _, s := range a.services {
		if s.last < from {
			continue
		}
		var h httpAgg
		var t tcpAgg
		h.addRing(s.http, from, to)
		t.addRing(s.tcp, from, to)
		pods := 0
		for p := range s.pods {
			if p.last >= from {
				pods++
			}
		}
		out = append(out, wire.Service{
			Name: s.name, Service: s.key.service, Namespace: s.key.namespace, Pods: pods, KubernetesService: s.selected,
			HTTP: h.view(a.rateSpan(w)), TCP: t.view(),
		})
	}
	slices.SortFunc(out, func(x, y wire.Service) int { return cmp.Compare(x.Name, y.Name) })
	return out, nil
}

// ErrorSuccessRate is the success rate below which an edge is an error
// edge.
const ErrorSuccessRate = 0.95

// Topology returns the services and client→server edges active in the
// window; external peers are nodes named by IP.
func (a *Aggregator) Topology(w time.Duration) (wire.Topology, error) {
	w, err := a.checkWindow(w)
	if err != nil {
		return wire.Topology{}, err
	}
	from, to := a.epochs(w)
	a.mu.Lock()
	defer a.mu.Unlock()
	nodes := map[string]wire.Node{}
	addNode := func(n nodeKey) string {
		id := n.id()
		if _, ok := nodes[id]; !ok {
			if n.svc != nil {
				nodes[id] = wire.Node{ID: id, Kind: wire.KindService, Namespace: n.svc.key.namespace}
			} else {
				nodes[id] = wire.Node{ID: id, Kind: wire.KindExternal}
			}
		}
		return id
	}
	for _, s := range a.services {
		if s.last >= from {
			addNode(nodeKey{svc: s})
		}
	}
	topo := wire.Topology{Nodes: []wire.Node{}, Edges: []wire.Edge{}}
	for _, ed := range a.edges {
		if ed.last < from {
			continue
		}
		var h httpAgg
		var t tcpAgg
		h.addRing(ed.hring, from, to)
		t.addRing(ed.tring, from, to)
		proto := "TCP"
		if ed.proto != "" {
			proto = string(ed.proto)
		}
		hv, tv := h.view(a.rateSpan(w)), t.view()
		topo.Edges = append(topo.Edges, wire.Edge{
			Source: addNode(ed.key.client), Target: addNode(ed.key.server), Protocol: proto,
			HTTP: hv, TCP: tv,
			Error: hv.SuccessRate < ErrorSuccessRate || tv.Drops > 0 || tv.Retransmits > 0,
		})
	}
	for _, n := range nodes {
		topo.Nodes = append(topo.Nodes, n)
	}
	slices.SortFunc(topo.Nodes, func(x, y wire.Node) int { return cmp.Compare(x.ID, y.ID) })
	slices.SortFunc(topo.Edges, func(x, y wire.Edge) int {
		return cmp.Or(cmp.Compare(x.Source, y.Source), cmp.Compare(x.Target, y.Target))
	})
	return topo, nil
}

func (a *Aggregator) serviceByName(name string) (*serviceState, error) {
	for _, s := range a.services {
		if s.name == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownService, name)
}

// Endpoints returns the endpoints of service name ("<service>.<namespace>")
// active in the window, busiest first.
func (a *Aggregator) Endpoints(name string, w time.Duration) ([]wire.Endpoint, error) {
	w, err := a.checkWindow(w)
	if err != nil {
		return nil, err
	}
	from, to := a.epochs(w)
	a.mu.Lock()
	defer a.mu.Unlock()
	s, err := a.serviceByName(name)
	if err != nil {
		return nil, err
	}
	out := make([]wire.Endpoint, 0, len(s.endpoints)+1)
	add := func(ep *endpointState) {
		if ep == nil || ep.last < from {
			return
		}
		var h httpAgg
		h.addRing(ep.ring, from, to)
		if h.requests == 0 {
			return
		}
		v := wire.Endpoint{
			Endpoint: ep.name, Requests: h.requests, Errors: h.errors, RPM: float64(h.requests) / a.rateSpan(w).Minutes(),
			SuccessRate: successRate(h.requests, h.errors), LatencyMs: h.latency(),
		}
		if ep != s.other {
			v.Method, v.Path = methodNames[ep.key.method], ep.key.path
		}
		out = append(out, v)
	}
	for _, ep := range s.endpoints {
		add(ep)
	}
	add(s.other)
	slices.SortFunc(out, func(x, y wire.Endpoint) int {
		return cmp.Or(cmp.Compare(y.Requests, x.Requests), cmp.Compare(x.Endpoint, y.Endpoint))
	})
	return out, nil
}

// Series returns service name's metrics per step over the window. Step 0
// picks the smallest multiple of Options.Step giving at most 60 points;
// otherwise step must be a multiple of Options.Step.
func (a *Aggregator) Series(name string, w, step time.Duration) (wire.Series, error) {
	w, err := a.checkWindow(w)
	if err != nil {
		return wire.Series{}, err
	}
	base := a.opts.Step
	if step == 0 {
		k := (w + 60*base - 1) / (60 * base)
		step = max(k, 1) * base
	}
	if step < base || step%base != 0 {
		return wire.Series{}, fmt.Errorf("step %s must be a positive multiple of %s", step, base)
	}
	n := int((w + step - 1) / step)
	if n > MaxSeriesPoints {
		return wire.Series{}, fmt.Errorf("window %s / step %s = %d points, over the limit %d", w, step, n, MaxSeriesPoints)
	}
	k := int64(step / base)
	to := a.epoch()
	first := (to/k)*k - int64(n-1)*k // first slot of the first point
	oldest := to - int64(a.slots) + 1

	a.mu.Lock()
	defer a.mu.Unlock()
	s, err := a.serviceByName(name)
	if err != nil {
		return wire.Series{}, err
	}
	out := wire.Series{Step: formatDuration(step), Points: make([]wire.Point, n)}
	for i := range out.Points {
		start := first + int64(i)*k
		var h httpAgg
		var t tcpAgg
		for e := max(start, oldest); e < start+k && e <= to; e++ {
			h.addSlot(s.http.get(e))
			t.addSlot(s.tcp.get(e))
		}
		out.Points[i] = wire.Point{
			Time:         time.Unix(0, start*int64(base)).UTC(),
			HTTPRequests: h.requests, HTTPErrors: h.errors,
			P99Ms: ms(h.hist.quantile(0.99)), AvgMs: h.latency().Avg,
			BytesSent: t.bytesSent, BytesRecv: t.bytesRecv, Retransmits: t.retransmits, Drops: t.drops,
			Connects: t.connects,
		}
	}
	return out, nil
}

// formatDuration writes d without zero units: "1m", "1h30m", "10s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if len(s) > 2 && s[len(s)-2:] == "0s" && (s[len(s)-3] == 'm' || s[len(s)-3] == 'h') {
		s = s[:len(s)-2]
	}
	if len(s) > 2 && s[len(s)-2:] == "0m" && s[len(s)-3] == 'h' {
		s = s[:len(s)-2]
	}
	return s
}
