package capture

import (
	"testing"

	"github.com/weirnet/weir/bpf/event"
)

// TestSkipReasonsReachTheStreamConnInfoAndMetrics: an event's uncopied
// suffix is skipped with the kernel's reason, a hole of lost events with
// SkipNone; skipped bytes are counted per connection and per reason.
func TestSkipReasonsReachTheStreamConnInfoAndMetrics(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	ev := func(seq, off uint64, size uint32, payload string, skip event.SkipReason) event.Data {
		return event.Data{Conn: 1, Proc: testProc(100), FD: 5, Direction: event.Ingress, Syscall: event.SysRead,
			Seq: seq, StreamOffset: off, Size: size, Payload: []byte(payload), Truncated: len(payload) < int(size),
			Skip: skip, Start: 2000, End: 2100}
	}
	tab.Data(ev(0, 0, 100, "0123456789", event.SkipH2Data)) // 90 benign
	tab.Data(ev(1, 100, 50, "abc", event.SkipBudget))       // 47 lost to the budget
	tab.Data(ev(2, 150, 5, "hello", event.SkipNone))
	var whys []event.SkipReason
	var ns []uint64
	for _, op := range rec.Stream(1).Ops() {
		if op.Kind == "skip" {
			whys, ns = append(whys, op.Why), append(ns, op.N)
		}
	}
	if len(whys) != 2 || whys[0] != event.SkipH2Data || ns[0] != 90 || whys[1] != event.SkipBudget || ns[1] != 47 {
		t.Fatalf("skips %v of %v", whys, ns)
	}
	ci := tab.Connections(Filter{})[0]
	if ci.Skipped["h2_data"] != 90 || ci.Skipped["budget"] != 47 || len(ci.Skipped) != 2 {
		t.Fatalf("ConnInfo.Skipped %v", ci.Skipped)
	}
	if !ci.OpenSeen {
		t.Fatal("a connection opened by connect is not OpenSeen")
	}

	// weir_capture_skipped_bytes_total{reason} and payload_bytes_total.
	st := tab.Stats()
	if st.SkippedBytes[event.SkipH2Data] != 90 || st.SkippedBytes[event.SkipBudget] != 47 ||
		st.SkippedBytes[event.SkipChunkLimit] != 0 || st.PayloadBytes != 18 {
		t.Fatalf("skipped bytes %v, payload bytes %d", st.SkippedBytes, st.PayloadBytes)
	}
}

// TestOpenSeenOnlyForConnectOrAccept: a socket the kernel first saw through
// a data syscall (one that existed before the daemon started) is reported
// with a ConnOpen too, but its start was not seen.
func TestOpenSeenOnlyForConnectOrAccept(t *testing.T) {
	tab, _ := newTestTable(t, Config{})
	o := openEv(1, 100, 5, event.RoleUnknown, 1000)
	o.Syscall = event.SysRead
	tab.ConnOpen(o)
	tab.ConnOpen(openEv(2, 100, 6, event.RoleServer, 1000))
	seen := map[uint64]bool{}
	for _, ci := range tab.Connections(Filter{}) {
		seen[ci.ID] = ci.OpenSeen
	}
	if seen[1] || !seen[2] {
		t.Fatalf("OpenSeen by conn: %v, want 1 false (first seen through read), 2 true (accept4)", seen)
	}
}
