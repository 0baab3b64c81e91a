package walker

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/http2"
	"github.com/weirnet/weir/daemon/protocol/record"
	xhttp2 "golang.org/x/net/http2"
)

// splitter cuts writes into syscalls and iovec segments from fuzz bytes.
type splitter struct {
	b []byte
	i int
}

func (s *splitter) next(n int) int {
	if len(s.b) == 0 || n <= 0 {
		return n
	}
	v := int(s.b[s.i%len(s.b)]) | int(s.b[(s.i+1)%len(s.b)])<<8
	s.i += 2
	return v%n + 1
}

// syscalls cuts b into syscalls, each a single buffer or a few segments.
func (s *splitter) syscalls(b []byte, f func(segs [][]byte, vectored bool)) {
	for len(b) > 0 {
		n := s.next(len(b))
		sys := b[:n]
		b = b[n:]
		if s.next(3) == 1 { // vectored
			var segs [][]byte
			for len(sys) > 0 && len(segs) < MaxIOVecs-1 {
				k := s.next(len(sys))
				segs = append(segs, sys[:k])
				sys = sys[k:]
			}
			if len(sys) > 0 {
				segs = append(segs, sys)
			}
			f(segs, true)
		} else {
			f([][]byte{sys}, false)
		}
	}
}

// Replay feeds events to a stream consumer as daemon/capture does: the
// copied prefix as data, the suffix as skipped bytes.
func replay(evs []Event, data func([]byte), skip func(uint64)) {
	for _, e := range evs {
		if len(e.Payload) > 0 {
			data(e.Payload)
		}
		if n := uint64(e.Size) - uint64(len(e.Payload)); n > 0 {
			skip(n)
		}
	}
}

type summary struct {
	Method, Path      string
	Status, GRPC      int
	Stream            uint32
	ReqBody, RespBody uint64
	Incomplete, Reset bool
}

func summarize(recs []*record.Record) []summary {
	out := make([]summary, 0, len(recs))
	for _, r := range recs {
		out = append(out, summary{r.Method, r.Path, r.Status, r.GRPCStatus, r.StreamID, r.ReqBodyBytes, r.RespBodyBytes, r.Incomplete, r.Reset})
	}
	slices.SortFunc(out, func(a, b summary) int { return int(a.Stream) - int(b.Stream) })
	return out
}

// compare runs one conversation through the walker (as seen by the client
// process) and checks that the HTTP/2 parser decodes the same records from
// the reduced stream as from the full one. It returns the walker state.
func compare(t *testing.T, cv conversation, cfg Config, cuts []byte) *Conn {
	t.Helper()
	var full, reduced []*record.Record
	lim := record.DefaultLimits()
	pf := http2.New(lim, &record.Stats{}, func(r *record.Record) { full = append(full, r) })
	pr := http2.New(lim, &record.Stats{}, func(r *record.Record) { reduced = append(reduced, r) })
	c := &Conn{Cfg: cfg}
	sp := &splitter{b: cuts}
	var copied, total uint64
	var started [2]bool
	for _, w := range cv.writes {
		side, dir := http2.Client, event.Egress
		if !w.client {
			side, dir = http2.Server, event.Ingress
		}
		b := w.b
		if !started[dir] {
			// The walker decides a direction's protocol from its
			// first syscall: a peer's first write carries a whole
			// SETTINGS frame or at least "PRI " of the preface.
			started[dir] = true
			first := b[:min(len(b), 9+sp.next(40))]
			b = b[len(first):]
			evs := c.Syscall(dir, [][]byte{first}, false)
			pf.Data(side, first, 1, 2)
			replay(evs, func(b []byte) { pr.Data(side, b, 1, 2) }, func(n uint64) { pr.Skip(side, n, 1, 2) })
		}
		sp.syscalls(b, func(segs [][]byte, vectored bool) {
			for _, s := range segs {
				pf.Data(side, s, 1, 2)
			}
			evs := c.Syscall(dir, segs, vectored)
			checkEvents(t, evs, segs)
			replay(evs, func(b []byte) { pr.Data(side, b, 1, 2); copied += uint64(len(b)) },
				func(n uint64) { pr.Skip(side, n, 1, 2) })
			for _, s := range segs {
				total += uint64(len(s))
			}
		})
	}
	pf.Close(3)
	pr.Close(3)
	if c.Dirs[0].Mode() != H2 || c.Dirs[1].Mode() != H2 {
		t.Fatalf("walker lost HTTP/2: modes %d %d, counts %+v", c.Dirs[0].Mode(), c.Dirs[1].Mode(), c.Counts)
	}
	a, b := summarize(full), summarize(reduced)
	if len(a) != cv.exchanges {
		t.Fatalf("%d records from the full stream of %d exchanges", len(a), cv.exchanges)
	}
	for _, r := range a {
		if r.Path == "" || r.Status != 200 || r.Incomplete {
			t.Fatalf("full stream record is not a complete exchange: %+v", r)
		}
	}
	if !slices.Equal(a, b) {
		t.Fatalf("records differ (copied %d of %d bytes)\nfull:    %+v\nreduced: %+v", copied, total, a, b)
	}
	return c
}

