package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Label sets.
var (
	podLabels      = []string{"namespace", "pod", "service"}
	pairLabels     = []string{"client_namespace", "client_service", "server_namespace", "server_service"}
	endpointLabels = []string{"namespace", "service", "endpoint"}
)

type tcpDescs struct {
	connects, connectFailures, accepts, closes *prometheus.Desc
	bytes, packets                             [2]*prometheus.Desc // pods: sent, received; pairs: one desc with direction
	retransmits, drops, rtt, connectLat        *prometheus.Desc
}

type httpDescs struct {
	requests, latency, reqSize, respSize *prometheus.Desc
}

type descs struct {
	podTCP, pairTCP   tcpDescs
	podHTTP, pairHTTP httpDescs

	epRequests, epLatency *prometheus.Desc

	overflow, evictions, series, unattributed *prometheus.Desc
}

func newDescs() descs {
	d := func(name, help string, labels []string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append(append([]string(nil), labels...), extra...), nil)
	}
	var ds descs
	p := &ds.podTCP
	p.connects = d("weir_pod_tcp_connects_total", "TCP connections the pod opened (successful connect calls).", podLabels)
	p.connectFailures = d("weir_pod_tcp_connect_failures_total", "Failed connect calls of the pod.", podLabels)
	p.accepts = d("weir_pod_tcp_accepts_total", "TCP connections the pod accepted.", podLabels)
	p.closes = d("weir_pod_tcp_closes_total", "TCP connections the pod closed.", podLabels)
	p.bytes[0] = d("weir_pod_tcp_sent_bytes_total", "Bytes the pod wrote to TCP connections.", podLabels)
	p.bytes[1] = d("weir_pod_tcp_received_bytes_total", "Bytes the pod read from TCP connections.", podLabels)
	p.packets[0] = d("weir_pod_tcp_sent_packets_total", "Packets (skbs) the kernel transmitted for the pod's writes, where measured.", podLabels)
	p.packets[1] = d("weir_pod_tcp_received_packets_total", "Packets (skbs) the pod's reads consumed, where measured.", podLabels)
	p.retransmits = d("weir_pod_tcp_retransmits_total", "TCP segments retransmitted during the pod's writes, where measured.", podLabels)
	p.drops = d("weir_pod_tcp_drops_total", "Packets of the pod's connections the kernel dropped, by skb drop reason, where measured.", podLabels, "reason")
	p.rtt = d("weir_pod_tcp_rtt_seconds", "Smoothed RTT of the pod's TCP connections, read when they close.", podLabels)
	p.connectLat = d("weir_pod_tcp_connect_duration_seconds", "Duration of the pod's successful connect calls.", podLabels)

	q := &ds.pairTCP
	q.connects = d("weir_pair_tcp_connects_total", "TCP connections opened from client to server, counted at the client.", pairLabels)
	q.connectFailures = d("weir_pair_tcp_connect_failures_total", "Failed connect calls from client to server.", pairLabels)
	q.accepts = d("weir_pair_tcp_accepts_total", "TCP connections from an external client accepted by the server.", pairLabels)
	q.closes = d("weir_pair_tcp_closes_total", "TCP connections between client and server closed.", pairLabels)
	q.bytes[0] = d("weir_pair_tcp_bytes_total", "Bytes between client and server, by direction.", pairLabels, "direction")
	q.packets[0] = d("weir_pair_tcp_packets_total", "Packets between client and server, by direction, where measured.", pairLabels, "direction")
	q.retransmits = d("weir_pair_tcp_retransmits_total", "TCP segments retransmitted between client and server, where measured.", pairLabels)
	q.drops = d("weir_pair_tcp_drops_total", "Packets between client and server the kernel dropped, by skb drop reason.", pairLabels, "reason")
	q.rtt = d("weir_pair_tcp_rtt_seconds", "Smoothed RTT of client to server connections, read when they close.", pairLabels)
	q.connectLat = d("weir_pair_tcp_connect_duration_seconds", "Duration of successful connect calls from client to server.", pairLabels)

	ds.podHTTP = httpDescs{
		requests: d("weir_pod_http_requests_total", "HTTP exchanges of the pod, by the pod's role, method class and status class (gRPC status for gRPC).", podLabels, "role", "method", "status_class"),
		latency:  d("weir_pod_http_request_duration_seconds", "HTTP exchange duration, first request byte to last response byte, by the pod's role.", podLabels, "role"),
		reqSize:  d("weir_pod_http_request_size_bytes", "HTTP request size on the wire (headers and body), by the pod's role.", podLabels, "role"),
		respSize: d("weir_pod_http_response_size_bytes", "HTTP response size on the wire (headers and body), by the pod's role.", podLabels, "role"),
	}
	ds.pairHTTP = httpDescs{
		requests: d("weir_pair_http_requests_total", "HTTP exchanges from client to server, by method class and status class (gRPC status for gRPC).", pairLabels, "method", "status_class"),
		latency:  d("weir_pair_http_request_duration_seconds", "HTTP exchange duration from client to server.", pairLabels),
		reqSize:  d("weir_pair_http_request_size_bytes", "HTTP request size on the wire from client to server.", pairLabels),
		respSize: d("weir_pair_http_response_size_bytes", "HTTP response size on the wire from server to client.", pairLabels),
	}
	ds.epRequests = d("weir_endpoint_http_requests_total", "HTTP requests a service answered per endpoint (METHOD:path, bounded; overflow in <other>), by status class.", endpointLabels, "status_class")
	ds.epLatency = d("weir_endpoint_http_request_duration_seconds", "HTTP exchange duration per endpoint, server side.", endpointLabels)
	ds.overflow = d("weir_metrics_cardinality_overflow_total", "Flows not attributed to a series because its kind was at its limit, by kind.", nil, "kind")
	ds.evictions = d("weir_metrics_evictions_total", "Series evicted after a retention without activity, by kind.", nil, "kind")
	ds.series = d("weir_metrics_series", "Series currently aggregated, by kind.", nil, "kind")
	ds.unattributed = d("weir_metrics_unattributed_total", "Flows counted for no pod or no edge, by reason.", nil, "reason")
	return ds
}

