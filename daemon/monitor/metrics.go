package monitor

import (
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/identity"
	aggregate "github.com/weirnet/weir/daemon/metrics"
)

// metrics are the pipeline's own counters and the Prometheus view of the
// collector, the parsers and the pipeline. Everything is read at scrape
// time: the event path only increments atomics.
type metrics struct {
	m *Monitor

	ops             [flow.OpRead + 1]atomic.Uint64 // by flow.OpKind
	exchanges       atomic.Uint64
	exchangesForced atomic.Uint64
	opsIncomplete   atomic.Uint64
	ioUnclaimed     [numIOReasons]atomic.Uint64

	bpfLost, bpfPartial, bpfRecords, bpfDrains, bpfParks, bpfDecodeErrors, bpfScanDropped, hookTier, captureEnabled *prometheus.Desc
	bpfHintFailures                                                                                                 *prometheus.Desc
	ringUsed, ringSize                                                                                              *prometheus.Desc
	protoRecords, protoIncomplete, protoLimits, protoErrors, protoResyncs                                           *prometheus.Desc
	protoDiscarded, protoUnsynced, protoHints                                                                       *prometheus.Desc
	opsDesc, exch, exchForced, reqKept, reqOverwritten, enrollErrors, dumpSkipped                                   *prometheus.Desc
	dumpErrors, monitoredPods, opsIncompleteDesc, ioUnclaimedDesc                                                   *prometheus.Desc
}

func newMetrics(m *Monitor) *metrics {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("weir_"+name, help, labels, nil)
	}
	return &metrics{
		m: m,
		bpfLost: d("bpf_events_lost_total", "What the eBPF side could not report at all, by reason: ring buffer records, "+
			"syscalls, operations of connections or processes it could not track, bytes not counted, unlinked TLS plaintext.", "reason"),
		bpfPartial: d("bpf_events_partial_total", "Events the eBPF side delivered in part, by reason: payload sent size-only "+
			"past a bound (the event's skip reason says why), or a kernel metric or drop attribution missing (marked unmeasured).", "reason"),
		bpfRecords: d("bpf_records_total", "Ring buffer records read."),
		bpfDrains: d("bpf_ring_drains_total", "Times the reader read the ring buffer until it was empty: "+
			"bpf_records_total over this is the mean burst of records per wakeup (bpf.pollInterval)."),
		bpfParks: d("bpf_ring_parks_total", "Times the reader found the ring buffer empty for a whole poll interval "+
			"and waited for the kernel's wakeup on the next record instead of its timer (an idle node's reader)."),
		ringUsed:        d("bpf_ring_buffer_used_bytes", "Bytes waiting in the eBPF ring buffer to be read."),
		ringSize:        d("bpf_ring_buffer_size_bytes", "Size of the eBPF ring buffer."),
		bpfDecodeErrors: d("bpf_decode_errors_total", "Ring buffer records that were malformed or of unknown type."),
		bpfScanDropped:  d("bpf_scan_dropped_total", "Processes found by the enrollment scan that did not fit the queue."),
		bpfHintFailures: d("bpf_hint_failures_total", "HTTP/1 hints (HintHTTP1, SkipBody) user space could not give the kernel."),
		hookTier:        d("hook_tier", "eBPF hook tiers in use, 1 for each active one: the capture tier (socket or syscall) and the richest per-function tier (base, fentry or kprobe).", "tier"),
		captureEnabled:  d("capture_enabled", "1 when eBPF capture runs, 0 when the daemon only enrolls pods."),
		protoRecords:    d("protocol_records_total", "HTTP exchanges parsed."),
		protoIncomplete: d("protocol_incomplete_records_total", "HTTP exchanges parsed with a part lost."),
		protoLimits:     d("protocol_limit_hits_total", "Parser bounds hit, by limit.", "limit"),
		protoErrors:     d("protocol_errors_total", "Parser errors and losses of sync, by kind.", "kind"),
		protoResyncs:    d("protocol_resyncs_total", "Parser directions re-synchronised, by protocol.", "protocol"),
		protoDiscarded: d("protocol_discarded_total",
			"What the parsers refused to report because it could be wrong, by reason.", "reason"),
		protoUnsynced: d("protocol_unsynced_bytes_total",
			"Bytes a parser ignored while looking for a provable message start, by protocol.", "protocol"),
		protoHints: d("protocol_capture_hints_total",
			"HTTP/1 hints handed to the capture layer (connection is HTTP/1, body range to send size-only), by result.", "result"),
		opsDesc:           d("pipeline_kernel_ops_total", "Kernel operations handed to consumers, by kind.", "kind"),
		exch:              d("pipeline_exchanges_total", "HTTP exchanges handed to consumers."),
		exchForced:        d("pipeline_exchanges_forced_total", "Exchanges delivered before their operations completed (per-connection bound)."),
		reqKept:           d("requests_kept", "HTTP exchanges held for /api/v1/requests."),
		reqOverwritten:    d("requests_overwritten_total", "HTTP exchanges pushed out of the requests ring by newer ones."),
		enrollErrors:      d("monitor_enroll_errors_total", "Network namespaces that could not be (un)enrolled with the eBPF collector."),
		dumpSkipped:       d("dump_skipped_connections_total", "Connections not dumped because the dump was at its bound."),
		dumpErrors:        d("dump_errors_total", "Stream dump file failures."),
		monitoredPods:     d("monitor_pods", "Pods whose identities the pipeline knows."),
		opsIncompleteDesc: d("pipeline_ops_incomplete_total", "Reads and writes completed without their syscall's last event (events lost on the way)."),
		ioUnclaimedDesc:   d("pipeline_io_unclaimed_total", "Reads and writes handed to once-only consumers (the SkyWalking exporter) on their own rather than in an exchange, by reason.", "reason"),
	}
}

