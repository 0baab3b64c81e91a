package protocol

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/internal/capture"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// feed replays a capture into a server-role Conn (client bytes are
// Ingress), giving chunk i the timestamps [10i, 10i+5].
func feed(t testing.TB, cs []capture.Chunk, opts ...Option) ([]*record.Record, *record.Stats, *Conn) {
	t.Helper()
	var recs []*record.Record
	st := &record.Stats{}
	c, err := NewConn(event.RoleServer, st, func(r *record.Record) { recs = append(recs, r) }, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var last event.Timestamp
	for i, ch := range cs {
		dir := event.Egress
		if ch.FromClient {
			dir = event.Ingress
		}
		s := event.Timestamp(10*i + 10)
		c.Data(dir, ch.Data, s, s+5)
		last = s + 5
	}
	c.Close(last + 1)
	return recs, st, c
}

func load(t testing.TB, name string) []capture.Chunk {
	t.Helper()
	cs, err := capture.Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// summary renders the fields a test pins down, one record per line.
func summary(recs []*record.Record) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%s %s %s host=%s st=%d", r.Protocol, r.Method, r.Path, r.Host, r.Status)
		if r.StreamID != 0 {
			fmt.Fprintf(&b, " sid=%d", r.StreamID)
		}
		if r.GRPC {
			fmt.Fprintf(&b, " grpc=%d %q", r.GRPCStatus, r.GRPCMessage)
		}
		fmt.Fprintf(&b, " req=%d+%d resp=%d+%d", r.ReqHeaderBytes, r.ReqBodyBytes, r.RespHeaderBytes, r.RespBodyBytes)
		if r.Trace.Kind != "" {
			fmt.Fprintf(&b, " trace=%s:%s", r.Trace.Kind, r.Trace.TraceID)
		}
		if r.Incomplete {
			b.WriteString(" INCOMPLETE")
		}
		if r.Reset {
			fmt.Fprintf(&b, " RESET=%d", r.ResetCode)
		}
		if len(r.UnknownFields) > 0 {
			fmt.Fprintf(&b, " unknown=%v", r.UnknownFields)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