func (ds *descs) all() []*prometheus.Desc {
	out := []*prometheus.Desc{ds.epRequests, ds.epLatency, ds.overflow, ds.evictions, ds.series, ds.unattributed}
	for _, t := range []*tcpDescs{&ds.podTCP, &ds.pairTCP} {
		out = append(out, t.connects, t.connectFailures, t.accepts, t.closes, t.bytes[0], t.packets[0],
			t.retransmits, t.drops, t.rtt, t.connectLat)
	}
	out = append(out, ds.podTCP.bytes[1], ds.podTCP.packets[1])
	for _, h := range []*httpDescs{&ds.podHTTP, &ds.pairHTTP} {
		out = append(out, h.requests, h.latency, h.reqSize, h.respSize)
	}
	return out
}

var _ prometheus.Collector = (*Aggregator)(nil)

// Describe implements prometheus.Collector.
func (a *Aggregator) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range a.descs.all() {
		ch <- d
	}
}

// Collect implements prometheus.Collector. Metrics are built under the
// lock and sent after it is released, so a slow scrape does not stall the
// pipeline for longer than the copy.
func (a *Aggregator) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	ms := a.collectLocked()
	a.mu.Unlock()
	for _, m := range ms {
		ch <- m
	}
}

var roleNames = [3]string{"unknown", "client", "server"}

