package capture

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
)

func TestInOrderEventsDeliverBothStreamsExactly(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	g := newGen(1, 100, 5, 4096)
	req, resp := pattern(300, 1), pattern(5000, 2)
	feed(tab, g.syscall(event.Egress, req)...)
	feed(tab, g.syscall(event.Ingress, resp[:1000])...)
	feed(tab, g.syscall(event.Ingress, resp[1000:])...)
	tab.ConnClose(closeEv(1, 100, 5, 9_000_000))

	s := rec.Stream(1)
	if got := s.Bytes(event.Egress, '?'); !bytes.Equal(got, req) {
		t.Errorf("egress stream differs from what was sent (%d vs %d bytes)", len(got), len(req))
	}
	if got := s.Bytes(event.Ingress, '?'); !bytes.Equal(got, resp) {
		t.Errorf("ingress stream differs from what was received (%d vs %d bytes)", len(got), len(resp))
	}
	if !s.Closed() {
		t.Error("stream not closed after ConnClose")
	}
	ci := connInfo(t, tab, 1)
	if ci.State != "closed" || ci.CloseReason != ReasonClosed {
		t.Errorf("state %q reason %q, want closed/%s", ci.State, ci.CloseReason, ReasonClosed)
	}
	if ci.BytesSent != 300 || ci.BytesRecv != 5000 || ci.SyscallsSent != 1 || ci.SyscallsRecv != 2 {
		t.Errorf("counters sent=%d recv=%d syscalls sent=%d recv=%d, want 300 5000 1 2",
			ci.BytesSent, ci.BytesRecv, ci.SyscallsSent, ci.SyscallsRecv)
	}
	if ci.Gaps != 0 || ci.Truncated != 0 {
		t.Errorf("gaps=%d truncated=%d on a clean stream", ci.Gaps, ci.Truncated)
	}
	st := tab.Stats()
	if st.EventsOpen != 1 || st.EventsClose != 1 || st.EventsData != 3 || st.ConnsTracked != 0 || st.ConnsRetained != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestReorderedEventsAreDeliveredInStreamOrder(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleServer, 1000))
	g := newGen(1, 100, 5, 100)
	want := pattern(2000, 3)
	var evs []event.Data
	for i := 0; i < len(want); i += 250 {
		evs = append(evs, g.syscall(event.Ingress, want[i:i+250])...)
	}
	// Swap neighbours and move one event far back (within the window).
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+1 < len(evs); i += 2 {
		if rng.IntN(2) == 0 {
			evs[i], evs[i+1] = evs[i+1], evs[i]
		}
	}
	first := evs[0]
	evs = append(evs[1:11], append([]event.Data{first}, evs[11:]...)...)
	feed(tab, evs...)

	s := rec.Stream(1)
	if got := s.Bytes(event.Ingress, '?'); !bytes.Equal(got, want) {
		t.Fatalf("reassembled stream differs from the original")
	}
	st := tab.Stats()
	if st.Reordered == 0 {
		t.Error("Reordered = 0 after feeding out-of-order events")
	}
	if st.Gaps != 0 || st.LostEvents != 0 || st.BufferedBytes != 0 {
		t.Errorf("gaps=%d lost=%d buffered=%d, want all 0", st.Gaps, st.LostEvents, st.BufferedBytes)
	}
	for _, op := range s.Ops() {
		if op.Kind == "skip" {
			t.Errorf("unexpected skip of %d bytes", op.N)
		}
	}
}

func TestDuplicateEventsAreDroppedAndCounted(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	g := newGen(1, 100, 5, 100)
	evs := g.syscall(event.Egress, pattern(300, 4))
	// e0, e2 (held), e2 again (duplicate of a held one), e1, e0 again (already delivered).
	feed(tab, evs[0], evs[2], evs[2], evs[1], evs[0])
	if got := rec.Stream(1).Bytes(event.Egress, '?'); !bytes.Equal(got, pattern(300, 4)) {
		t.Fatalf("stream corrupted by duplicates")
	}
	st := tab.Stats()
	if st.Duplicates != 1 || st.OutOfWindow != 1 || st.BytesDropped != 200 {
		t.Errorf("duplicates=%d outOfWindow=%d bytesDropped=%d, want 1 1 200", st.Duplicates, st.OutOfWindow, st.BytesDropped)
	}
}

