package protocol

import (
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/internal/capture"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// benchConn replays captures through a fresh Conn per iteration, as the
// capture layer would for each connection, and reports throughput over all
// bytes of both directions and records per second.
func benchConn(b *testing.B, names ...string) {
	var caps [][]capture.Chunk
	var bytes int64
	for _, n := range names {
		cs := load(b, n)
		caps = append(caps, cs)
		for _, c := range cs {
			bytes += int64(len(c.Data))
		}
	}
	st := &record.Stats{}
	recs := 0
	sink := func(*record.Record) { recs++ }
	b.SetBytes(bytes)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, cs := range caps {
			c, err := NewConn(event.RoleServer, st, sink)
			if err != nil {
				b.Fatal(err)
			}
			for i, ch := range cs {
				dir := event.Egress
				if ch.FromClient {
					dir = event.Ingress
				}
				c.Data(dir, ch.Data, event.Timestamp(i), event.Timestamp(i))
			}
			c.Close(1 << 40)
		}
	}
	b.ReportMetric(float64(recs)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkHTTP1 parses the nginx and Go HTTP/1.1 captures (keep-alive,
// pipelining, chunked, a 128 KiB body).
func BenchmarkHTTP1(b *testing.B) {
	benchConn(b, "nginx-h1-1.cap", "nginx-h1-2.cap", "nginx-h1-3.cap", "nginx-h1-4.cap", "go-h1-1.cap", "go-h1-2.cap")
}

// BenchmarkHTTP1Headers is header-bound: the pipelined Go capture, whose
// bodies are tiny.
func BenchmarkHTTP1Headers(b *testing.B) { benchConn(b, "go-h1-1.cap") }

var h2Captures = []string{"nginx-h2c-1.cap", "nginx-h2c-2.cap", "nginx-h2c-4.cap", "go-h2c-1.cap", "grpc-1.cap"}

// BenchmarkHTTP2 parses the HTTP/2 captures (nginx via curl and h2load, Go
// h2c, grpc-go) into records.
func BenchmarkHTTP2(b *testing.B) { benchConn(b, h2Captures...) }

// BenchmarkHTTP2XNetBaseline decodes the same bytes with x/net's Framer and
// hpack.Decoder (frames and header fields only, no records): the baseline
// BenchmarkHTTP2 is compared with.
func BenchmarkHTTP2XNetBaseline(b *testing.B) {
	var streams [][2][]byte
	var bytes int64
	for _, n := range h2Captures {
		cs := load(b, n)
		c, s := capture.Stream(cs, true), capture.Stream(cs, false)
		streams = append(streams, [2][]byte{c, s})
		bytes += int64(len(c) + len(s))
	}
	b.SetBytes(bytes)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for _, s := range streams {
			if _, err := xnetDecode(s[0], true, nil); err != nil {
				b.Fatal(err)
			}
			if _, err := xnetDecode(s[1], false, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
}
