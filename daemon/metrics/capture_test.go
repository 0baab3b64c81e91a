package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/capture"
)

// statsOf is a CaptureStats answering fixed values.
type statsOf capture.Stats

func (s statsOf) Stats() capture.Stats { return capture.Stats(s) }

func TestCaptureCollectorExportsEventsDropsAndConnections(t *testing.T) {
	tab := statsOf{EventsOpen: 2, EventsData: 1, ConnsDropped: 1, LateData: 1, ConnsTracked: 1, ConnsRetained: 1,
		Flushes: map[string]uint64{capture.FlushTimeout: 0}, PayloadBytes: 18}
	tab.SkippedBytes[event.SkipH2Data] = 90
	tab.SkippedBytes[event.SkipBudget] = 47

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCaptureCollector(tab)); err != nil {
		t.Fatalf("register: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + captureLabelString(m)
			switch {
			case m.Counter != nil:
				got[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				got[key] = m.Gauge.GetValue()
			}
		}
	}
	for k, want := range map[string]float64{
		`weir_capture_events_total{kind="conn_open"}`:             2,
		`weir_capture_events_total{kind="data"}`:                  1,
		`weir_capture_drops_total{reason="conn_table_full"}`:      1,
		`weir_capture_drops_total{reason="late_data"}`:            1,
		`weir_capture_connections{state="open"}`:                  1,
		`weir_capture_connections{state="closed"}`:                1,
		`weir_capture_connections_closed_total{reason="evicted"}`: 1,
		`weir_capture_reorder_flushes_total{reason="timeout"}`:    0,
		`weir_capture_skipped_bytes_total{reason="h2_data"}`:      90,
		`weir_capture_skipped_bytes_total{reason="budget"}`:       47,
		`weir_capture_skipped_bytes_total{reason="chunk_limit"}`:  0,
		`weir_capture_payload_bytes_total`:                        18,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}
}

func captureLabelString(m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return ""
	}
	s := "{"
	for i, l := range m.GetLabel() {
		if i > 0 {
			s += ","
		}
		s += l.GetName() + `="` + l.GetValue() + `"`
	}
	return s + "}"
}