func TestMissingEventBecomesGapOfExactSizeAtClose(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	g := newGen(1, 100, 5, 1000)
	a, b, c := pattern(100, 1), pattern(333, 2), pattern(50, 3)
	ea := g.syscall(event.Egress, a)
	g.syscall(event.Egress, b) // lost in the kernel
	ec := g.syscall(event.Egress, c)
	feed(tab, ea...)
	feed(tab, ec...)
	if got := rec.Stream(1).Bytes(event.Egress, '?'); !bytes.Equal(got, a) {
		t.Fatalf("before close: delivered %d bytes, want only the 100 before the hole", len(got))
	}
	tab.ConnClose(closeEv(1, 100, 5, 5_000_000))

	want := append(append(append([]byte(nil), a...), bytes.Repeat([]byte{'?'}, len(b))...), c...)
	if got := rec.Stream(1).Bytes(event.Egress, '?'); !bytes.Equal(got, want) {
		t.Fatalf("after close: stream is not a + skip(333) + c")
	}
	var skips []uint64
	for _, op := range rec.Stream(1).Ops() {
		if op.Kind == "skip" {
			skips = append(skips, op.N)
		}
	}
	if len(skips) != 1 || skips[0] != 333 {
		t.Errorf("skips %v, want exactly [333]", skips)
	}
	st := tab.Stats()
	if st.Gaps != 1 || st.GapBytes != 333 || st.LostEvents != 1 || st.Flushes[FlushClose] != 1 {
		t.Errorf("gaps=%d gapBytes=%d lost=%d flushes=%v", st.Gaps, st.GapBytes, st.LostEvents, st.Flushes)
	}
	ci := connInfo(t, tab, 1)
	if ci.Gaps != 1 || ci.GapBytes != 333 || ci.BytesSent != 483 {
		t.Errorf("conn gaps=%d gapBytes=%d bytesSent=%d, want 1 333 483", ci.Gaps, ci.GapBytes, ci.BytesSent)
	}
}

// TestLostTailBecomesGapAtClose: events lost at the end of a stream have
// no later event to show them, so the close event's byte totals (the
// kernel's count, in the same offsets) declare them: one Tail Segment per
// direction that is short, carrying only the gap, before Close. A
// direction the events covered gets none.
func TestLostTailBecomesGapAtClose(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	g := newGen(1, 100, 5, 1000)
	req, resp, lost := pattern(120, 1), pattern(700, 2), pattern(2500, 3)
	feed(tab, g.syscall(event.Egress, req)...)
	feed(tab, g.syscall(event.Ingress, resp)...)
	tail := g.syscall(event.Ingress, lost) // three chunks: the first arrives, the rest are lost
	feed(tab, tail[0])
	ev := closeEv(1, 100, 5, 5_000_000)
	ev.BytesSent, ev.BytesRecv = uint64(len(req)), uint64(len(resp)+len(lost))
	tab.ConnClose(ev)

	want := append(append(append([]byte(nil), resp...), lost[:1000]...), bytes.Repeat([]byte{'?'}, 1500)...)
	if got := rec.Stream(1).Bytes(event.Ingress, '?'); !bytes.Equal(got, want) {
		t.Fatalf("ingress: %d bytes, want the response, the first chunk and a 1500-byte gap", len(got))
	}
	if got := rec.Stream(1).Bytes(event.Egress, '?'); !bytes.Equal(got, req) {
		t.Fatalf("egress: %d bytes, want the request alone", len(got))
	}
	var tails []Segment
	for _, sg := range rec.Stream(1).Segments() {
		if sg.Tail {
			tails = append(tails, sg)
		}
	}
	if len(tails) != 1 {
		t.Fatalf("%d tail segments, want 1 (ingress only): %+v", len(tails), tails)
	}
	if sg := tails[0]; sg.Dir != event.Ingress || sg.Gap != 1500 || sg.Offset != uint64(len(resp)+len(lost)) ||
		sg.Size != 0 || sg.Payload != nil || sg.Suffix != 0 || sg.Last || sg.Start != ev.End {
		t.Errorf("tail segment %+v, want ingress, gap 1500 at offset %d, nothing else, at the close", sg, len(resp)+len(lost))
	}
	st := tab.Stats()
	if st.Gaps != 1 || st.GapBytes != 1500 || st.TailGaps != 1 {
		t.Errorf("gaps=%d gapBytes=%d tailGaps=%d, want 1 1500 1", st.Gaps, st.GapBytes, st.TailGaps)
	}
	if ci := connInfo(t, tab, 1); ci.Gaps != 1 || ci.GapBytes != 1500 {
		t.Errorf("conn gaps=%d gapBytes=%d, want 1 1500", ci.Gaps, ci.GapBytes)
	}
}

