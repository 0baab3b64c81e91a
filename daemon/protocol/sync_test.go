package protocol

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weirnet/weir/bpf/event"
)

const fakeReq = "GET /fake HTTP/1.1\r\nHost: evil\r\n\r\n"

// TestStartNotSeenBodyInFlightInventsNothing is issue 14's daemon-restart
// report, for each role the capture layer may know: a response body full of
// request lines is in flight when the parser starts at offset 0 of a
// connection whose start was not seen. Nothing is invented, and the next
// exchanges on the connection are recorded.
func TestStartNotSeenBodyInFlightInventsNothing(t *testing.T) {
	for _, role := range []event.Role{event.RoleServer, event.RoleClient, event.RoleUnknown} {
		t.Run(role.String(), func(t *testing.T) {
			c, recs, st := newTestConn(t, role, WithStartSeen(false))
			// Which direction is the server's: for an unknown role the
			// monitored side is taken to be the server.
			resp, req := event.Egress, event.Ingress
			if role == event.RoleClient {
				resp, req = event.Ingress, event.Egress
			}
			ts := event.Timestamp(0)
			data := func(d event.Direction, s string) {
				ts += 10
				c.Data(d, []byte(s), ts, ts+1)
			}
			for i := 0; i < 64; i++ {
				data(resp, fakeReq)
			}
			if len(*recs) != 0 || c.Kind() == KindHTTP1 && st.HTTP1Resyncs.Load() != 0 {
				t.Fatalf("after the body: %d records, kind %s", len(*recs), c.Kind())
			}
			for i := 0; i < 3; i++ {
				data(req, fmt.Sprintf("GET /real%d HTTP/1.1\r\nHost: svc\r\n\r\n", i))
				data(resp, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
			c.Close(ts + 1)
			var got []string
			for _, r := range *recs {
				got = append(got, fmt.Sprintf("%s %s %d %v", r.Method, r.Path, r.Status, r.Incomplete))
			}
			want := "GET /real0 200 false|GET /real1 200 false|GET /real2 200 false"
			if strings.Join(got, "|") != want {
				t.Fatalf("records %q, want %q", got, want)
			}
		})
	}
}

// TestStartSeenOffsetZeroIsAStart: with the start seen, the first bytes
// are a message start and are parsed at once.
func TestStartSeenOffsetZeroIsAStart(t *testing.T) {
	c, recs, _ := newTestConn(t, event.RoleServer, WithStartSeen(true))
	c.Data(event.Ingress, []byte("GET /first HTTP/1.1\r\n\r\n"), 1, 2)
	c.Data(event.Egress, []byte("HTTP/1.1 204 No Content\r\n\r\n"), 3, 4)
	if len(*recs) != 1 || (*recs)[0].Path != "/first" {
		t.Fatalf("%+v", *recs)
	}
}

// TestStartNotSeenHTTP2PrefaceIsNotTrusted: a connection whose start was
// not seen cannot prove that bytes looking like the preface are one, and
// its HPACK state is unknown: no record.
func TestStartNotSeenHTTP2PrefaceIsNotTrusted(t *testing.T) {
	cs := load(t, "go-h2c-1.cap")
	recs, _, _ := feed(t, cs, WithStartSeen(false))
	if len(recs) != 0 {
		t.Fatalf("%d records from a connection whose start was not seen: %s", len(recs), summary(recs))
	}
	// The same bytes with the start seen are exact.
	if recs, _, _ = feed(t, cs); len(recs) == 0 {
		t.Fatal("no records with the start seen")
	}
}

type hint struct {
	dir      event.Direction
	from, to uint64
}

type fakeControl struct {
	http1 int
	hints []hint
	fail  bool
}

func (f *fakeControl) HTTP1() error {
	f.http1++
	return nil
}

func (f *fakeControl) SkipBody(dir event.Direction, from, to uint64) error {
	if f.fail {
		return fmt.Errorf("map full")
	}
	f.hints = append(f.hints, hint{dir, from, to})
	return nil
}

// TestCaptureControlGetsHTTP1AndBodyRanges: the capture control hears once,
// with the first large body, that the connection is HTTP/1 and gets each
// large body's stream-offset range in the direction that carries it;
// skipping exactly those ranges keeps the records exact. Refused hints are
// counted, and a connection without large bodies gets no call.
func TestCaptureControlGetsHTTP1AndBodyRanges(t *testing.T) {
	ctl := &fakeControl{}
	c, recs, st := newTestConn(t, event.RoleClient, WithCaptureControl(ctl, 0))
	reqHead := "PUT /blob HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
	c.Data(event.Egress, []byte(reqHead+"abc"), 1, 2)
	c.Skip(event.Egress, 100000-3, 3, 4)
	respHead := "HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n"
	c.Data(event.Ingress, []byte(respHead), 5, 6)
	c.Skip(event.Ingress, 20000, 7, 8)
	c.Data(event.Egress, []byte("GET /small HTTP/1.1\r\n\r\n"), 9, 10)
	c.Data(event.Ingress, []byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("x", 100)), 11, 12)
	want := []hint{{event.Egress, uint64(len(reqHead)), uint64(len(reqHead)) + 100000},
		{event.Ingress, uint64(len(respHead)), uint64(len(respHead)) + 20000}}
	if ctl.http1 != 1 || fmt.Sprint(ctl.hints) != fmt.Sprint(want) {
		t.Fatalf("http1 %d hints %v, want 1 and %v", ctl.http1, ctl.hints, want)
	}
	if len(*recs) != 2 || (*recs)[0].Incomplete || (*recs)[0].ReqBodyBytes != 100000 || (*recs)[0].RespBodyBytes != 20000 {
		t.Fatalf("%s", summary(*recs))
	}
	if st.BodyHints.Load() != 2 {
		t.Errorf("hints counted %d", st.BodyHints.Load())
	}
	ctl.fail = true
	c.Data(event.Egress, []byte(reqHead), 13, 14)
	// A connection without large bodies is left to the capture budget.
	small := &fakeControl{}
	c2, _, _ := newTestConn(t, event.RoleClient, WithCaptureControl(small, 0))
	c2.Data(event.Egress, []byte("GET /s HTTP/1.1\r\n\r\n"), 1, 2)
	c2.Data(event.Ingress, []byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"), 3, 4)
	if small.http1 != 0 || len(small.hints) != 0 {
		t.Errorf("small exchanges: http1 %d hints %v", small.http1, small.hints)
	}
	if st.BodyHintErrors.Load() != 1 {
		t.Errorf("refused hints counted %d", st.BodyHintErrors.Load())
	}
}

// TestCaptureControlOffsetsCountFromTheStreamStart: offsets are stream
// offsets even when detection held the first bytes and the connection's
// other direction spoke first.
func TestCaptureControlOffsetsCountFromTheStreamStart(t *testing.T) {
	ctl := &fakeControl{}
	c, _, _ := newTestConn(t, event.RoleServer, WithCaptureControl(ctl, 1))
	c.Data(event.Ingress, []byte("PO"), 1, 2) // detection needs more
	c.Data(event.Ingress, []byte("ST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"), 3, 4)
	c.Data(event.Egress, []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), 5, 6)
	head := len("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
	rhead := len("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
	want := []hint{{event.Ingress, uint64(head), uint64(head) + 10}, {event.Egress, uint64(rhead), uint64(rhead) + 5}}
	if fmt.Sprint(ctl.hints) != fmt.Sprint(want) {
		t.Fatalf("hints %v, want %v", ctl.hints, want)
	}
}

// TestNoCaptureControlForHTTP2: an HTTP/2 connection is not reported as
// HTTP/1 and gets no body hints.
func TestNoCaptureControlForHTTP2(t *testing.T) {
	ctl := &fakeControl{}
	feed(t, load(t, "go-h2c-1.cap"), WithCaptureControl(ctl, 1))
	if ctl.http1 != 0 || len(ctl.hints) != 0 {
		t.Fatalf("http1 %d hints %v", ctl.http1, ctl.hints)
	}
}

// TestCaptureControlHintsEachLargeChunk: each chunk of a chunked body at
// least as large as the threshold is hinted, in the direction carrying it,
// and skipping exactly those ranges keeps the record exact.
func TestCaptureControlHintsEachLargeChunk(t *testing.T) {
	ctl := &fakeControl{}
	c, recs, _ := newTestConn(t, event.RoleClient, WithCaptureControl(ctl, 1000))
	c.Data(event.Egress, []byte("GET /c HTTP/1.1\r\n\r\n"), 1, 2)
	head := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n"
	c.Data(event.Ingress, []byte(head), 3, 4)
	c.Skip(event.Ingress, 4096, 5, 6)
	c.Data(event.Ingress, []byte("\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"), 7, 8)
	want := []hint{{event.Ingress, uint64(len(head)), uint64(len(head)) + 4096}}
	if fmt.Sprint(ctl.hints) != fmt.Sprint(want) {
		t.Fatalf("hints %v, want %v", ctl.hints, want)
	}
	if len(*recs) != 1 || (*recs)[0].Incomplete || (*recs)[0].RespBodyBytes != uint64(6+4096+2+4+16+2+5) {
		t.Fatalf("%s", summary(*recs))
	}
}
