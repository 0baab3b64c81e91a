package http2

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// truth is what a stream's record must say.
type truth struct {
	method, path string
	status       int
	grpc         int // -1: none
	reset        bool
}

type write struct {
	side Side
	b    []byte
}

// churn builds a connection of n streams, four at a time, whose headers
// churn a small HPACK table: the server announces a 256-byte table (the
// client's encoder emits a size update), header values change and repeat,
// some are larger than the table, and responses mix DATA+END_STREAM,
// trailers after DATA, trailers-only errors and client resets. Each
// batch of frames is one write, as Go's stacks pack them.
func churn(seed uint64, n int) ([]write, map[uint32]truth) {
	r := rand.New(rand.NewPCG(seed, 1))
	c, s := newWire(true), newWire(false)
	var ws []write
	flush := func(w *wire, side Side) {
		if b := w.take(); len(b) > 0 {
			ws = append(ws, write{side, b})
		}
	}
	_ = s.fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 256})
	flush(s, Server)
	c.enc.SetMaxDynamicTableSizeLimit(256)
	c.enc.SetMaxDynamicTableSize(256)
	want := map[uint32]truth{}
	statuses := []int{200, 200, 404, 429, 503}
	for i := 0; i < n; i += 4 {
		var ids []uint32
		for k := i; k < min(i+4, n); k++ {
			id := uint32(2*k + 1)
			ids = append(ids, id)
			path := fmt.Sprintf("/svc.Method%d/call%d", k%5, k)
			kv := []string{":method", "POST", ":scheme", "http", ":authority", "svc:80", ":path", path,
				"content-type", "application/grpc", "x-tenant", strconv.Itoa(r.IntN(6))}
			if r.IntN(10) == 0 {
				kv = append(kv, "x-big", strings.Repeat("b", 300+r.IntN(100))) // larger than the table
			}
			end := r.IntN(3) == 0
			c.headers(id, end, kv...)
			if !end {
				_ = c.fr.WriteData(id, true, []byte("\x00\x00\x00\x00\x05hello"))
			}
			want[id] = truth{method: "POST", path: path, grpc: -1}
		}
		flush(c, Client)
		r.Shuffle(len(ids), func(a, b int) { ids[a], ids[b] = ids[b], ids[a] })
		for _, id := range ids {
			w := want[id]
			st := statuses[r.IntN(len(statuses))]
			w.status = st
			switch r.IntN(4) {
			case 0: // trailers-only error
				w.grpc = 10 + r.IntN(4)
				s.headers(id, true, ":status", strconv.Itoa(st), "content-type", "application/grpc",
					"grpc-status", strconv.Itoa(w.grpc), "grpc-message", "aborted "+strconv.Itoa(int(id)))
			case 1: // DATA then trailers
				w.grpc = r.IntN(3)
				s.headers(id, false, ":status", strconv.Itoa(st), "content-type", "application/grpc",
					"x-served-by", "pod-"+strconv.Itoa(r.IntN(3)))
				_ = s.fr.WriteData(id, false, make([]byte, 1+r.IntN(2000)))
				s.headers(id, true, "grpc-status", strconv.Itoa(w.grpc))
			case 2: // body ending with DATA+END_STREAM, no trailers
				s.headers(id, false, ":status", strconv.Itoa(st))
				_ = s.fr.WriteData(id, true, make([]byte, r.IntN(3000)))
			case 3: // response headers, then the client aborts
				s.headers(id, false, ":status", strconv.Itoa(st), "content-type", "application/grpc")
				flush(s, Server)
				_ = c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
				flush(c, Client)
				w.reset = true
			}
			want[id] = w
		}
		flush(s, Server)
	}
	return ws, want
}

// replay feeds the writes, delivering bytes [from, from+n) of side gap as
// skipped.
func replay(p *Parser, ws []write, gap Side, from, n uint64) {
	var off [2]uint64
	for i, w := range ws {
		ts := event.Timestamp(10 * (i + 1))
		b, o := w.b, off[w.side]
		off[w.side] += uint64(len(b))
		for len(b) > 0 {
			k := uint64(len(b))
			switch {
			case w.side == gap && o >= from && o < from+n:
				k = min(k, from+n-o)
				p.Skip(w.side, k, ts, ts+1)
			default:
				if w.side == gap && o < from {
					k = min(k, from-o)
				}
				p.Data(w.side, b[:k], ts, ts+1)
			}
			b, o = b[k:], o+k
		}
	}
}

// agree checks records against the truth: one per stream at most, and
// every field that says who the exchange was and how it ended is right.
func agree(t *testing.T, recs []*record.Record, want map[uint32]truth, what string) {
	t.Helper()
	seen := map[uint32]bool{}
	for _, r := range recs {
		w, ok := want[r.StreamID]
		if !ok || seen[r.StreamID] {
			t.Fatalf("%s: record for stream %d (known %v, repeated %v)", what, r.StreamID, ok, seen[r.StreamID])
		}
		seen[r.StreamID] = true
		got := truth{method: r.Method, path: r.Path, status: r.Status, grpc: r.GRPCStatus, reset: r.Reset}
		if got != w {
			t.Fatalf("%s: stream %d recorded as %+v, truth %+v", what, r.StreamID, got, w)
		}
	}
}