func TestFullReorderBufferDeclaresGapAndLateEventIsOutOfWindow(t *testing.T) {
	tab, rec := newTestTable(t, Config{ReorderEvents: 4})
	g := newGen(1, 100, 5, 10)
	data := pattern(100, 9)
	evs := g.syscall(event.Ingress, data) // 10 events of 10 bytes
	feed(tab, evs[0])
	feed(tab, evs[2:7]...) // 5 held: exceeds 4, evs[1] given up
	st := tab.Stats()
	if st.Flushes[FlushReorderEvents] != 1 || st.Gaps != 1 || st.GapBytes != 10 {
		t.Fatalf("flushes=%v gaps=%d gapBytes=%d, want one reorder_events flush of a 10-byte gap", st.Flushes, st.Gaps, st.GapBytes)
	}
	feed(tab, evs[1]) // arrives too late
	feed(tab, evs[7:]...)
	st = tab.Stats()
	if st.OutOfWindow != 1 || st.BytesDropped != 10 {
		t.Errorf("outOfWindow=%d bytesDropped=%d, want 1 10", st.OutOfWindow, st.BytesDropped)
	}
	want := append(append(append([]byte(nil), data[:10]...), bytes.Repeat([]byte{'?'}, 10)...), data[20:]...)
	if got := rec.Stream(1).Bytes(event.Ingress, '?'); !bytes.Equal(got, want) {
		t.Errorf("stream is not data with bytes 10..20 skipped")
	}
}

func TestReorderBytesBoundFlushesDirection(t *testing.T) {
	tab, _ := newTestTable(t, Config{ReorderBytes: 1000})
	g := newGen(1, 100, 5, 400)
	evs := g.syscall(event.Egress, pattern(2000, 1)) // 5 x 400
	feed(tab, evs[1:4]...)                           // 1200 held > 1000
	st := tab.Stats()
	if st.Flushes[FlushReorderBytes] != 1 || st.BufferedBytes > 1000 {
		t.Errorf("flushes=%v buffered=%d, want one reorder_bytes flush and <= 1000 buffered", st.Flushes, st.BufferedBytes)
	}
}

func TestWaitingLongerThanReorderDelayDeclaresGap(t *testing.T) {
	tab, rec := newTestTable(t, Config{ReorderDelay: time.Millisecond})
	g := newGen(1, 100, 5, 10)
	evs := g.syscall(event.Egress, pattern(30, 1))
	feed(tab, evs[0], evs[2])
	if tab.Stats().Gaps != 0 {
		t.Fatal("gap declared before the delay passed")
	}
	// Sweep before the delay: nothing; after: the gap.
	tab.Sweep(evs[2].End + event.Timestamp(time.Millisecond))
	if tab.Stats().Gaps != 0 {
		t.Fatal("Sweep declared a gap before the delay passed")
	}
	tab.Sweep(evs[2].End + event.Timestamp(time.Millisecond) + 1)
	st := tab.Stats()
	if st.Gaps != 1 || st.GapBytes != 10 || st.Flushes[FlushTimeout] != 1 || st.BufferedBytes != 0 {
		t.Fatalf("gaps=%d gapBytes=%d flushes=%v buffered=%d", st.Gaps, st.GapBytes, st.Flushes, st.BufferedBytes)
	}
	if got := rec.Stream(1).Bytes(event.Egress, '?'); len(got) != 30 {
		t.Errorf("delivered %d bytes, want 30 (10 data, 10 skip, 10 data)", len(got))
	}

	// The same bound also applies on the event path: a later event on the
	// connection, far enough in time, releases the held ones.
	tab2, rec2 := newTestTable(t, Config{ReorderDelay: time.Millisecond})
	g2 := newGen(2, 100, 6, 10)
	var e2 []event.Data
	for range 4 {
		e2 = append(e2, g2.syscall(event.Egress, pattern(10, 1))...)
	}
	e2[3].Start = e2[2].End + event.Timestamp(2*time.Millisecond)
	e2[3].End = e2[3].Start + 10
	feed(tab2, e2[0], e2[2]) // e2[1] lost
	if tab2.Stats().Gaps != 0 {
		t.Fatal("gap declared before the delay passed")
	}
	feed(tab2, e2[3])
	if st := tab2.Stats(); st.Flushes[FlushTimeout] != 1 || st.LostEvents != 1 || st.BufferedBytes != 0 {
		t.Errorf("event-path timeout: flushes=%v lost=%d buffered=%d, want one timeout flush, 1 lost event, 0 buffered",
			st.Flushes, st.LostEvents, st.BufferedBytes)
	}
	checkStreamAccounting(t, rec2.Stream(2), event.Egress, 40)
}

