package capture

import (
	"testing"

	"github.com/weirnet/weir/bpf/event"
)

// The counters behind the weir_capture_* metrics (metrics.CaptureCollector):
// an eviction by a full table and a late chunk of the evicted connection.
func TestStatsCountEventsDropsAndConnections(t *testing.T) {
	tab, _ := newTestTable(t, Config{MaxConns: 1})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	tab.ConnOpen(openEv(2, 100, 6, event.RoleClient, 2000)) // evicts 1
	feed(tab, newGen(1, 100, 5, 100).syscall(event.Egress, []byte("late"))...)

	s := tab.Stats()
	for name, c := range map[string]struct{ got, want uint64 }{
		"EventsOpen":    {s.EventsOpen, 2},
		"EventsData":    {s.EventsData, 1},
		"ConnsDropped":  {s.ConnsDropped, 1},
		"LateData":      {s.LateData, 1},
		"ConnsTracked":  {uint64(s.ConnsTracked), 1},
		"ConnsRetained": {uint64(s.ConnsRetained), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", name, c.got, c.want)
		}
	}
	if v, ok := s.Flushes[FlushTimeout]; !ok || v != 0 {
		t.Errorf("Flushes[%q] = %d (present %v), want 0 and present", FlushTimeout, v, ok)
	}
}