// checkEvents checks the contract of one syscall's events: contiguous,
// payload equal to the bytes moved at its offset, skip reason iff a suffix.
func checkEvents(t *testing.T, evs []Event, segs [][]byte) {
	t.Helper()
	all := bytes.Join(segs, nil)
	if len(evs) == 0 || len(evs) > MaxChunks || !evs[len(evs)-1].Last {
		t.Fatalf("%d events for one syscall, last %v", len(evs), len(evs) > 0 && evs[len(evs)-1].Last)
	}
	off := evs[0].Offset
	at := 0
	for _, e := range evs {
		if e.Offset != off || len(e.Payload) > int(e.Size) || (e.Skip != event.SkipNone) != (len(e.Payload) < int(e.Size)) {
			t.Fatalf("bad event %+v at offset %d", e, off)
		}
		if !bytes.Equal(e.Payload, all[at:at+len(e.Payload)]) {
			t.Fatalf("event at %d carries other bytes than were moved", e.Offset)
		}
		off += uint64(e.Size)
		at += int(e.Size)
	}
	if at != len(all) {
		t.Fatalf("events cover %d of %d bytes", at, len(all))
	}
}

func TestHeadersPackedBehindSkippedDataAreCopied(t *testing.T) {
	var b bytes.Buffer
	f := xhttp2.NewFramer(&b, nil)
	f.WriteData(1, false, bytes.Repeat([]byte("x"), 10000))
	f.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte("\x88"), EndHeaders: true, EndStream: true})
	f.WriteDataPadded(3, false, bytes.Repeat([]byte("y"), 3000), make([]byte, 7))
	f.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte("\x89"), EndHeaders: true, EndStream: true})
	stream := b.Bytes()

	c := &Conn{Cfg: Config{ChunkSize: 4096, CaptureLimit: 1, MaxFrameCopy: 64 << 10}}
	c.Dirs[event.Ingress].w.mode = H2 // as after a preface
	c.Dirs[event.Ingress].Bytes = 1 << 30
	c.Dirs[event.Ingress].Captured = 1 << 30
	evs := c.Syscall(event.Ingress, [][]byte{stream}, false)
	checkEvents(t, evs, [][]byte{stream})
	type run struct {
		captured, size int
		skip           event.SkipReason
	}
	var got []run
	for _, e := range evs {
		got = append(got, run{len(e.Payload), int(e.Size), e.Skip})
	}
	want := []run{
		{9, 9 + 10000, event.SkipH2Data},                    // DATA header, payload skipped
		{9 + 1 + 9 + 1, 9 + 1 + 9 + 3008, event.SkipH2Data}, // HEADERS, DATA header + pad length
		{9 + 1, 9 + 1, event.SkipNone},                      // HEADERS
	}
	if !slices.Equal(got, want) {
		t.Fatalf("runs %+v, want %+v", got, want)
	}
}

func TestWalkerFollowsFramesAcrossSplitsWithoutChangingRecords(t *testing.T) {
	for seed := range uint64(20) {
		for _, limit := range []uint64{0, 1, 50000} {
			t.Run(fmt.Sprintf("seed%d/limit%d", seed, limit), func(t *testing.T) {
				cv := genConversation(seed, 30)
				c := compare(t, cv, Config{ChunkSize: 4096, CaptureLimit: limit, MaxFrameCopy: 64 << 10},
					[]byte{byte(seed), byte(seed * 7), 3, 200, 17, byte(limit)})
				if limit == 1 && c.Dirs[0].Captured >= c.Dirs[0].Bytes {
					t.Fatalf("nothing skipped past a 1-byte budget: %+v", c.Dirs[0])
				}
			})
		}
	}
}

func TestUnknownProtocolKeepsFirstChunkPastBudget(t *testing.T) {
	c := &Conn{Cfg: Config{ChunkSize: 100, CaptureLimit: 150, MaxFrameCopy: 64 << 10}}
	b := bytes.Repeat([]byte("z"), 400)
	evs := c.Syscall(event.Egress, [][]byte{b}, false)
	if len(evs) != 2 || len(evs[0].Payload) != 100 || len(evs[1].Payload) != 50 || evs[1].Skip != event.SkipBudget || evs[1].Size != 300 {
		t.Fatalf("first syscall events %+v", evs)
	}
	evs = c.Syscall(event.Egress, [][]byte{b}, false)
	if len(evs) != 1 || len(evs[0].Payload) != 100 || evs[0].Skip != event.SkipBudget || c.Counts.CaptureLimit != 2 {
		t.Fatalf("second syscall events %+v counts %+v", evs, c.Counts)
	}
}