func TestTruncatedEventDeliversPrefixThenSkip(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	data := pattern(1000, 5)
	feed(tab,
		event.Data{Conn: 1, Proc: testProc(1), Direction: event.Ingress, Seq: 0, StreamOffset: 0, Size: 1000,
			Payload: data[:256], Truncated: true, Start: 10, End: 20},
		event.Data{Conn: 1, Proc: testProc(1), Direction: event.Ingress, Seq: 1, StreamOffset: 1000, Size: 4,
			Payload: []byte("next"), Start: 30, End: 40},
	)
	ops := rec.Stream(1).Ops()
	if len(ops) != 3 || ops[0].Kind != "data" || ops[0].N != 256 || ops[1].Kind != "skip" || ops[1].N != 744 ||
		ops[2].Kind != "data" || string(ops[2].Bytes) != "next" {
		t.Fatalf("ops %+v, want data(256) skip(744) data(next)", ops)
	}
	if !bytes.Equal(ops[0].Bytes, data[:256]) {
		t.Error("truncated prefix differs")
	}
	ci := connInfo(t, tab, 1)
	if ci.Truncated != 1 || ci.BytesRecv != 1004 || ci.Gaps != 0 {
		t.Errorf("truncated=%d bytesRecv=%d gaps=%d, want 1 1004 0", ci.Truncated, ci.BytesRecv, ci.Gaps)
	}
}

func TestMultiChunkSyscallIsOneSyscallManyChunks(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	g := newGen(1, 100, 5, 1024)
	want := pattern(3000, 6)
	evs := g.syscall(event.Egress, want)
	if len(evs) != 3 {
		t.Fatalf("generator made %d chunks", len(evs))
	}
	feed(tab, evs...)
	if got := rec.Stream(1).Bytes(event.Egress, '?'); !bytes.Equal(got, want) {
		t.Fatal("multi-chunk syscall not reassembled")
	}
	ci := connInfo(t, tab, 1)
	if ci.SyscallsSent != 1 || ci.BytesSent != 3000 {
		t.Errorf("syscallsSent=%d bytesSent=%d, want 1 3000", ci.SyscallsSent, ci.BytesSent)
	}
}

func TestDataBeforeOpenCreatesUnknownConnThatOpenCompletes(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	g := newGen(7, 100, 5, 1000)
	feed(tab, g.syscall(event.Egress, []byte("GET / HTTP/1.1\r\n"))...)
	ci := connInfo(t, tab, 7)
	if ci.Role != "unknown" || ci.OpenSeen || ci.Connect != nil || ci.State != "open" {
		t.Errorf("data-first connection: role=%q openSeen=%v connect=%v state=%q", ci.Role, ci.OpenSeen, ci.Connect, ci.State)
	}
	if st := tab.Stats(); st.UnknownConnData != 1 {
		t.Errorf("UnknownConnData=%d, want 1", st.UnknownConnData)
	}
	s := rec.Stream(7)
	tab.ConnOpen(openEv(7, 100, 5, event.RoleClient, 500))
	feed(tab, g.syscall(event.Egress, []byte("Host: x\r\n\r\n"))...)
	ci = connInfo(t, tab, 7)
	if ci.Role != "client" || !ci.OpenSeen || ci.Connect == nil || !ci.Connect.Success || ci.Remote.String() != "10.0.0.2:80" {
		t.Errorf("after late open: %+v", ci)
	}
	if rec.Stream(7) != s {
		t.Error("late open replaced the connection's stream")
	}
	if got := string(s.Bytes(event.Egress, '?')); got != "GET / HTTP/1.1\r\nHost: x\r\n\r\n" {
		t.Errorf("stream %q", got)
	}
	if ci.FirstSeen != testBoot.Add(500) {
		t.Errorf("firstSeen %v, want the open's start %v", ci.FirstSeen, testBoot.Add(500))
	}
}

