package skywalking

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons an entry was not queued (filtered) or was lost after being offered
// (dropped).
const (
	filterNamespace     = iota // local pod in an excluded namespace
	filterUnknownRole          // connection role unknown (first seen through data)
	filterInvalid              // nil op, exchange, connection or record
	filterNothingToSend        // exchange that is no protocol log and has no kernel operations
	numFilters
)

var filterNames = [numFilters]string{"excluded_namespace", "unknown_role", "invalid", "nothing_to_send"}

const (
	dropQueueFull      = iota // evicted as oldest, or arrived when only in-flight entries were left
	dropTooLarge              // one entry larger than QueueBytes
	dropShutdown              // still queued when Run stopped
	dropPartialSend           // not written: its stream failed after earlier messages were (at most once)
	dropUnacknowledged        // written to a stream that failed before the acknowledgement
	numDrops
)

var dropNames = [numDrops]string{"queue_full", "too_large", "shutdown", "partial_send", "unacknowledged"}

var skipNames = []string{"no_response", "unknown_method", "no_record"}

// stats are the exporter's counters, updated lock-free on the hot path and
// read at scrape time.
type stats struct {
	received       atomic.Uint64 // Consumer calls
	enqueued       atomic.Uint64
	filters        [numFilters]atomic.Uint64
	drops          [numDrops]atomic.Uint64
	sent           atomic.Uint64 // entries acknowledged by the OAP
	messages       atomic.Uint64 // messages in acknowledged streams
	streams        atomic.Uint64 // acknowledged streams
	streamErrors   atomic.Uint64
	reconnects     atomic.Uint64 // attempts after a failed one
	skips          [3]atomic.Uint64
	templateErrors atomic.Uint64
	// identityTimeouts counts starts that sent before identities synced.
	identityTimeouts atomic.Uint64
}

func (s *stats) filtered(r int)           { s.filters[r].Add(1) }
func (s *stats) dropped(r int, n uint64)  { s.drops[r].Add(n) }
func (s *stats) protocolSkipped(r string) { s.skips[indexOf(skipNames, r)].Add(1) }

func indexOf(names []string, s string) int {
	for i, n := range names {
		if n == s {
			return i
		}
	}
	panic("skywalking: unknown counter label " + s)
}

// Stats is a snapshot of the exporter's counters.
type Stats struct {
	Received, Enqueued, Sent, Messages, Streams uint64
	StreamErrors, Reconnects, TemplateErrors    uint64
	Filtered, Dropped, ProtocolSkipped          map[string]uint64
	QueueEntries                                int
	QueueBytes                                  int64
}

// Stats returns the current counters. Every entry offered is accounted
// for: Received = Filtered + Dropped + Sent + QueueEntries (queued or in
// flight).
func (e *Exporter) Stats() Stats {
	s := &e.stats
	out := Stats{
		Received: s.received.Load(), Enqueued: s.enqueued.Load(), Sent: s.sent.Load(),
		Messages: s.messages.Load(), Streams: s.streams.Load(), StreamErrors: s.streamErrors.Load(),
		Reconnects: s.reconnects.Load(), TemplateErrors: s.templateErrors.Load(),
		Filtered: map[string]uint64{}, Dropped: map[string]uint64{}, ProtocolSkipped: map[string]uint64{},
	}
	for i, n := range filterNames {
		out.Filtered[n] = s.filters[i].Load()
	}
	for i, n := range dropNames {
		out.Dropped[n] = s.drops[i].Load()
	}
	for i, n := range skipNames {
		out.ProtocolSkipped[n] = s.skips[i].Load()
	}
	out.QueueEntries, out.QueueBytes = e.q.depth()
	return out
}

type metricDescs struct {
	received, filtered, dropped, sent, messages, streams, streamErrors, reconnects *prometheus.Desc
	skipped, templateErrors, queueEntries, queueBytes, queueMaxEntries, queueMax   *prometheus.Desc
	conntrackLookups, conntrackEvicted, identityHeld, identityTimeouts             *prometheus.Desc
}