// RegisterMetrics implements daemon.PrometheusRegistrar.
func (m *Monitor) RegisterMetrics(r prometheus.Registerer) error {
	if err := r.Register(aggregate.NewCaptureCollector(m.table)); err != nil {
		return fmt.Errorf("monitor: register capture metrics: %w", err)
	}
	if m.cgroups != nil {
		if err := r.Register(identity.NewCgroupCollector(m.cgroups)); err != nil {
			return fmt.Errorf("monitor: register cgroup metrics: %w", err)
		}
	}
	if err := r.Register(m.metrics); err != nil {
		return fmt.Errorf("monitor: register pipeline metrics: %w", err)
	}
	if m.tls != nil {
		// TLS library files found for enrolled pods: probed, or not (a
		// library without the functions, an attach failure), per
		// /api/v1/features, field tls.
		for _, state := range []string{"probed", "unprobed"} {
			g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "weir_tls_libraries",
				Help:        "TLS library files found for enrolled pods, by state: probed (uprobes attached) or unprobed (see /api/v1/features).",
				ConstLabels: prometheus.Labels{"state": state},
			}, func() float64 {
				st := m.tls.status()
				if state == "probed" {
					return float64(len(st.Libraries))
				}
				return float64(len(st.Unprobed))
			})
			if err := r.Register(g); err != nil {
				return fmt.Errorf("monitor: register TLS metrics: %w", err)
			}
		}
		late := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weir_tls_late_probes_total",
			Help: "TLS library files first probed when a process of an enrolled pod executed from a root not seen at enrollment: calls made before were not seen.",
		}, func() float64 { return float64(m.tls.late.Load()) })
		if err := r.Register(late); err != nil {
			return fmt.Errorf("monitor: register TLS metrics: %w", err)
		}
		unlisted := prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "weir_tls_unprobed_unlisted_total",
			Help: "Files that could not be probed but were not listed in /api/v1/features: the list was full (1024 entries).",
		}, func() float64 { return float64(m.tls.unprobedOverflow.Load()) })
		if err := r.Register(unlisted); err != nil {
			return fmt.Errorf("monitor: register TLS metrics: %w", err)
		}
	}
	return nil
}

