package capture

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
)

// Snapshots, stats, sweeps and connection listings (all that the metrics
// collector and the API's connections handler read) run concurrently with
// the Sink goroutine; run with -race.
func TestConcurrentReadersDuringIngestAreRaceFree(t *testing.T) {
	tab, _ := newTestTable(t, Config{MaxConns: 64, ClosedRing: 32, ReorderDelay: time.Microsecond})

	const conns, perConn = 200, 40
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		for id := event.ConnID(1); id <= conns; id++ {
			tab.ConnOpen(openEv(id, 100, int32(id%50), event.RoleClient, event.Timestamp(id)*1000))
			g := newGen(id, 100, int32(id%50), 64)
			evs := g.syscall(event.Egress, pattern(perConn*64, byte(id)))
			for i := 0; i+1 < len(evs); i += 2 {
				evs[i], evs[i+1] = evs[i+1], evs[i]
			}
			feed(tab, evs...)
			if id%3 == 0 {
				tab.ConnClose(closeEv(id, 100, int32(id%50), g.ts+1000))
			}
		}
	}()
	readers := []func(){
		func() { tab.Connections(Filter{State: "open", Limit: 10}) },
		func() { tab.Stats() },
		func() { tab.Sweep(event.Now()) },
		func() { tab.Connections(Filter{State: "closed"}) },
	}
	for _, read := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000 && ctx.Err() == nil; i++ {
				read()
			}
		}()
	}
	runCtx, stop := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- tab.Run(runCtx) }()
	wg.Wait()
	stop()
	if err := <-runDone; err != nil {
		t.Errorf("Run: %v", err)
	}

	st := tab.Stats()
	if st.EventsOpen != conns || st.EventsData != conns*perConn {
		t.Errorf("events open=%d data=%d, want %d %d", st.EventsOpen, st.EventsData, conns, conns*perConn)
	}
	if st.ConnsTracked > 64 || st.ConnsRetained > 32 {
		t.Errorf("bounds exceeded: tracked %d retained %d", st.ConnsTracked, st.ConnsRetained)
	}
}

// countingStream checks the Stream contract while counting bytes: nothing
// after Close, Close once, each direction's Segments in stream order (an
// event's new bytes start where the last ones ended, after its gap, within
// the event's own range), a Tail Segment only a gap.
type countingStream struct {
	t      *testing.T
	total  [2]uint64
	closed int
}

func (s *countingStream) Segment(g *Segment) {
	if s.closed > 0 {
		s.t.Fatalf("Segment(%s) after close=%d", g.Dir, s.closed)
	}
	from := s.total[g.Dir] + g.Gap
	to := from + uint64(len(g.Payload)) + g.Suffix
	if g.Tail && (g.Gap == 0 || g.Size != 0 || g.Offset != from || to != from || g.Last) {
		s.t.Fatalf("Tail Segment(%s) %+v: want only a gap, ending at its offset", g.Dir, *g)
	}
	if from != to && (from < g.Offset || to != g.Offset+g.Size) {
		s.t.Fatalf("Segment(%s) delivers [%d,%d) of an event at [%d,%d)", g.Dir, from, to, g.Offset, g.Offset+g.Size)
	}
	s.total[g.Dir] = to
}

func (s *countingStream) Close(event.Timestamp) { s.closed++ }

// FuzzTableEvents feeds arbitrary event sequences: the table must not panic,
// must stay within every bound, and each stream must add up to the offsets
// the table reached.
func FuzzTableEvents(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 1, 0, 0, 0, 10, 2, 1, 0, 1, 0, 20, 1, 1})
	f.Add([]byte{2, 3, 1, 5, 0, 200, 2, 3, 1, 0, 0, 100, 3, 255, 2, 3, 1, 9, 9, 9, 4, 1, 3})
	f.Add(make([]byte, 64))
	f.Fuzz(fuzzTableEvents)
}

