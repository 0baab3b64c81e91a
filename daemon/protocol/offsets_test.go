package protocol

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2/hpack"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/http2"
	"github.com/weirnet/weir/daemon/protocol/record"
)

type offsets struct{ req, reqEnd, resp, respEnd uint64 }

func offsetsOf(r *record.Record) offsets {
	return offsets{r.ReqOff, r.ReqEndOff, r.RespOff, r.RespEndOff}
}

// TestHTTP1PipelinedRecordsCarryTheirOwnOffsets: two requests written in
// one syscall and answered by two writes each get the stream range of
// their own bytes: a range starts exactly at its start line (inside the
// chunk it shares) and ends past its last byte, at most at the end of the
// syscall that carried that byte.
func TestHTTP1PipelinedRecordsCarryTheirOwnOffsets(t *testing.T) {
	c, recs, _ := newTestConn(t, event.RoleServer)
	const reqA, reqB = "GET /a HTTP/1.1\r\n\r\n", "POST /b HTTP/1.1\r\nContent-Length: 4\r\n\r\n"
	const cont, resp = "HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	c.Data(event.Ingress, []byte(reqA+reqB), 1, 2)
	c.Data(event.Ingress, []byte("body"), 3, 4) // the second request's body
	c.Data(event.Egress, []byte(cont+resp), 5, 6)
	c.Data(event.Egress, []byte(resp[:10]), 7, 8)
	c.Data(event.Egress, []byte(resp[10:]), 9, 10)
	if len(*recs) != 2 {
		t.Fatalf("%d records, want 2", len(*recs))
	}
	a, b := uint64(len(reqA)), uint64(len(reqA+reqB))
	first := uint64(len(cont + resp)) // the interim response is the first's
	type bounds struct {
		req, resp       uint64    // exact starts
		reqEnd, respEnd [2]uint64 // exact end .. end of its syscall
	}
	want := []bounds{
		{req: 0, reqEnd: [2]uint64{a, b}, resp: 0, respEnd: [2]uint64{first, first}},
		{req: a, reqEnd: [2]uint64{b + 4, b + 4}, resp: first, respEnd: [2]uint64{first + uint64(len(resp)), first + uint64(len(resp))}},
	}
	for i, r := range *recs {
		w := want[i]
		if r.ReqOff != w.req || r.ReqEndOff < w.reqEnd[0] || r.ReqEndOff > w.reqEnd[1] ||
			r.RespOff != w.resp || r.RespEndOff < w.respEnd[0] || r.RespEndOff > w.respEnd[1] {
			t.Errorf("%s %s: offsets %+v, want %+v", r.Method, r.Path, offsetsOf(r), w)
		}
	}
}

// h2Frame returns one HTTP/2 frame.
func h2Frame(typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	b := []byte{byte(n >> 16), byte(n >> 8), byte(n), typ, flags,
		byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
	return append(b, payload...)
}

func h2Block(t *testing.T, kv ...string) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for i := 0; i < len(kv); i += 2 {
		if err := enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]}); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// TestHTTP2ConcurrentStreamsCarryTheirOwnOffsets: streams whose frames
// interleave get each the range from their first HEADERS frame to the
// frame that ended them, in each direction, counting bytes that were not
// captured.
func TestHTTP2ConcurrentStreamsCarryTheirOwnOffsets(t *testing.T) {
	const endStream, endHeaders = 0x1, 0x4
	c, recs, _ := newTestConn(t, event.RoleServer)
	req := func(path string) []byte {
		return h2Block(t, ":method", "GET", ":scheme", "http", ":path", path, ":authority", "svc")
	}
	// Client: preface and SETTINGS, then the requests of streams 1 and 3
	// in one write.
	start := append([]byte(http2.Preface), h2Frame(0x4, 0, 0, nil)...)
	h1 := h2Frame(0x1, endStream|endHeaders, 1, req("/one"))
	h3 := h2Frame(0x1, endStream|endHeaders, 3, req("/three"))
	c.Data(event.Ingress, start, 1, 2)
	c.Data(event.Ingress, append(clone(h1), h3...), 3, 4)
	// Server: SETTINGS, stream 3's headers, stream 1's headers and DATA
	// (its payload not captured), stream 3's DATA.
	status := h2Block(t, ":status", "200")
	settings := h2Frame(0x4, 0, 0, nil)
	r3 := h2Frame(0x1, endHeaders, 3, status)
	r1 := h2Frame(0x1, endHeaders, 1, status)
	d1 := h2Frame(0x0, endStream, 1, make([]byte, 100))
	d3 := h2Frame(0x0, endStream, 3, []byte("three"))
	c.Data(event.Egress, append(append(clone(settings), r3...), r1...), 5, 6)
	c.Data(event.Egress, d1[:9], 7, 8)
	c.Skip(event.Egress, 100, 7, 8)
	c.Data(event.Egress, d3, 9, 10)
	if len(*recs) != 2 {
		t.Fatalf("%d records, want 2", len(*recs))
	}
	in := uint64(len(start))
	out := uint64(len(settings))
	want := map[string]offsets{
		"/one": {in, in + uint64(len(h1)), out + uint64(len(r3)),
			out + uint64(len(r3)+len(r1)+len(d1))},
		"/three": {in + uint64(len(h1)), in + uint64(len(h1)+len(h3)), out,
			out + uint64(len(r3)+len(r1)+len(d1)+len(d3))},
	}
	for _, r := range *recs {
		if got := offsetsOf(r); got != want[r.Path] {
			t.Errorf("stream %d %s: offsets %+v, want %+v", r.StreamID, r.Path, got, want[r.Path])
		}
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
