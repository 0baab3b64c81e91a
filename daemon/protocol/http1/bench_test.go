package http1

import (
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// BenchmarkParserKeepAlive is the HTTP/1 parser alone on the exchange the
// daemon's load benchmark makes (wrk's request, nginx's small response
// with its headers and body in one write) on one keep-alive connection:
// one op is one request and its response, each in one chunk. It isolates
// the parser's share of BenchmarkPipelineHTTP1KeepAlive (daemon/monitor).
func BenchmarkParserKeepAlive(b *testing.B) {
	req := []byte("GET / HTTP/1.1\r\nHost: 10.0.0.2:80\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nServer: nginx/1.27.3\r\nDate: Wed, 25 Nov 2026 04:00:00 GMT\r\n" +
		"Content-Type: text/html\r\nContent-Length: 12\r\nLast-Modified: Tue, 26 Nov 2024 16:05:55 GMT\r\n" +
		"Connection: keep-alive\r\nETag: \"6745f1a3-c\"\r\nAccept-Ranges: bytes\r\n\r\nhello world\n")
	n := 0
	p := New(record.DefaultLimits(), &record.Stats{}, func(*record.Record) { n++ })
	ts := event.Timestamp(1000)
	b.SetBytes(int64(len(req) + len(resp)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p.Data(Request, req, ts, ts+1)
		p.Data(Response, resp, ts+2, ts+3)
		ts += 4
		i++
	}
	if n != i {
		b.Fatalf("%d records for %d requests", n, i)
	}
}
