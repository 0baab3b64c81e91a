package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/capture"
)

// CaptureStats is where CaptureCollector reads from: the capture table.
type CaptureStats interface {
	Stats() capture.Stats
}

// CaptureCollector exposes the capture layer's self-metrics (events read,
// drops by reason, connections tracked) for the daemon to register. Values
// are read from Stats at scrape time, so the event path pays nothing for
// them.
type CaptureCollector struct {
	table CaptureStats

	events, drops, flushes, gaps, gapBytes, lost, reordered, truncated *prometheus.Desc
	tailGaps, skipped, payload                                         *prometheus.Desc
	conns, connsCreated, connsClosed, buffered, fdReused, lateCloses   *prometheus.Desc
}

var _ prometheus.Collector = (*CaptureCollector)(nil)

// NewCaptureCollector returns a collector over t's Stats. The cgroup
// resolver's metrics are identity.CgroupCollector's.
func NewCaptureCollector(t CaptureStats) *CaptureCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("weir_capture_"+name, help, labels, nil)
	}
	return &CaptureCollector{
		table:    t,
		events:   d("events_total", "Events received from the kernel reader, by kind.", "kind"),
		drops:    d("drops_total", "Events or connections dropped by user-space capture, by reason.", "reason"),
		flushes:  d("reorder_flushes_total", "Reorder buffers flushed before the missing event arrived, by reason.", "reason"),
		gaps:     d("gaps_total", "Runs of missing stream bytes declared to parsers."),
		gapBytes: d("gap_bytes_total", "Stream bytes declared missing."),
		tailGaps: d("tail_gaps_total", "Of gaps_total, those declared at a connection's close: bytes the kernel "+
			"counted by then that no event delivered (the stream's last events were lost)."),
		lost:      d("lost_events_total", "Data events never received (sequence numbers skipped)."),
		reordered: d("reordered_events_total", "Data events that arrived ahead of a missing one and were held."),
		truncated: d("truncated_events_total", "Data events whose payload was shorter than their size."),
		payload:   d("payload_bytes_total", "Payload bytes of data events received: what was copied out of the kernel."),
		skipped: d("skipped_bytes_total", "Stream bytes the kernel reported without copying them, by reason: "+
			"h2_data and body are bytes the parsers do not need, the others are losses.", "reason"),
		conns:        d("connections", "Connections currently in the table, or closed ones retained for the API.", "state"),
		connsCreated: d("connections_created_total", "Connections that entered the table."),
		fdReused:     d("fd_reused_total", "Open connections whose fd a new connection took before their close arrived."),
		connsClosed:  d("connections_closed_total", "Connections that left the table, by reason.", "reason"),
		buffered:     d("buffered_bytes", "Payload bytes held in reorder buffers."),
		lateCloses: d("late_closes_total", "Close events of a connection that had already ended (evicted, idle, or "+
			"ended at its process's exit by a capture that does not report kernel closes); ignored."),
	}
}

// Describe implements prometheus.Collector.
func (c *CaptureCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.events, c.drops, c.flushes, c.gaps, c.gapBytes, c.tailGaps, c.lost, c.reordered,
		c.truncated, c.skipped, c.payload, c.conns, c.connsCreated, c.connsClosed, c.buffered, c.fdReused,
		c.lateCloses} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *CaptureCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.table.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter(c.events, s.EventsOpen, "conn_open")
	counter(c.events, s.EventsClose, "conn_close")
	counter(c.events, s.EventsData, "data")
	counter(c.events, s.EventsRetransmit, "retransmit")
	counter(c.drops, s.ConnsDropped, "conn_table_full")
	counter(c.drops, s.LateData, "late_data")
	counter(c.drops, s.LateOpen, "late_open")
	counter(c.drops, s.UnknownConnClose, "unknown_conn_close")
	counter(c.drops, s.UnknownRetransmit, "unknown_conn_retransmit")
	counter(c.drops, s.OutOfWindow, "out_of_window")
	counter(c.drops, s.Duplicates, "duplicate")
	counter(c.drops, s.Overlaps, "overlap")
	counter(c.drops, s.BadEvents, "bad_event")
	for r, v := range s.Flushes {
		counter(c.flushes, v, r)
	}
	counter(c.gaps, s.Gaps)
	counter(c.gapBytes, s.GapBytes)
	counter(c.tailGaps, s.TailGaps)
	counter(c.lost, s.LostEvents)
	counter(c.reordered, s.Reordered)
	counter(c.truncated, s.Truncated)
	counter(c.payload, s.PayloadBytes)
	for r, v := range s.SkippedBytes {
		if r != int(event.SkipNone) {
			counter(c.skipped, v, event.SkipReason(r).String())
		}
	}
	gauge(c.conns, s.ConnsTracked, "open")
	gauge(c.conns, s.ConnsRetained, "closed")
	counter(c.connsCreated, s.ConnsCreated)
	counter(c.connsClosed, s.ConnsDropped, capture.ReasonEvicted)
	counter(c.connsClosed, s.ConnsExpired, capture.ReasonIdle)
	counter(c.fdReused, s.FDReused)
	counter(c.lateCloses, s.LateCloses)
	counter(c.connsClosed, s.ConnsClosed, capture.ReasonClosed)
	counter(c.connsClosed, s.ConnsExited, capture.ReasonExited)
	gauge(c.buffered, s.BufferedBytes)
}
