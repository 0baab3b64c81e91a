package capture

import (
	"testing"

	"github.com/weirnet/weir/bpf/event"
)

// TestSegmentsCarryEachEventOnceInStreamOrder: events arriving out of
// order reach the Stream once each, in stream order, each with its place
// in the stream, its syscall and the kernel's last-event mark and metrics,
// so per-syscall operations are built from the same calls as the bytes.
func TestSegmentsCarryEachEventOnceInStreamOrder(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	g := newGen(1, 100, 5, 4)
	first := g.syscall(event.Egress, []byte("hello!"))
	second := g.syscall(event.Egress, []byte("abc"))
	send := &event.SendMetrics{Measured: event.MetricPackets, Packets: 1}
	second[0].Send = send
	feed(tab, second[0], first[1], first[0])
	segs := rec.Stream(1).Segments()
	type want struct {
		off, size uint64
		start     event.Timestamp
		last      bool
	}
	wants := []want{{0, 4, first[0].Start, false}, {4, 2, first[0].Start, true}, {6, 3, second[0].Start, true}}
	if len(segs) != len(wants) {
		t.Fatalf("%d segments, want %d: %+v", len(segs), len(wants), segs)
	}
	for i, w := range wants {
		s := segs[i]
		if s.Offset != w.off || s.Size != w.size || s.Start != w.start || s.Last != w.last ||
			s.Syscall != event.SysWrite || s.Gap != 0 || s.Suffix != 0 {
			t.Errorf("segment %d: %+v, want %+v", i, s, w)
		}
	}
	if segs[2].Send != send || segs[0].Send != nil {
		t.Errorf("metrics %v, %v: want them on the measured syscall's event only", segs[0].Send, segs[2].Send)
	}
}

// TestSegmentOfLostEventsCarriesTheGap: when a lost event is given up
// on, the next Segment says how many bytes before it nobody delivered, and
// an event whose bytes were all delivered before still comes, empty, with
// its syscall's mark.
func TestSegmentOfLostEventsCarriesTheGap(t *testing.T) {
	tab, rec := newTestTable(t, Config{ReorderEvents: 1})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	g := newGen(1, 100, 5, 4)
	a := g.syscall(event.Egress, []byte("12345678")) // two events; the first is lost
	b := g.syscall(event.Egress, []byte("xy"))
	feed(tab, a[1], b[0]) // two held over a bound of one: a[0] is given up
	over := a[1]
	over.Seq = b[0].Seq + 1
	over.Last = true
	feed(tab, over) // same bytes again, under a new Seq: an overlap
	segs := rec.Stream(1).Segments()
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3: %+v", len(segs), segs)
	}
	if s := segs[0]; s.Gap != 4 || s.Offset != 4 || !s.Last {
		t.Errorf("after the loss: %+v", s)
	}
	if s := segs[1]; s.Gap != 0 || s.Offset != 8 || !s.Last {
		t.Errorf("next syscall: %+v", s)
	}
	if s := segs[2]; s.Offset != 4 || s.Size != 4 || s.Gap != 0 || s.Suffix != 0 || !s.Last {
		t.Errorf("overlap: %+v", s)
	}
	checkStreamAccounting(t, rec.Stream(1), event.Egress, 10)
}