func TestChurnIsExactWithoutGaps(t *testing.T) {
	ws, want := churn(1, 400)
	h := newHarness()
	replay(h.p, ws, Client, 1<<62, 0)
	h.p.Close(1 << 40)
	h.want(t, len(want))
	agree(t, h.recs, want, "no gap")
	if h.st.HTTP2Dropped.Load() != 0 || h.st.HPACKStateLost.Load() != 0 {
		t.Fatalf("dropped %d hpack lost %d", h.st.HTTP2Dropped.Load(), h.st.HPACKStateLost.Load())
	}
}

// TestGapAnywhereNeverMisattributes cuts gaps at many positions of either
// direction: in frame headers (framing lost), in header blocks (HPACK state
// lost) and in DATA payloads (harmless). No record may then disagree with
// the truth, and a gap inside DATA only must lose nothing.
func TestGapAnywhereNeverMisattributes(t *testing.T) {
	ws, want := churn(2, 60)
	var total [2]uint64
	for _, w := range ws {
		total[w.side] += uint64(len(w.b))
	}
	runs := 0
	for _, side := range []Side{Client, Server} {
		for _, n := range []uint64{1, 9, 60, 700} {
			for from := uint64(0); from < total[side]; from += 1 + from%61 {
				h := newHarness()
				replay(h.p, ws, side, from, n)
				h.p.Close(1 << 40)
				agree(t, h.recs, want, fmt.Sprintf("side %d gap [%d,+%d)", side, from, n))
				runs++
			}
		}
	}
	t.Logf("%d gapped replays agree with the truth", runs)
}

// TestSkippedDataPayloadLosesNothing: when only DATA payload bytes are
// skipped (what the kernel's frame walker sends size-only), the records are
// exactly those of the full capture.
func TestSkippedDataPayloadLosesNothing(t *testing.T) {
	ws, want := churn(3, 80)
	h := newHarness()
	preface := false
	for i, w := range ws {
		ts := event.Timestamp(10 * (i + 1))
		b := w.b
		if w.side == Client && !preface {
			preface = true
			h.p.Data(Client, b[:len(Preface)], ts, ts+1)
			b = b[len(Preface):]
		}
		for len(b) >= frameHeaderLen {
			l := int(b[0])<<16 | int(b[1])<<8 | int(b[2])
			h.p.Data(w.side, b[:frameHeaderLen], ts, ts+1)
			if b[3] == frameData && l > 0 {
				h.p.Skip(w.side, uint64(l), ts, ts+1)
			} else if l > 0 {
				h.p.Data(w.side, b[frameHeaderLen:frameHeaderLen+l], ts, ts+1)
			}
			b = b[frameHeaderLen+l:]
		}
	}
	h.p.Close(1 << 40)
	h.want(t, len(want))
	agree(t, h.recs, want, "DATA skipped")
	for _, r := range h.recs {
		if r.Incomplete {
			t.Fatalf("incomplete after DATA-only skips: %+v", *r)
		}
	}
}

// TestGRPCStatusStaysWithItsStream: interleaved streams end in every way a
// gRPC call can; each grpc-status lands on the stream that carried it.
func TestGRPCStatusStaysWithItsStream(t *testing.T) {
	h := newHarness()
	c, s := newWire(true), newWire(false)
	for _, id := range []uint32{1, 3, 5, 7} {
		c.headers(id, false, ":method", "POST", ":scheme", "http", ":path", "/pkg.S/M"+strconv.Itoa(int(id)), "content-type", "application/grpc")
	}
	h.feed(Client, c.take())
	s.headers(3, false, ":status", "200", "content-type", "application/grpc")
	s.headers(1, true, ":status", "200", "content-type", "application/grpc", "grpc-status", "10") // trailers-only Aborted
	_ = s.fr.WriteData(3, false, []byte("\x00\x00\x00\x00\x01x"))
	s.headers(5, false, ":status", "200", "content-type", "application/grpc")
	s.headers(3, true, "grpc-status", "0")
	h.feed(Server, s.take())
	_ = c.fr.WriteRSTStream(5, http2.ErrCodeCancel) // aborted by the client
	h.feed(Client, c.take())
	s.headers(7, true, ":status", "503")   // not gRPC-shaped: no grpc-status
	s.headers(5, true, "grpc-status", "1") // after the reset: ignored
	h.feed(Server, s.take())
	h.want(t, 4)
	got := map[uint32]string{}
	for _, r := range h.recs {
		got[r.StreamID] = fmt.Sprintf("%s %d %d %v", r.Path, r.Status, r.GRPCStatus, r.Reset)
	}
	want := map[uint32]string{1: "/pkg.S/M1 200 10 false", 3: "/pkg.S/M3 200 0 false", 5: "/pkg.S/M5 200 -1 true", 7: "/pkg.S/M7 503 -1 false"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}
