package http1

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// fake is request text that bodies carry in these tests: it must never
// become a record.
const fake = "GET /fake HTTP/1.1\r\nHost: evil\r\n\r\n"

// syscall is one captured syscall of a scripted connection.
type syscall struct {
	side Side
	data string
}

// script is a keep-alive connection whose bodies are full of request and
// status-line look-alikes, some at syscall starts, and the record each
// exchange must give (keyed by path).
func script() ([]syscall, map[string]record.Record) {
	var sc []syscall
	want := map[string]record.Record{}
	add := func(path, method string, status int, reqBody, respBody uint64) {
		want[path] = record.Record{Method: method, Path: path, Status: status, ReqBodyBytes: reqBody, RespBodyBytes: respBody}
	}
	for i := 0; i < 6; i++ {
		p := fmt.Sprintf("/e%d", i)
		// GET with a body of request text, the second half a syscall
		// of its own that starts with a request line.
		head := "HTTP/1.1 200 OK\r\nContent-Length: " + fmt.Sprint(2*len(fake)) + "\r\n\r\n"
		sc = append(sc, syscall{Request, "GET " + p + "a HTTP/1.1\r\nHost: h\r\n\r\n"},
			syscall{Response, head + fake}, syscall{Response, fake})
		add(p+"a", "GET", 200, 0, uint64(2*len(fake)))
		// POST whose body, in two syscalls, is request text.
		sc = append(sc, syscall{Request, "POST " + p + "b HTTP/1.1\r\nContent-Length: " + fmt.Sprint(2*len(fake)) + "\r\n\r\n"},
			syscall{Request, fake}, syscall{Request, fake},
			syscall{Response, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"})
		add(p+"b", "POST", 201, uint64(2*len(fake)), 0)
		// Chunked response whose chunks hold a status line and a request.
		c1 := "HTTP/1.1 200 OK\r\n\r\n"
		chunked := fmt.Sprintf("%x\r\n%s\r\n", len(c1), c1)
		chunked2 := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(fake), fake)
		sc = append(sc, syscall{Request, "GET " + p + "c HTTP/1.1\r\n\r\n"},
			syscall{Response, "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked},
			syscall{Response, chunked2})
		add(p+"c", "GET", 202, 0, uint64(len(chunked)+len(chunked2)))
		// HEAD (length without body) and 204.
		sc = append(sc, syscall{Request, "HEAD " + p + "d HTTP/1.1\r\n\r\n"},
			syscall{Response, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"},
			syscall{Request, "DELETE " + p + "e HTTP/1.1\r\n\r\n"},
			syscall{Response, "HTTP/1.1 204 No Content\r\n\r\n"})
		add(p+"d", "HEAD", 200, 0, 0)
		add(p+"e", "DELETE", 204, 0, 0)
	}
	return sc, want
}

// play feeds the script, delivering bytes [gapFrom, gapFrom+gapLen) of side
// gapSide as skipped. Each syscall gets its own timestamps.
func play(p *Parser, sc []syscall, gapSide Side, gapFrom, gapLen uint64) {
	var off [2]uint64
	for i, s := range sc {
		ts := event.Timestamp(10 * (i + 1))
		b := []byte(s.data)
		o := off[s.side]
		off[s.side] += uint64(len(b))
		for len(b) > 0 {
			inGap := s.side == gapSide && o >= gapFrom && o < gapFrom+gapLen
			n := uint64(len(b))
			switch {
			case inGap:
				n = min(n, gapFrom+gapLen-o)
				p.Skip(s.side, n, ts, ts+1)
			default:
				if s.side == gapSide && o < gapFrom {
					n = min(n, gapFrom-o)
				}
				p.Data(s.side, b[:n], ts, ts+1)
			}
			b, o = b[n:], o+n
		}
	}
}

// check verifies every record against the script: no look-alike, method
// and status as sent, sizes exact unless incomplete.
func check(t *testing.T, recs []*record.Record, want map[string]record.Record, what string) {
	t.Helper()
	for _, r := range recs {
		if r.Method == "" && r.Path == "" {
			if !r.Incomplete {
				t.Errorf("%s: a record without request must be incomplete: %+v", what, *r)
			}
			if r.Status != 0 && r.Status != 200 && r.Status != 201 && r.Status != 202 && r.Status != 204 {
				t.Errorf("%s: invented status %d", what, r.Status)
			}
			continue
		}
		w, ok := want[r.Path]
		if !ok {
			t.Fatalf("%s: invented record %s %s (status %d)", what, r.Method, r.Path, r.Status)
		}
		if r.Method != w.Method || (r.Status != 0 && r.Status != w.Status) {
			t.Fatalf("%s: %s %s status %d, want %s status %d", what, r.Method, r.Path, r.Status, w.Method, w.Status)
		}
		if !r.Incomplete && (r.Status != w.Status || r.ReqBodyBytes != w.ReqBodyBytes || r.RespBodyBytes != w.RespBodyBytes) {
			t.Fatalf("%s: complete record %+v differs from %+v", what, *r, w)
		}
	}
}

func TestScriptIsExactWithoutGaps(t *testing.T) {
	sc, want := script()
	h := newHarness(t)
	play(h.p, sc, Request, 1<<62, 0)
	h.p.Close(1 << 40)
	h.want(t, len(want))
	check(t, h.recs, want, "no gap")
	for _, r := range h.recs {
		if r.Incomplete {
			t.Errorf("incomplete: %+v", *r)
		}
	}
}

// TestGapAtEveryPositionNeverInvents cuts a gap at every position of
// either direction (several lengths): whatever was lost, no record names a
// request that was not sent or a status that was not its own, and the
// connection is back in sync for its last exchanges.
func TestGapAtEveryPositionNeverInvents(t *testing.T) {
	sc, want := script()
	var total [2]uint64
	for _, s := range sc {
		total[s.side] += uint64(len(s.data))
	}
	for _, side := range []Side{Request, Response} {
		for _, gapLen := range []uint64{1, 5, 40, 300} {
			// The gaps stay in the first two thirds: the last exchanges
			// must then be recorded exactly.
			for from := uint64(0); from < total[side]*2/3; from++ {
				h := newHarness(t)
				play(h.p, sc, side, from, gapLen)
				h.p.Close(1 << 40)
				what := fmt.Sprintf("side %d gap [%d,+%d)", side, from, gapLen)
				check(t, h.recs, want, what)
				last := map[string]bool{}
				for _, r := range h.recs {
					if !r.Incomplete {
						last[r.Path] = true
					}
				}
				if !last["/e5d"] || !last["/e5e"] {
					t.Fatalf("%s: not back in sync by the last exchanges: %d records", what, len(h.recs))
				}
			}
		}
	}
}

// TestMidStreamStartsAtEveryPositionNeverInvents starts a mid-stream parser
// at every syscall of the script (as a daemon started at that moment would):
// no invented record, and the last exchanges are recorded.
func TestMidStreamStartsAtEveryPositionNeverInvents(t *testing.T) {
	sc, want := script()
	for k := range sc {
		for _, cut := range []int{0, 1, 7} {
			if cut >= len(sc[k].data) {
				continue
			}
			var recs []*record.Record
			st := &record.Stats{}
			p := NewMidStream(record.DefaultLimits(), st, func(r *record.Record) { recs = append(recs, r) }, [2]Cursor{})
			rest := append([]syscall{{sc[k].side, sc[k].data[cut:]}}, sc[k+1:]...)
			play(p, rest, Request, 1<<62, 0)
			p.Close(1 << 40)
			what := fmt.Sprintf("start at syscall %d+%d", k, cut)
			check(t, recs, want, what)
			if k < len(sc)-12 {
				got := map[string]bool{}
				for _, r := range recs {
					got[r.Path] = !r.Incomplete
				}
				if !got["/e5e"] {
					t.Fatalf("%s: last exchange not recorded (%d records)", what, len(recs))
				}
			}
		}
	}
}

// TestBodyTextDuringMidStreamStartIsDiscarded is issue 14's report: a
// parser started while a body full of request lines is in flight reports
// none of them, counts them, and records the next exchange.
func TestBodyTextDuringMidStreamStartIsDiscarded(t *testing.T) {
	var recs []*record.Record
	st := &record.Stats{}
	p := NewMidStream(record.DefaultLimits(), st, func(r *record.Record) { recs = append(recs, r) }, [2]Cursor{})
	// The client's upload, full of request lines, before the server
	// speaks: no turn was taken.
	for i := 0; i < 8; i++ {
		ts := event.Timestamp(10 * (i + 1))
		p.Data(Request, []byte(fake), ts, ts+1)
	}
	// The server's response body, equally full of request lines.
	for i := 0; i < 64; i++ {
		ts := event.Timestamp(1000 + 10*i)
		p.Data(Response, []byte(fake), ts, ts+1)
	}
	if len(recs) != 0 {
		t.Fatalf("invented %d records: %+v", len(recs), *recs[0])
	}
	if st.HTTP1Discarded.Load() == 0 || st.HTTP1UnsyncedBytes.Load() == 0 {
		t.Errorf("discarded %d unsynced bytes %d", st.HTTP1Discarded.Load(), st.HTTP1UnsyncedBytes.Load())
	}
	p.Data(Response, []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), 2000, 2001)
	p.Data(Request, []byte("GET /real HTTP/1.1\r\n\r\n"), 2010, 2011)
	p.Data(Response, []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), 2020, 2021)
	if len(recs) != 1 || recs[0].Path != "/real" || recs[0].Status != 200 || recs[0].Incomplete || recs[0].RespBodyBytes != 2 {
		t.Fatalf("next exchange: %d records %+v", len(recs), recs)
	}
}

// TestResyncRefusesAmbiguousPairing: after the response direction lost its
// place, a pipelined pair of requests leaves two candidates for the next
// response, so it is not paired; the next turn flushes them as requests
// whose responses were lost, and pairing resumes.
func TestResyncRefusesAmbiguousPairing(t *testing.T) {
	h := newHarness(t)
	h.req("GET /1 HTTP/1.1\r\n\r\n")
	h.resp("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
	h.p.Skip(Response, 500, 25, 26) // past the body: lost place
	h.req("GET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n")
	h.resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	h.req("GET /4 HTTP/1.1\r\n\r\n")
	h.resp("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
	got := summary(h.recs)
	want := "GET /1 200\nGET /2 0 inc\nGET /3 0 inc\nGET /4 404\n"
	if got != want {
		t.Fatalf("got\n%swant\n%s", got, want)
	}
	if h.st.HTTP1LostResponses.Load() != 2 || h.st.HTTP1Discarded.Load() != 2 {
		t.Errorf("lost responses %d discarded %d", h.st.HTTP1LostResponses.Load(), h.st.HTTP1Discarded.Load())
	}
}

func summary(recs []*record.Record) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%s %s %d", r.Method, r.Path, r.Status)
		if r.Incomplete {
			b.WriteString(" inc")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// TestBodyHintsReportKnownLengthBodies: bodies (and chunks) of at least the
// threshold are reported as stream-offset ranges, and skipping exactly
// those ranges (as the kernel would) keeps the records exact.
func TestBodyHintsReportKnownLengthBodies(t *testing.T) {
	h := newHarness(t)
	type rng struct {
		s        Side
		from, to uint64
	}
	var hints []rng
	h.p.SetBodyHint(1000, func(s Side, from, to uint64, _ bool) { hints = append(hints, rng{s, from, to}) })
	reqHead := "POST /up HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"
	h.req(reqHead)
	h.p.Skip(Request, 5000, 20, 21)
	respHead := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	h.resp(respHead + "fa0\r\n") // 4000-byte chunk
	h.p.Skip(Response, 4000, 30, 31)
	h.resp("\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n") // 16 bytes: below the threshold
	want := []rng{{Request, uint64(len(reqHead)), uint64(len(reqHead)) + 5000},
		{Response, uint64(len(respHead) + 5), uint64(len(respHead)+5) + 4000}}
	if fmt.Sprint(hints) != fmt.Sprint(want) {
		t.Fatalf("hints %v, want %v", hints, want)
	}
	h.want(t, 1)
	if r := h.recs[0]; r.Incomplete || r.ReqBodyBytes != 5000 || r.Status != 200 || r.RespBodyBytes != uint64(5+4000+2+4+16+2+5) {
		t.Fatalf("%+v", *r)
	}
	if h.p.Offset(Request) != uint64(len(reqHead))+5000 {
		t.Errorf("request offset %d", h.p.Offset(Request))
	}
}

// TestNoBodyHintsWhileUnsynchronised: a direction hunting for its place
// reports nothing (it does not know where bodies are).
func TestNoBodyHintsWhileUnsynchronised(t *testing.T) {
	var n int
	p := NewMidStream(record.DefaultLimits(), &record.Stats{}, func(*record.Record) {}, [2]Cursor{})
	p.SetBodyHint(1, func(Side, uint64, uint64, bool) { n++ })
	p.Data(Response, []byte("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"), 1, 2)
	p.Data(Request, []byte("POST /x HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"), 3, 4) // the server spoke first: a turn
	if n != 1 {
		t.Fatalf("hints %d, want 1 (only the request accepted by turn-taking)", n)
	}
}

// TestResyncPairsByTimeWhenDeliveryIsLate: the capture layer may hold one
// direction back (waiting for a lost event) while the other keeps being
// delivered. After the response direction lost its place, three requests
// arrive before their responses; the syscalls' times still say which
// response answers which request.
func TestResyncPairsByTimeWhenDeliveryIsLate(t *testing.T) {
	h := newHarness(t)
	h.p.Data(Request, []byte("GET /0 HTTP/1.1\r\n\r\n"), 1, 2)
	h.p.Data(Response, []byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"), 3, 4)
	h.p.Skip(Response, 500, 4, 5) // past the body: place lost
	for i, ts := range []event.Timestamp{10, 30, 50} {
		h.p.Data(Request, []byte(fmt.Sprintf("GET /%d HTTP/1.1\r\n\r\n", i+1)), ts, ts+1)
	}
	for i, ts := range []event.Timestamp{20, 40, 60} {
		h.p.Data(Response, []byte(fmt.Sprintf("HTTP/1.1 %d OK\r\nContent-Length: 0\r\n\r\n", 201+i)), ts, ts+1)
	}
	got := summary(h.recs)
	// The hole's bytes moved before /1 was sent, so the next response
	// answers /1, and so on by time.
	want := "GET /0 200\nGET /1 201\nGET /2 202\nGET /3 203\n"
	if got != want {
		t.Fatalf("got\n%swant\n%s", got, want)
	}
}