func fuzzTableEvents(t *testing.T, in []byte) {
	streams := map[*Conn]*countingStream{}
	cfg := Config{
		MaxConns: 4, MaxBufferedBytes: 3000, ReorderEvents: 5, ReorderBytes: 2000,
		ClosedRing: 3, ReorderDelay: time.Microsecond, IdleTimeout: time.Millisecond,
		StreamFactory: func(c *Conn) Stream {
			s := &countingStream{t: t}
			streams[c] = s
			return s
		},
	}
	tab, _ := newTestTable(t, cfg)
	payload := pattern(4096, 1)
	var now event.Timestamp
	next := func() byte {
		if len(in) == 0 {
			return 0
		}
		b := in[0]
		in = in[1:]
		return b
	}
	for steps := 0; len(in) > 0 && steps < 2000; steps++ {
		op, id := next()%5, event.ConnID(next()%8)
		now += event.Timestamp(next()) * 1000
		switch op {
		case 0:
			tab.ConnOpen(event.ConnOpen{Conn: id, Proc: testProc(uint32(next() % 2)), FD: int32(next() % 4),
				Role: event.Role(next() % 3), Start: now, End: now})
		case 1:
			// The kernel's byte totals: below, at or past what the
			// events delivered (a lost tail).
			tab.ConnClose(event.ConnClose{Conn: id, Start: now, End: now,
				BytesSent: uint64(next()) * 64, BytesRecv: uint64(next()) * 64})
		case 2:
			var raw [8]byte
			for i := range raw {
				raw[i] = next()
			}
			size := uint32(binary.LittleEndian.Uint16(raw[4:6])) % 2048
			capLen := min(int(raw[6])*16, int(size))
			off := uint64(binary.LittleEndian.Uint16(raw[2:4]))
			if raw[7] == 0xff {
				off = ^uint64(0) - uint64(raw[1]) // offsets at the end of the stream space
			}
			tab.Data(event.Data{Conn: id, Proc: testProc(uint32(raw[0] % 2)), FD: int32(raw[0] % 4),
				Direction: event.Direction(raw[0] % 3), Seq: uint64(raw[1] % 12), StreamOffset: off,
				Size: size, Payload: payload[:capLen], Truncated: raw[7]&1 == 1, Start: now, End: now})
		case 3:
			tab.Sweep(now)
		case 4:
			tab.Connections(Filter{Limit: int(id)})
		}
		checkInvariants(t, tab, cfg, streams)
	}
	tab.CloseAll(now)
	checkInvariants(t, tab, cfg, streams)
	for c, s := range streams {
		if s.closed != 1 {
			t.Fatalf("conn %d: Close called %d times after CloseAll", c.ID, s.closed)
		}
	}
}

func checkInvariants(t *testing.T, tab *Table, cfg Config, streams map[*Conn]*countingStream) {
	t.Helper()
	tab.mu.Lock()
	defer tab.mu.Unlock()
	if len(tab.conns) > cfg.MaxConns {
		t.Fatalf("%d conns > MaxConns %d", len(tab.conns), cfg.MaxConns)
	}
	if tab.buffered > cfg.MaxBufferedBytes {
		t.Fatalf("%d buffered > MaxBufferedBytes %d", tab.buffered, cfg.MaxBufferedBytes)
	}
	if tab.closed.len() > cfg.ClosedRing || len(tab.closed.ids) > cfg.ClosedRing {
		t.Fatalf("closed ring %d entries, %d ids > %d", tab.closed.len(), len(tab.closed.ids), cfg.ClosedRing)
	}
	for k, c := range tab.byFD {
		if tab.conns[c.ID] != c || c.fdKey() != k {
			t.Fatalf("fd index entry %+v -> conn %d that is not tracked under that key", k, c.ID)
		}
	}
	if len(tab.pending) > len(tab.conns) {
		t.Fatalf("%d pending > %d conns", len(tab.pending), len(tab.conns))
	}
	sum := 0
	for _, c := range tab.conns {
		for d := range c.dirs {
			h := &c.dirs[d]
			if len(h.held) > cfg.ReorderEvents || h.heldLen > cfg.ReorderBytes {
				t.Fatalf("conn %d %s holds %d events / %d bytes", c.ID, h.dir, len(h.held), h.heldLen)
			}
			sum += h.heldLen
			if d >= plainHalf {
				continue // TLS plaintext: this Stream takes none (not a TLSStream)
			}
			if got := streams[c].total[d]; got != h.nextOff {
				t.Fatalf("conn %d %s: stream got %d bytes (data+skip), table offset %d", c.ID, h.dir, got, h.nextOff)
			}
		}
	}
	if sum != tab.buffered {
		t.Fatalf("held bytes %d != buffered counter %d", sum, tab.buffered)
	}
	n := 0
	for c := tab.lruHead; c != nil; c = c.next {
		if n++; n > len(tab.conns) {
			t.Fatal("LRU list longer than the table")
		}
	}
	if n != len(tab.conns) {
		t.Fatalf("LRU list has %d entries, table %d", n, len(tab.conns))
	}
}

func benchmarkData(b *testing.B, swap bool) {
	tab, err := NewTable(Config{BootTime: testBoot, StreamFactory: func(*Conn) Stream { return NopStream{} }})
	if err != nil {
		b.Fatal(err)
	}
	tab.ConnOpen(openEv(1, 100, 5, event.RoleClient, 1))
	payload := pattern(1024, 1)
	e := event.Data{Conn: 1, Proc: testProc(100), FD: 5, Direction: event.Ingress, Syscall: event.SysRead,
		Size: uint32(len(payload)), Payload: payload}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	var i uint64
	for b.Loop() {
		seq := i
		if swap {
			seq ^= 1 // 1, 0, 3, 2, ...: every other event is held and copied
		}
		e.Seq, e.StreamOffset = seq, seq*uint64(len(payload))
		e.Start, e.End = event.Timestamp(i*1000), event.Timestamp(i*1000+500)
		tab.Data(e)
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDataInOrder measures the common path: 1 KiB events in order.
func BenchmarkDataInOrder(b *testing.B) { benchmarkData(b, false) }

// BenchmarkDataReordered swaps every pair of events, so half of them go
// through the reorder buffer (payload copy into a pooled buffer).
func BenchmarkDataReordered(b *testing.B) { benchmarkData(b, true) }
