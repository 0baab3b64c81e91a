package capture

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/weirnet/weir/bpf/event"
)

func TestCollectorExportsEventsDropsAndConnections(t *testing.T) {
	tab, _ := newTestTable(t, Config{MaxConns: 1})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	tab.ConnOpen(openEv(2, 100, 6, event.RoleClient, 2000)) // evicts 1
	feed(tab, newGen(1, 100, 5, 100).syscall(event.Egress, []byte("late"))...)

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCollector(tab)); err != nil {
		t.Fatalf("register: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + labelString(m)
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
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}
}

func labelString(m *dto.Metric) string {
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