func TestHTTP1HintSkipsOnlyTheBodyRange(t *testing.T) {
	c := &Conn{Cfg: Config{ChunkSize: 4096, CaptureLimit: 10, MaxFrameCopy: 64 << 10}, Hint: &Hint{}}
	c.Hint.BodyFrom[event.Ingress], c.Hint.BodyTo[event.Ingress] = 20, 10020
	b := bytes.Repeat([]byte("b"), 10050)
	evs := c.Syscall(event.Ingress, [][]byte{b[:5000], b[5000:]}, true)
	checkEvents(t, evs, [][]byte{b[:5000], b[5000:]})
	if len(evs) != 2 || len(evs[0].Payload) != 20 || evs[0].Size != 10020 || evs[0].Skip != event.SkipBody ||
		len(evs[1].Payload) != 30 || evs[1].Skip != event.SkipNone {
		t.Fatalf("events %+v", evs)
	}
}

func TestNonsenseFrameFallsBackToBudget(t *testing.T) {
	c := &Conn{Cfg: Config{ChunkSize: 4096, CaptureLimit: 1 << 20, MaxFrameCopy: 64 << 10}}
	c.Syscall(event.Egress, [][]byte{[]byte(Preface)}, false)
	// A PING on stream 5 cannot be: the walker is out of step.
	c.Syscall(event.Egress, [][]byte{{0, 0, 8, 6, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8}}, false)
	if c.Dirs[0].Mode() != Opaque || c.Counts.H2Desync != 1 {
		t.Fatalf("mode %d counts %+v", c.Dirs[0].Mode(), c.Counts)
	}
}

func TestOversizedHeadersFrameIsATypedGap(t *testing.T) {
	var b bytes.Buffer
	f := xhttp2.NewFramer(&b, nil)
	f.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 1, BlockFragment: make([]byte, 20000), EndHeaders: true})
	c := &Conn{Cfg: Config{ChunkSize: 4096, MaxFrameCopy: 16384}}
	c.Dirs[0].w.mode = H2
	evs := c.Syscall(event.Egress, [][]byte{b.Bytes()}, false)
	if len(evs) != 1 || len(evs[0].Payload) != 9 || evs[0].Skip != event.SkipFrameLimit || c.Counts.H2FrameLimit != 1 || c.Dirs[0].Mode() != H2 {
		t.Fatalf("events %+v counts %+v", evs, c.Counts)
	}
}

// FuzzWalkerReducedStreamParsesAlike: whatever the conversation, capture
// budget and the points where syscalls and iovecs split it, the HTTP/2
// parser decodes the same records from what the walker copies (plus the
// sizes of what it skips) as from every byte.
func FuzzWalkerReducedStreamParsesAlike(f *testing.F) {
	f.Add(uint64(1), uint8(20), uint32(1), []byte{1, 2, 3})
	f.Add(uint64(7), uint8(40), uint32(0), []byte{200, 100, 7, 9, 250})
	f.Add(uint64(3), uint8(10), uint32(30000), []byte{})
	f.Fuzz(func(t *testing.T, seed uint64, n uint8, limit uint32, cuts []byte) {
		cv := genConversation(seed, int(n%50))
		compare(t, cv, Config{ChunkSize: 4096, CaptureLimit: uint64(limit), MaxFrameCopy: 64 << 10}, cuts)
	})
}

// FuzzWalkerKeepsTheEventContract feeds arbitrary bytes, split at
// arbitrary points, under arbitrary knobs: the walker never panics, each
// syscall's events cover exactly its bytes with payloads equal to them, a
// suffix always has a reason, and the connection's offsets add up.
func FuzzWalkerKeepsTheEventContract(f *testing.F) {
	f.Add([]byte(Preface+"\x00\x00\x00\x04\x00\x00\x00\x00\x00"), []byte{3, 9, 1}, uint16(100), uint16(10), false)
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), []byte{}, uint16(0), uint16(0), true)
	f.Fuzz(func(t *testing.T, b, cuts []byte, chunk, limit uint16, hint bool) {
		c := &Conn{Cfg: Config{ChunkSize: uint32(chunk%MaxChunkSize) + 1, CaptureLimit: uint64(limit), MaxFrameCopy: 16384}}
		if hint {
			c.Hint = &Hint{BodyFrom: [2]uint64{uint64(limit), 3}, BodyTo: [2]uint64{uint64(limit) * 3, 50}}
		}
		sp := &splitter{b: cuts}
		var total [2]uint64
		dir := event.Egress
		sp.syscalls(b, func(segs [][]byte, vectored bool) {
			evs := c.Syscall(dir, segs, vectored)
			checkEvents(t, evs, segs)
			for _, s := range segs {
				total[dir] += uint64(len(s))
			}
			if evs[0].Offset+uint64(len(bytes.Join(segs, nil))) != total[dir] {
				t.Fatalf("syscall at %d does not end at the stream offset %d", evs[0].Offset, total[dir])
			}
			dir ^= 1
		})
		for d := range c.Dirs {
			if c.Dirs[d].Bytes != total[d] || c.Dirs[d].Captured > total[d] {
				t.Fatalf("dir %d: state %+v after %d bytes", d, c.Dirs[d], total[d])
			}
		}
	})
}