func (a *Aggregator) collectLocked() []prometheus.Metric {
	var out []prometheus.Metric
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...))
	}
	hist := func(d *prometheus.Desc, h *promHist, bounds []uint64, scale float64, labels ...string) {
		buckets := make(map[float64]uint64, len(bounds))
		var cum uint64
		for i, b := range bounds {
			cum += h.counts[i]
			buckets[float64(b)*scale] = cum
		}
		out = append(out, prometheus.MustNewConstHistogram(d, h.n, float64(h.sum)*scale, buckets, labels...))
	}
	tcp := func(ds *tcpDescs, t *tcpTotals, pair bool, labels ...string) {
		labels = labels[:len(labels):len(labels)] // appends below must not share a backing array
		counter(ds.connects, t.connects, labels...)
		counter(ds.connectFailures, t.connectFailures, labels...)
		counter(ds.accepts, t.accepts, labels...)
		counter(ds.closes, t.closes, labels...)
		if pair {
			counter(ds.bytes[0], t.bytesSent, append(labels, "client_to_server")...)
			counter(ds.bytes[0], t.bytesRecv, append(labels, "server_to_client")...)
			counter(ds.packets[0], t.pktsSent, append(labels, "client_to_server")...)
			counter(ds.packets[0], t.pktsRecv, append(labels, "server_to_client")...)
		} else {
			counter(ds.bytes[0], t.bytesSent, labels...)
			counter(ds.bytes[1], t.bytesRecv, labels...)
			counter(ds.packets[0], t.pktsSent, labels...)
			counter(ds.packets[1], t.pktsRecv, labels...)
		}
		counter(ds.retransmits, t.retransmits, labels...)
		for reason, n := range t.drops {
			counter(ds.drops, n, append(labels, reason)...)
		}
		hist(ds.rtt, &t.rtt, rttBounds, 1e-9, labels...)
		hist(ds.connectLat, &t.connectLat, latencyBounds, 1e-9, labels...)
	}
	httpm := func(ds *httpDescs, h *httpTotals, labels ...string) {
		labels = labels[:len(labels):len(labels)]
		for m := range h.requests {
			for s, n := range h.requests[m] {
				if n > 0 {
					counter(ds.requests, n, append(labels, methodNames[m], statusNames[s])...)
				}
			}
		}
		hist(ds.latency, &h.latency, latencyBounds, 1e-9, labels...)
		hist(ds.reqSize, &h.reqSize, sizeBounds, 1, labels...)
		hist(ds.respSize, &h.respSize, sizeBounds, 1, labels...)
	}

	for _, p := range a.pods {
		svc := p.key.service
		if svc == "" {
			svc = p.key.name // the name serviceName reports the pod under
		}
		labels := []string{p.key.namespace, p.key.name, svc}
		tcp(&a.descs.podTCP, &p.tcp, false, labels...)
		for role := range p.http {
			if p.http[role].reqSize.n > 0 { // one observation per exchange
				httpm(&a.descs.podHTTP, &p.http[role], append(labels[:3:3], roleNames[role])...)
			}
		}
	}
	for _, ed := range a.edges {
		labels := append(nodeLabels(ed.key.client), nodeLabels(ed.key.server)...)
		tcp(&a.descs.pairTCP, &ed.tcp, true, labels...)
		if ed.http.reqSize.n > 0 {
			httpm(&a.descs.pairHTTP, &ed.http, labels...)
		}
	}
	for _, s := range a.services {
		for _, ep := range s.endpoints {
			a.collectEndpoint(&out, s, ep, hist)
		}
		if s.other != nil {
			a.collectEndpoint(&out, s, s.other, hist)
		}
	}
	for k := range numKinds {
		counter(a.descs.overflow, a.overflow[k], kindNames[k])
		counter(a.descs.evictions, a.evictions[k], kindNames[k])
	}
	for r := range numUnattr {
		counter(a.descs.unattributed, a.unattributed[r], unattrNames[r])
	}
	gauge := func(v int, kind string) {
		out = append(out, prometheus.MustNewConstMetric(a.descs.series, prometheus.GaugeValue, float64(v), kind))
	}
	gauge(len(a.pods), "pod")
	gauge(len(a.services), "service")
	gauge(len(a.edges), "edge")
	gauge(a.nEndpoints, "endpoint")
	gauge(len(a.conns), "conn_cache")
	return out
}

func (a *Aggregator) collectEndpoint(out *[]prometheus.Metric, s *serviceState, ep *endpointState,
	hist func(*prometheus.Desc, *promHist, []uint64, float64, ...string)) {
	labels := []string{s.key.namespace, s.key.service, ep.name}
	for sc, n := range ep.requests {
		if n > 0 {
			*out = append(*out, prometheus.MustNewConstMetric(a.descs.epRequests, prometheus.CounterValue, float64(n),
				append(labels[:3:3], statusNames[sc])...))
		}
	}
	hist(a.descs.epLatency, &ep.latency, latencyBounds, 1e-9, labels...)
}

// nodeLabels are a pair's namespace and service labels for one side: an
// external peer has an empty namespace and its IP as the service.
func nodeLabels(n nodeKey) []string {
	if n.svc != nil {
		return []string{n.svc.key.namespace, n.svc.key.service}
	}
	return []string{"", n.ip.String()}
}

// RegisterMetrics adds the aggregator's collector to the daemon's registry
// (daemon.PrometheusRegistrar).
func (a *Aggregator) RegisterMetrics(r prometheus.Registerer) error {
	if err := r.Register(a); err != nil {
		return fmt.Errorf("register aggregation metrics: %w", err)
	}
	return nil
}