// A new connection on an fd that an open connection still holds takes the
// fd over but does not end the old one: its close is usually still on its
// way (the kernel reports it at the closing thread's syscall exit, after
// another thread may have reused the fd) and finishes it by ConnID.
func TestNewConnOnSameFDLeavesTheOldOneToItsLateClose(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	g1 := newGen(1, 100, 5, 1000)
	feed(tab, g1.syscall(event.Egress, []byte("first"))...)
	// fd 5 now belongs to conn 2; conn 1's close has not arrived yet.
	tab.ConnOpen(openEv(2, 100, 5, event.RoleClient, 2_000_000))
	g2 := newGen(2, 100, 5, 1000)
	feed(tab, g2.syscall(event.Egress, []byte("second"))...)
	if st := tab.Stats(); st.FDReused != 1 || st.ConnsTracked != 2 {
		t.Fatalf("FDReused=%d tracked=%d, want 1 2", st.FDReused, st.ConnsTracked)
	}
	if rec.Stream(1).Closed() || rec.Stream(2).Closed() {
		t.Fatal("fd reuse ended a connection")
	}
	// The late close of conn 1 finishes conn 1, not the fd's new owner.
	tab.ConnClose(event.ConnClose{Conn: 1, Proc: event.Process{TGID: 100, TID: 100}, FD: 5, Start: 2_000_100, End: 2_000_200, Success: true})
	if ci := connInfo(t, tab, 1); ci.State != "closed" || ci.CloseReason != ReasonClosed {
		t.Errorf("conn 1 state %q reason %q, want closed by its close", ci.State, ci.CloseReason)
	}
	if got := string(rec.Stream(1).Bytes(event.Egress, '?')); got != "first" || !rec.Stream(1).Closed() {
		t.Errorf("conn 1 stream %q closed=%v", got, rec.Stream(1).Closed())
	}
	if got := string(rec.Stream(2).Bytes(event.Egress, '?')); got != "second" || rec.Stream(2).Closed() {
		t.Errorf("conn 2 stream %q closed=%v, want open", got, rec.Stream(2).Closed())
	}
	// The fd's new owner keeps the index: its own close finds it.
	tab.ConnClose(event.ConnClose{Conn: 2, Proc: event.Process{TGID: 100, TID: 100}, FD: 5, Start: 3_000_000, End: 3_000_100, Success: true})
	if st := tab.Stats(); st.ConnsTracked != 0 || st.ConnsClosed != 2 {
		t.Errorf("after both closes: tracked=%d closed=%d, want 0 2", st.ConnsTracked, st.ConnsClosed)
	}
	// The same fd in another process is a different socket.
	tab.ConnOpen(openEv(3, 200, 5, event.RoleClient, 3_000_000))
	tab.ConnOpen(openEv(4, 300, 5, event.RoleClient, 3_000_000))
	if st := tab.Stats(); st.FDReused != 1 || st.ConnsTracked != 2 {
		t.Errorf("other tgids: FDReused=%d tracked=%d, want 1 2", st.FDReused, st.ConnsTracked)
	}
}

func TestLateDataAfterCloseIsDroppedNotResurrected(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	g := newGen(1, 100, 5, 1000)
	feed(tab, g.syscall(event.Egress, []byte("abc"))...)
	tab.ConnClose(closeEv(1, 100, 5, 2_000_000))
	feed(tab, g.syscall(event.Ingress, []byte("late!"))...)
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 3_000_000))
	st := tab.Stats()
	if st.LateData != 1 || st.LateOpen != 1 || st.BytesDropped != 5 || st.ConnsTracked != 0 {
		t.Errorf("lateData=%d lateOpen=%d bytesDropped=%d tracked=%d, want 1 1 5 0", st.LateData, st.LateOpen, st.BytesDropped, st.ConnsTracked)
	}
	if got := rec.Stream(1).Bytes(event.Ingress, '?'); len(got) != 0 {
		t.Errorf("late data reached the closed stream: %q", got)
	}
	tab.ConnClose(closeEv(99, 100, 9, 4_000_000))
	if st := tab.Stats(); st.UnknownConnClose != 1 {
		t.Errorf("UnknownConnClose=%d, want 1", st.UnknownConnClose)
	}
	// A close of a connection that already ended is late, not unknown.
	tab.ConnClose(closeEv(1, 100, 5, 5_000_000))
	if st := tab.Stats(); st.LateCloses != 1 || st.UnknownConnClose != 1 {
		t.Errorf("second close: LateCloses=%d UnknownConnClose=%d, want 1 1", st.LateCloses, st.UnknownConnClose)
	}
}

