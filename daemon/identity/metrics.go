package identity

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exposes the chain's counters as Prometheus self-metrics for the
// daemon to register. Values are read from Stats at scrape time, so lookups
// pay nothing for them.
type Collector struct {
	r *Resolver

	kubeSynced, kubeObjects, kubeEvents, kubeLookups, kubeAnswered, kubeIndexErrors *prometheus.Desc
	criSandboxes, criLookups, criHits, criCalls, criFailures, criGaveUp, criDrops   *prometheus.Desc
	criRetries                                                                      *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a collector over r's configured steps.
func NewCollector(r *Resolver) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("weir_identity_"+name, help, labels, nil)
	}
	return &Collector{
		r:               r,
		kubeSynced:      d("kubernetes_synced", "1 when the Service and EndpointSlice caches have completed their first list."),
		kubeObjects:     d("kubernetes_cached_objects", "Objects in the Kubernetes informer caches, by resource.", "resource"),
		kubeEvents:      d("kubernetes_events_total", "Service and EndpointSlice changes received."),
		kubeLookups:     d("kubernetes_lookups_total", "Service name lookups in the Kubernetes caches."),
		kubeAnswered:    d("kubernetes_answered_total", "Lookups that found a Service targeting the pod."),
		kubeIndexErrors: d("kubernetes_index_errors_total", "Informer index lookups that failed."),
		criSandboxes:    d("cri_cached_sandboxes", "Pod sandboxes in the CRI cache."),
		criLookups:      d("cri_lookups_total", "Lookups (service, labels, container name) in the CRI cache."),
		criHits:         d("cri_hits_total", "Lookups answered from the CRI cache."),
		criCalls:        d("cri_calls_total", "Calls made to the runtime's CRI service."),
		criFailures:     d("cri_call_failures_total", "Failed CRI calls, by reason.", "reason"),
		criGaveUp:       d("cri_gave_up_total", "Sandboxes whose labels could not be read within the attempt limit."),
		criDrops:        d("cri_bounds_hit_total", "CRI cache bounds hit, by kind.", "kind"),
		criRetries:      d("cri_retries_pending", "Sandboxes waiting to retry reading their labels."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	if c.r.kube != nil {
		for _, d := range []*prometheus.Desc{c.kubeSynced, c.kubeObjects, c.kubeEvents, c.kubeLookups, c.kubeAnswered, c.kubeIndexErrors} {
			ch <- d
		}
	}
	if c.r.cri != nil {
		for _, d := range []*prometheus.Desc{c.criSandboxes, c.criLookups, c.criHits, c.criCalls, c.criFailures, c.criGaveUp, c.criDrops, c.criRetries} {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if k := s.Kubernetes; k != nil {
		synced := 0.0
		if k.Synced {
			synced = 1
		}
		gauge(c.kubeSynced, synced)
		gauge(c.kubeObjects, float64(k.Services), "services")
		gauge(c.kubeObjects, float64(k.EndpointSlices), "endpointslices")
		counter(c.kubeEvents, k.Events)
		counter(c.kubeLookups, k.Lookups)
		counter(c.kubeAnswered, k.Answered)
		counter(c.kubeIndexErrors, k.IndexErrors)
	}
	if r := s.CRI; r != nil {
		gauge(c.criSandboxes, float64(r.Sandboxes))
		counter(c.criLookups, r.Lookups)
		counter(c.criHits, r.Hits)
		counter(c.criCalls, r.Fetches)
		counter(c.criFailures, r.NotFound, "not_found")
		counter(c.criFailures, r.Timeouts, "timeout")
		counter(c.criFailures, r.Errors, "error")
		counter(c.criGaveUp, r.GaveUp)
		counter(c.criDrops, r.QueueFull, "queue_full")
		counter(c.criDrops, r.Evictions, "cache_full")
		gauge(c.criRetries, float64(r.RetryPending))
	}
}

// CgroupCollector exposes a CgroupResolver's counters. The metrics keep the
// weir_capture_cgroup_ prefix they had when the resolver lived in package
// capture: dashboards and alerts name them, and the resolver still serves
// the capture path (each connection's container id).
type CgroupCollector struct {
	r                                 *CgroupResolver
	lookups, walks, boundsHit, cached *prometheus.Desc
}

var _ prometheus.Collector = (*CgroupCollector)(nil)

// NewCgroupCollector returns a collector over r.
func NewCgroupCollector(r *CgroupResolver) *CgroupCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("weir_capture_cgroup_"+name, help, labels, nil)
	}
	return &CgroupCollector{
		r:         r,
		lookups:   d("lookups_total", "Cgroup id lookups, by result of the cache.", "result"),
		walks:     d("walks_total", "Walks of the cgroup2 mount."),
		boundsHit: d("bounds_hit_total", "Cgroup resolver bounds hit, by kind.", "kind"),
		cached:    d("cached", "Cgroup ids in the resolver cache."),
	}
}

// Describe implements prometheus.Collector.
func (c *CgroupCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lookups, c.walks, c.boundsHit, c.cached} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *CgroupCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.lookups, s.Hits, "hit")
	counter(c.lookups, s.Lookups-s.Hits, "miss")
	counter(c.walks, s.Walks)
	counter(c.boundsHit, s.WalkLimitHits, "walk_limit")
	counter(c.boundsHit, s.CacheEvictions, "cache_eviction")
	counter(c.boundsHit, s.WalkErrors, "walk_error")
	ch <- prometheus.MustNewConstMetric(c.cached, prometheus.GaugeValue, float64(s.Cached))
}