// Describe implements prometheus.Collector.
func (x *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{x.bpfLost, x.bpfPartial, x.bpfRecords, x.bpfDrains, x.bpfParks, x.bpfDecodeErrors, x.bpfScanDropped, x.bpfHintFailures, x.hookTier, x.ringUsed, x.ringSize,
		x.captureEnabled, x.protoRecords, x.protoIncomplete, x.protoLimits, x.protoErrors, x.protoResyncs,
		x.protoDiscarded, x.protoUnsynced, x.protoHints, x.opsDesc,
		x.exch, x.exchForced, x.reqKept, x.reqOverwritten, x.enrollErrors, x.dumpSkipped, x.dumpErrors, x.monitoredPods, x.opsIncompleteDesc, x.ioUnclaimedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (x *metrics) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	m := x.m
	if m.coll != nil {
		gauge(x.captureEnabled, 1)
		f := m.coll.Features()
		for _, t := range []bpf.Tier{bpf.TierBase, bpf.TierFentry, bpf.TierKprobe} {
			v := 0.0
			if t == f.Tier {
				v = 1
			}
			gauge(x.hookTier, v, t.String())
		}
		for _, t := range []bpf.CaptureTier{bpf.CaptureSocket, bpf.CaptureSyscall} {
			v := 0.0
			if t == f.Capture {
				v = 1
			}
			gauge(x.hookTier, v, t.String())
		}
		if cs, err := m.coll.Counters(); err != nil {
			ch <- prometheus.NewInvalidMetric(x.bpfLost, err)
		} else {
			for reason, v := range cs {
				if bpf.CounterLoses(reason) {
					counter(x.bpfLost, v, reason)
				} else {
					counter(x.bpfPartial, v, reason)
				}
			}
		}
		rs := m.coll.ReaderStats()
		counter(x.bpfRecords, rs.Records)
		counter(x.bpfDrains, rs.Drains)
		counter(x.bpfParks, rs.Parks)
		counter(x.bpfDecodeErrors, rs.DecodeErrors)
		counter(x.bpfScanDropped, rs.ScanDropped)
		counter(x.bpfHintFailures, rs.HintFailures)
		gauge(x.ringUsed, float64(rs.RingBufferUsed))
		gauge(x.ringSize, float64(rs.RingBufferSize))
	} else {
		gauge(x.captureEnabled, 0)
	}
	s := m.pstats
	counter(x.protoRecords, s.Records.Load())
	counter(x.protoIncomplete, s.Incomplete.Load())
	counter(x.protoLimits, s.HeaderLimit.Load(), "header_bytes")
	counter(x.protoLimits, s.StreamLimit.Load(), "streams")
	counter(x.protoLimits, s.PendingLimit.Load(), "pending")
	counter(x.protoLimits, s.BufferLimit.Load(), "buffered")
	counter(x.protoLimits, s.HPACKLimit.Load(), "hpack_table")
	counter(x.protoErrors, s.DegradedToTCP.Load(), "degraded_to_tcp")
	counter(x.protoErrors, s.HTTP2FrameLost.Load(), "http2_frame_sync_lost")
	counter(x.protoErrors, s.HPACKStateLost.Load(), "hpack_state_lost")
	counter(x.protoErrors, s.ProtocolErrors.Load(), "malformed")
	counter(x.protoErrors, s.TraceMalformed.Load(), "trace_header_malformed")
	counter(x.protoErrors, s.UnknownProtocol.Load(), "unknown_protocol")
	counter(x.protoResyncs, s.HTTP1Resyncs.Load(), "http1")
	counter(x.protoResyncs, s.HTTP2Resyncs.Load(), "http2")
	counter(x.protoDiscarded, s.HTTP1Discarded.Load(), "http1_start_unproven")
	counter(x.protoDiscarded, s.HTTP1LostResponses.Load(), "http1_response_lost")
	counter(x.protoDiscarded, s.HTTP2Dropped.Load(), "http2_stream_uncertain")
	counter(x.protoUnsynced, s.HTTP1UnsyncedBytes.Load(), "http1")
	counter(x.protoHints, s.BodyHints.Load(), "sent")
	counter(x.protoHints, s.BodyHintErrors.Load(), "failed")
	for k := flow.OpConnect; k <= flow.OpRead; k++ {
		counter(x.opsDesc, x.ops[k].Load(), k.String())
	}
	counter(x.exch, x.exchanges.Load())
	counter(x.exchForced, x.exchangesForced.Load())
	counter(x.opsIncompleteDesc, x.opsIncomplete.Load())
	for i, n := range ioReasonNames {
		counter(x.ioUnclaimedDesc, x.ioUnclaimed[i].Load(), n)
	}
	gauge(x.reqKept, float64(m.requests.Len()))
	counter(x.reqOverwritten, m.requests.Overwritten())
	counter(x.enrollErrors, m.enroller.Errors())
	if d := m.pipe.dump; d != nil {
		counter(x.dumpSkipped, d.Skipped())
		counter(x.dumpErrors, d.Errors())
	}
	gauge(x.monitoredPods, float64(m.pods.Len()))
}