func TestConnBoundEvictsLeastRecentlyActive(t *testing.T) {
	tab, rec := newTestTable(t, Config{MaxConns: 3})
	for id := event.ConnID(1); id <= 3; id++ {
		tab.ConnOpen(openEv(id, 100, int32(id), event.RoleClient, event.Timestamp(id)*1000))
	}
	// Conn 1 is active again: conn 2 is now the least recently active.
	feed(tab, newGen(1, 100, 1, 100).syscall(event.Egress, []byte("x"))...)
	tab.ConnOpen(openEv(4, 100, 4, event.RoleClient, 9000))

	st := tab.Stats()
	if st.ConnsTracked != 3 || st.ConnsDropped != 1 {
		t.Fatalf("tracked=%d dropped=%d, want 3 1", st.ConnsTracked, st.ConnsDropped)
	}
	if ci := connInfo(t, tab, 2); ci.State != "closed" || ci.CloseReason != ReasonEvicted {
		t.Errorf("conn 2: state %q reason %q, want closed/evicted", ci.State, ci.CloseReason)
	}
	if !rec.Stream(2).Closed() {
		t.Error("evicted connection's stream not closed")
	}
	for _, id := range []event.ConnID{1, 3, 4} {
		if ci := connInfo(t, tab, id); ci.State != "open" {
			t.Errorf("conn %d: state %q, want open", id, ci.State)
		}
	}
	// Thousands more: the table never grows past its bound.
	for id := event.ConnID(10); id < 2010; id++ {
		feed(tab, newGen(id, 300, int32(id), 100).syscall(event.Ingress, []byte("y"))...)
		if n := tab.Stats().ConnsTracked; n > 3 {
			t.Fatalf("tracked %d > MaxConns 3", n)
		}
	}
	if st := tab.Stats(); st.ConnsDropped != 2001 {
		t.Errorf("ConnsDropped=%d, want 2001", st.ConnsDropped)
	}
}

func TestTotalBufferedBytesBoundIsNeverExceeded(t *testing.T) {
	const maxBuf = 4096
	const chunk = 512
	tab, _ := newTestTable(t, Config{MaxBufferedBytes: maxBuf})
	for id := event.ConnID(1); id <= 50; id++ {
		g := newGen(id, 100, int32(id), chunk)
		evs := g.syscall(event.Egress, pattern(4*chunk, byte(id)))
		feed(tab, evs[1], evs[2], evs[3]) // evs[0] missing: all held
		if b := tab.Stats().BufferedBytes; b > maxBuf {
			t.Fatalf("buffered %d > bound %d after conn %d", b, maxBuf, id)
		}
	}
	st := tab.Stats()
	if st.Flushes[FlushBufferTotal] == 0 {
		t.Errorf("no buffer_total flush counted: %v", st.Flushes)
	}
	if st.Gaps != st.Flushes[FlushBufferTotal] || st.GapBytes != chunk*st.Gaps {
		t.Errorf("gaps=%d gapBytes=%d, want one %d-byte gap per flush (%d)", st.Gaps, st.GapBytes, chunk, st.Flushes[FlushBufferTotal])
	}
}

func TestIdleConnectionsExpireOnSweep(t *testing.T) {
	tab, rec := newTestTable(t, Config{IdleTimeout: time.Second})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	tab.ConnOpen(openEv(2, 100, 6, event.RoleClient, event.Timestamp(2*time.Second)))
	tab.Sweep(event.Timestamp(time.Second)) // conn 1 idle for < 1s
	if st := tab.Stats(); st.ConnsExpired != 0 {
		t.Fatalf("expired %d too early", st.ConnsExpired)
	}
	tab.Sweep(event.Timestamp(time.Second) + 3000)
	st := tab.Stats()
	if st.ConnsExpired != 1 || st.ConnsTracked != 1 {
		t.Fatalf("expired=%d tracked=%d, want 1 1", st.ConnsExpired, st.ConnsTracked)
	}
	if ci := connInfo(t, tab, 1); ci.CloseReason != ReasonIdle || ci.State != "closed" {
		t.Errorf("conn 1: %q/%q", ci.State, ci.CloseReason)
	}
	if !rec.Stream(1).Closed() || rec.Stream(2).Closed() {
		t.Error("want only conn 1's stream closed")
	}
}

