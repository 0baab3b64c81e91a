package protocol

import (
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/internal/capture"
	"github.com/weirnet/weir/daemon/protocol/record"
)

func newTestConn(t *testing.T, role event.Role, opts ...Option) (*Conn, *[]*record.Record, *record.Stats) {
	t.Helper()
	var recs []*record.Record
	st := &record.Stats{}
	c, err := NewConn(role, st, func(r *record.Record) { recs = append(recs, r) }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c, &recs, st
}

func TestUnknownProtocolStaysTCP(t *testing.T) {
	c, recs, st := newTestConn(t, event.RoleServer)
	c.Data(event.Ingress, []byte("SSH-2.0-OpenSSH_9.2\r\n"), 1, 2)
	c.Data(event.Ingress, []byte("GET / HTTP/1.1\r\n\r\n"), 3, 4) // too late: not a start
	c.Close(5)
	if c.Kind() != KindTCP || len(*recs) != 0 || st.UnknownProtocol.Load() != 1 {
		t.Fatalf("kind %s records %d unknown %d", c.Kind(), len(*recs), st.UnknownProtocol.Load())
	}
}

func TestDetectionWaitsForEnoughBytes(t *testing.T) {
	c, recs, _ := newTestConn(t, event.RoleServer)
	for _, p := range []string{"G", "E", "T", " /x HTTP/1.1\r\n\r\n"} {
		c.Data(event.Ingress, []byte(p), 1, 2)
	}
	c.Data(event.Egress, []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 3, 4)
	if c.Kind() != KindHTTP1 || len(*recs) != 1 || (*recs)[0].Path != "/x" || (*recs)[0].ReqHeaderBytes != 19 {
		t.Fatalf("kind %s records %+v", c.Kind(), *recs)
	}
}

func TestClientRoleEgressCarriesRequests(t *testing.T) {
	c, recs, _ := newTestConn(t, event.RoleClient)
	c.Data(event.Egress, []byte("GET /c HTTP/1.1\r\n\r\n"), 1, 2)
	c.Data(event.Ingress, []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 3, 4)
	if len(*recs) != 1 || (*recs)[0].Path != "/c" {
		t.Fatalf("%+v", *recs)
	}
}

func TestUnknownRoleLearnsRequestDirection(t *testing.T) {
	cs := load(t, "grpc-1.cap")
	// Feed as a client-side capture with an unknown role: the client's
	// bytes are Egress this time, and the server's SETTINGS may come first.
	c, recs, _ := newTestConn(t, event.RoleUnknown)
	for i, ch := range cs {
		dir := event.Ingress
		if ch.FromClient {
			dir = event.Egress
		}
		c.Data(dir, ch.Data, event.Timestamp(i), event.Timestamp(i))
	}
	c.Close(1000)
	want, _, _ := feed(t, cs)
	if a, b := summary(*recs), summary(want); a != b {
		t.Fatalf("unknown role:\n%s\nserver role:\n%s", a, b)
	}
}

func TestHTTP2ServerSpeaksFirst(t *testing.T) {
	cs := load(t, "nginx-h2c-1.cap")
	server := capture.Stream(cs, false)
	client := capture.Stream(cs, true)
	c, recs, _ := newTestConn(t, event.RoleServer)
	c.Data(event.Egress, server[:9], 1, 1) // SETTINGS frame header only
	if c.Kind() != KindHTTP2 {
		t.Fatalf("kind %s after server SETTINGS", c.Kind())
	}
	c.Data(event.Ingress, client, 2, 2)
	c.Data(event.Egress, server[9:], 3, 3)
	if len(*recs) != 1 || (*recs)[0].Status != 200 {
		t.Fatalf("%+v", *recs)
	}
}

func TestMidStreamHTTP1ClassifiedOnStartLine(t *testing.T) {
	c, recs, st := newTestConn(t, event.RoleServer)
	c.Skip(event.Ingress, 500, 1, 1) // connection seen mid-way
	c.Skip(event.Egress, 700, 1, 1)
	c.Data(event.Egress, []byte("tail of an old body"), 2, 2)
	c.Data(event.Ingress, []byte("GET /seen HTTP/1.1\r\n\r\n"), 3, 3)
	c.Data(event.Egress, []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), 4, 4)
	if c.Kind() != KindHTTP1 || len(*recs) != 1 || (*recs)[0].Path != "/seen" || (*recs)[0].Status != 200 {
		t.Fatalf("kind %s %+v", c.Kind(), *recs)
	}
	if st.HTTP1Resyncs.Load() == 0 {
		t.Error("resync not counted")
	}
}

func TestMidStreamHTTP2EmitsNothingUncertain(t *testing.T) {
	cs := load(t, "nginx-h2c-4.cap") // h2load: 40 requests on one connection
	c, recs, st := newTestConn(t, event.RoleServer)
	// Drop the first half of the chunks of each direction.
	half := len(cs) / 2
	for _, ch := range cs[:half] {
		dir := event.Egress
		if ch.FromClient {
			dir = event.Ingress
		}
		c.Skip(dir, uint64(len(ch.Data)), 1, 1)
	}
	for i, ch := range cs[half:] {
		dir := event.Egress
		if ch.FromClient {
			dir = event.Ingress
		}
		c.Data(dir, ch.Data, event.Timestamp(i+2), event.Timestamp(i+2))
	}
	c.Close(10000)
	if c.Kind() != KindHTTP2 {
		t.Fatalf("the second half of the capture was not classified: kind %s", c.Kind())
	}
	// Frame boundaries were guessed and HPACK state is unknown: no record
	// can be proven right, so none is emitted; the streams are counted.
	if len(*recs) != 0 {
		t.Fatalf("records after a guessed resynchronisation: %+v", *recs)
	}
	if st.HTTP2Resyncs.Load() == 0 || st.HTTP2Dropped.Load() == 0 {
		t.Errorf("resyncs %d dropped %d", st.HTTP2Resyncs.Load(), st.HTTP2Dropped.Load())
	}
}

func TestH2CUpgradeThroughConn(t *testing.T) {
	recs, _, c := feed(t, load(t, "h2c-upgrade-1.cap"))
	if c.Kind() != KindHTTP2 || len(recs) != 2 {
		t.Fatalf("kind %s records %d", c.Kind(), len(recs))
	}
	if r := recs[0]; r.StreamID != 1 || r.Path != "/first" || r.Status != 200 || r.RespBodyBytes != 13 || r.Protocol != "HTTP/2" {
		t.Fatalf("%+v", *r)
	}
}

func TestLimitsValidated(t *testing.T) {
	l := record.DefaultLimits()
	l.MaxStreams = 0
	if _, err := NewConn(event.RoleServer, &record.Stats{}, func(*record.Record) {}, WithLimits(l)); err == nil {
		t.Fatal("want an error naming MaxStreams")
	}
	if _, err := NewConn(event.RoleServer, nil, func(*record.Record) {}); err == nil {
		t.Fatal("want an error for nil stats")
	}
}