func newMetricDescs() metricDescs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("weir_skywalking_"+name, help, labels, nil)
	}
	return metricDescs{
		received:        d("entries_received_total", "Kernel operations and HTTP exchanges offered to the SkyWalking exporter."),
		filtered:        d("entries_filtered_total", "Entries not exported by policy or because they cannot be mapped, by reason.", "reason"),
		dropped:         d("entries_dropped_total", "Entries lost before the OAP acknowledged them, by reason.", "reason"),
		sent:            d("entries_sent_total", "Entries acknowledged by the OAP."),
		messages:        d("messages_sent_total", "Access-log messages in streams acknowledged by the OAP."),
		streams:         d("streams_sent_total", "Collect streams (batches) acknowledged by the OAP."),
		streamErrors:    d("stream_errors_total", "Collect streams that failed; their batch is resent only when none of it was written."),
		reconnects:      d("reconnects_total", "Send attempts made after a failed one."),
		skipped:         d("protocol_logs_skipped_total", "HTTP exchanges not sent as protocol logs (their kernel operations still are), by reason.", "reason"),
		templateErrors:  d("service_name_template_errors_total", "Service name template executions that failed (the default name was used)."),
		queueEntries:    d("queue_entries", "Entries queued or in flight."),
		queueBytes:      d("queue_bytes", "Bytes retained by queued and in-flight entries: their encoded kernel and protocol logs plus each entry's own bookkeeping."),
		queueMaxEntries: d("queue_capacity_entries", "Bound of the queue in entries."),
		queueMax:        d("queue_capacity_bytes", "Bound of the queue in bytes (see queue_bytes)."),
		conntrackLookups: d("conntrack_lookups_total", "Client connections' remotes looked up in conntrack, by result "+
			"(missing and failed fall back to the socket's remote, a ClusterIP the OAP cannot map to a pod).", "result"),
		conntrackEvicted: d("conntrack_evicted_total", "Cached conntrack answers dropped at the cache's bound."),
		identityHeld:     d("identity_held", "1 while sending is held back until pod identities (Kubernetes Services) are synced."),
		identityTimeouts: d("identity_wait_expired_total", "Times sending started with pod identities still not synced (IdentityWait passed)."),
	}
}

var _ prometheus.Collector = (*Exporter)(nil)

// RegisterMetrics implements daemon.PrometheusRegistrar, the only way a
// component's collector reaches the daemon's /metrics.
func (e *Exporter) RegisterMetrics(r prometheus.Registerer) error { return r.Register(e) }

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	m := &e.metrics
	for _, d := range []*prometheus.Desc{m.received, m.filtered, m.dropped, m.sent, m.messages, m.streams,
		m.streamErrors, m.reconnects, m.skipped, m.templateErrors, m.queueEntries, m.queueBytes,
		m.queueMaxEntries, m.queueMax, m.conntrackLookups, m.conntrackEvicted, m.identityHeld, m.identityTimeouts} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	m, s := &e.metrics, e.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(m.received, s.Received)
	for _, n := range filterNames {
		counter(m.filtered, s.Filtered[n], n)
	}
	for _, n := range dropNames {
		counter(m.dropped, s.Dropped[n], n)
	}
	for _, n := range skipNames {
		counter(m.skipped, s.ProtocolSkipped[n], n)
	}
	counter(m.sent, s.Sent)
	counter(m.messages, s.Messages)
	counter(m.streams, s.Streams)
	counter(m.streamErrors, s.StreamErrors)
	counter(m.reconnects, s.Reconnects)
	counter(m.templateErrors, s.TemplateErrors)
	gauge(m.queueEntries, float64(s.QueueEntries))
	gauge(m.queueBytes, float64(s.QueueBytes))
	gauge(m.queueMaxEntries, float64(e.cfg.QueueSize))
	gauge(m.queueMax, float64(e.cfg.QueueBytes))
	held := 0.0
	if e.held.Load() {
		held = 1
	}
	gauge(m.identityHeld, held)
	counter(m.identityTimeouts, e.stats.identityTimeouts.Load())
	if ct := e.cfg.Conntrack; ct != nil {
		cs := ct.Stats()
		counter(m.conntrackLookups, cs.Hits, "cached")
		counter(m.conntrackLookups, cs.Translated, "translated")
		counter(m.conntrackLookups, cs.Untranslated, "untranslated")
		counter(m.conntrackLookups, cs.Missing, "missing")
		counter(m.conntrackLookups, cs.Failed, "failed")
		counter(m.conntrackEvicted, cs.Evicted)
	}
}