func TestClosedRingIsBounded(t *testing.T) {
	tab, _ := newTestTable(t, Config{ClosedRing: 2})
	for id := event.ConnID(1); id <= 5; id++ {
		tab.ConnOpen(openEv(id, 100, 5, event.RoleClient, event.Timestamp(id)*1000))
		tab.ConnClose(closeEv(id, 100, 5, event.Timestamp(id)*1000+500))
	}
	got := tab.Connections(Filter{})
	if len(got) != 2 || got[0].ID != 5 || got[1].ID != 4 {
		t.Fatalf("retained %v, want conns 5 and 4", ids(got))
	}
	if st := tab.Stats(); st.ConnsRetained != 2 {
		t.Errorf("ConnsRetained=%d", st.ConnsRetained)
	}
}

func TestCloseAllClosesEveryStream(t *testing.T) {
	tab, rec := newTestTable(t, Config{})
	for id := event.ConnID(1); id <= 3; id++ {
		tab.ConnOpen(openEv(id, 100, int32(id), event.RoleClient, 1000))
	}
	tab.CloseAll(5000)
	for id := event.ConnID(1); id <= 3; id++ {
		if !rec.Stream(id).Closed() {
			t.Errorf("conn %d not closed", id)
		}
		if ci := connInfo(t, tab, id); ci.CloseReason != ReasonShutdown {
			t.Errorf("conn %d reason %q", id, ci.CloseReason)
		}
	}
}

func TestInvalidConfigIsRejectedByName(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		name string
	}{
		{Config{MaxConns: -1}, "MaxConns"},
		{Config{ReorderBytes: -5}, "ReorderBytes"},
		{Config{IdleTimeout: -time.Second}, "IdleTimeout"},
	} {
		_, err := NewTable(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("NewTable(%+v) error %v, want one naming %s", tc.cfg, err, tc.name)
		}
	}
}

func TestInvalidDirectionIsCountedAndDropped(t *testing.T) {
	tab, _ := newTestTable(t, Config{})
	tab.Data(event.Data{Conn: 1, Direction: 7, Size: 3, Payload: []byte("abc")})
	if st := tab.Stats(); st.BadEvents != 1 || st.ConnsTracked != 0 {
		t.Errorf("badEvents=%d tracked=%d", st.BadEvents, st.ConnsTracked)
	}
}

func ids(cs []wire.ConnInfo) []uint64 {
	var out []uint64
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// A process that exits holding sockets makes no close syscall: its
// connections end at its exit — reported once, by whichever thread exits
// last — with a close the observer sees; another process's exit leaves
// them alone.
func TestExitOfTheProcessClosesItsConnections(t *testing.T) {
	obs := &closeObserver{}
	tab, rec := newTestTable(t, Config{Observer: obs})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	tab.ConnOpen(openEv(2, 100, 6, event.RoleServer, 1000))
	tab.ConnOpen(openEv(3, 200, 5, event.RoleClient, 1000))

	tab.Process(event.ProcessEvent{Kind: event.ProcessExit, Proc: event.Process{TGID: 300, TID: 300}, Time: 5000})
	tab.Process(event.ProcessEvent{Kind: event.ProcessFork, Proc: event.Process{TGID: 100, TID: 100}, Time: 5000})
	if st := tab.Stats(); st.ConnsExited != 0 || st.ConnsTracked != 3 {
		t.Fatalf("another process's exit or a fork ended connections: %+v", st)
	}
	// The last thread to exit need not be the leader.
	tab.Process(event.ProcessEvent{Kind: event.ProcessExit, Proc: event.Process{TGID: 100, TID: 107}, Time: 9000})
	if st := tab.Stats(); st.ConnsExited != 2 || st.ConnsTracked != 1 {
		t.Fatalf("exited=%d tracked=%d, want 2 1", st.ConnsExited, st.ConnsTracked)
	}
	for _, id := range []event.ConnID{1, 2} {
		if ci := connInfo(t, tab, id); ci.State != "closed" || ci.CloseReason != ReasonExited {
			t.Errorf("conn %d state %q reason %q", id, ci.State, ci.CloseReason)
		}
		if !rec.Stream(id).Closed() {
			t.Errorf("conn %d stream not closed", id)
		}
	}
	if rec.Stream(3).Closed() {
		t.Error("another process's connection was closed")
	}
	if len(obs.closes) != 2 || obs.closes[0].End != 9000 || !obs.closes[0].Success {
		t.Fatalf("observer closes %+v, want two at the exit time", obs.closes)
	}
	// A later exit of the same tgid finds nothing left.
	tab.Process(event.ProcessEvent{Kind: event.ProcessExit, Proc: event.Process{TGID: 100, TID: 100}, Time: 9500})
	if st := tab.Stats(); st.ConnsExited != 2 {
		t.Fatalf("exited=%d after a second exit, want 2", st.ConnsExited)
	}
	// A close reported anyway (a collector that reports kernel closes
	// without saying so in Config) is late, not unknown, and the observer
	// hears of the connection's end only once.
	tab.ConnClose(closeEv(1, 100, 5, 9600))
	if st := tab.Stats(); st.LateCloses != 1 || st.UnknownConnClose != 0 || len(obs.closes) != 2 {
		t.Fatalf("close after exit: late=%d unknown=%d observer closes %d, want 1 0 2",
			st.LateCloses, st.UnknownConnClose, len(obs.closes))
	}
}

// Under the socket tier the kernel reports the exit of a process before it
// closes the process's files, and reports each of those closes: the exit
// must leave the connections open so that their closes, with the kernel's
// byte totals, end them -- and a socket another process still holds stays
// open.
func TestKernelClosesEndConnectionsAfterTheirProcessExits(t *testing.T) {
	obs := &closeObserver{}
	tab, rec := newTestTable(t, Config{Observer: obs, KernelCloses: true})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	tab.ConnOpen(openEv(2, 100, 6, event.RoleServer, 1000))

	tab.Process(event.ProcessEvent{Kind: event.ProcessExit, Proc: event.Process{TGID: 100, TID: 100}, Time: 9000})
	if st := tab.Stats(); st.ConnsExited != 0 || st.ConnsTracked != 2 || len(obs.closes) != 0 {
		t.Fatalf("the exit ended connections: %+v, observer closes %d", st, len(obs.closes))
	}
	c := closeEv(1, 100, 5, 9100)
	c.BytesSent, c.BytesRecv = 4096, 512
	tab.ConnClose(c)
	st := tab.Stats()
	if st.ConnsClosed != 1 || st.LateCloses != 0 || st.UnknownConnClose != 0 || st.ConnsTracked != 1 {
		t.Fatalf("close after exit: %+v, want it to close connection 1", st)
	}
	if len(obs.closes) != 1 || obs.closes[0].BytesSent != 4096 || obs.closes[0].BytesRecv != 512 {
		t.Fatalf("observer closes %+v, want one with the kernel's totals", obs.closes)
	}
	if ci := connInfo(t, tab, 1); ci.State != "closed" || ci.CloseReason != ReasonClosed {
		t.Errorf("conn 1 state %q reason %q, want closed by its close", ci.State, ci.CloseReason)
	}
	if rec.Stream(2).Closed() {
		t.Error("a connection without a close ended at its process's exit")
	}
}

func TestRetransmitsReachTheObserverOnlyForConnectionsInTheTable(t *testing.T) {
	obs := &closeObserver{}
	tab, _ := newTestTable(t, Config{Observer: obs})
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1000))
	tab.Retransmit(event.Retransmit{Conn: 1, Segments: 3, State: 1, Time: 2000})
	tab.Retransmit(event.Retransmit{Conn: 2, Segments: 1, State: 1, Time: 2000})
	if len(obs.retrans) != 1 || obs.retrans[0].Conn != 1 || obs.retrans[0].Segments != 3 {
		t.Fatalf("observer saw %+v, want the retransmit of connection 1 only", obs.retrans)
	}
	if st := tab.Stats(); st.EventsRetransmit != 2 || st.UnknownRetransmit != 1 {
		t.Fatalf("retransmit events %d unknown %d, want 2 1", st.EventsRetransmit, st.UnknownRetransmit)
	}
}

type closeObserver struct {
	closes  []event.ConnClose
	retrans []event.Retransmit
}

func (o *closeObserver) ConnOpened(*Conn, event.ConnOpen) {}
func (o *closeObserver) DataArrived(*Conn, event.Data)    {}
func (o *closeObserver) Swept(event.Timestamp)            {}
func (o *closeObserver) Retransmitted(_ *Conn, e event.Retransmit) {
	o.retrans = append(o.retrans, e)
}
func (o *closeObserver) ConnFinished(_ *Conn, _ wire.ConnInfo, ev *event.ConnClose) {
	if ev != nil {
		o.closes = append(o.closes, *ev)
	}
}
