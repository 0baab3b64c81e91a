package http1

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/internal/capture"
	"github.com/weirnet/weir/daemon/protocol/record"
	"github.com/weirnet/weir/daemon/protocol/tracectx"
)

// FuzzHTTP1 feeds arbitrary request and response streams, cut and skipped
// at fuzzer-chosen points. The parser must not panic, must respect its
// buffer bound, and every record must account for no more bytes than moved.
func FuzzHTTP1(f *testing.F) {
	files, _ := filepath.Glob("../testdata/*h1*.cap")
	for _, file := range files {
		cs, err := capture.Load(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(capture.Stream(cs, true), capture.Stream(cs, false), uint64(len(cs)), uint8(0))
	}
	f.Add([]byte("GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
		[]byte("HTTP/1.1 101 OK\r\nUpgrade: h2c\r\n\r\n"), uint64(5), uint8(0))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nff\r\n"), []byte("HTTP/1.1 100 Continue\r\n\r\n"), uint64(9), uint8(3))
	f.Fuzz(func(t *testing.T, req, resp []byte, seed uint64, skipEvery uint8) {
		lim := record.DefaultLimits()
		lim.MaxHeaderBytes, lim.MaxBuffered, lim.MaxPending = 1024, 4096, 8
		var total uint64
		p := New(lim, &record.Stats{}, func(r *record.Record) {
			total += r.ReqHeaderBytes + r.ReqBodyBytes + r.RespHeaderBytes + r.RespBodyBytes
		})
		side := func(fromClient bool) Side {
			if fromClient {
				return Request
			}
			return Response
		}
		capture.Chop(req, resp, seed, int(skipEvery%8), func(fromClient bool, b []byte) {
			p.Data(side(fromClient), b, 1, 2)
			for _, d := range p.dirs {
				if len(d.buf) > lim.MaxBuffered {
					t.Fatalf("buffered %d bytes", len(d.buf))
				}
			}
		}, func(fromClient bool, n uint64) { p.Skip(side(fromClient), n, 1, 2) })
		p.Close(3)
		if total > uint64(len(req)+len(resp)) {
			t.Fatalf("records account for %d bytes of %d", total, len(req)+len(resp))
		}
	})
}

// FuzzHTTP1MidStream starts a parser mid-stream on arbitrary bytes cut and
// skipped at fuzzer-chosen points, reporting body hints. It must not
// panic, its offsets must be the bytes moved, and every hinted range must
// lie ahead of the bytes already delivered, within the stream.
func FuzzHTTP1MidStream(f *testing.F) {
	f.Add([]byte(fake+"GET /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"), []byte(fake+"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n"), uint64(3), uint8(0))
	f.Add([]byte("POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5000\r\n"), []byte("HTTP/1.1 200 OK\r\n\r\n"), uint64(11), uint8(4))
	f.Fuzz(func(t *testing.T, req, resp []byte, seed uint64, skipEvery uint8) {
		lim := record.DefaultLimits()
		lim.MaxHeaderBytes, lim.MaxBuffered, lim.MaxPending = 1024, 4096, 8
		p := NewMidStream(lim, &record.Stats{}, func(*record.Record) {}, [2]Cursor{})
		var moved [2]uint64
		p.SetBodyHint(1, func(s Side, from, to uint64, _ bool) {
			if from < moved[s]-min(moved[s], 4096) || to <= from {
				t.Fatalf("hint [%d,%d) for side %d at offset %d", from, to, s, moved[s])
			}
		})
		side := func(fromClient bool) Side {
			if fromClient {
				return Request
			}
			return Response
		}
		var ts event.Timestamp
		capture.Chop(req, resp, seed, int(skipEvery%8), func(fromClient bool, b []byte) {
			ts++
			moved[side(fromClient)] += uint64(len(b))
			p.Data(side(fromClient), b, ts, ts)
		}, func(fromClient bool, n uint64) {
			ts++
			moved[side(fromClient)] += n
			p.Skip(side(fromClient), n, ts, ts)
		})
		if !p.Opaque() && (p.Offset(Request) != moved[Request] || p.Offset(Response) != moved[Response]) {
			t.Fatalf("offsets %d/%d, moved %v", p.Offset(Request), p.Offset(Response), moved)
		}
		p.Close(ts + 1)
	})
}

// FuzzScanHead holds the one-pass header scan to the general path it
// stands in for: wherever scanHead finds a section, sectionEnd must find
// the same one and parse must read the same fields and trace headers from
// it; and parse must succeed there, since scanHead refuses what parse
// refuses. The start line's LF it reports is the first LF.
func FuzzScanHead(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nUpgrade: h2c\r\nConnection: x, Upgrade\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nsw8: 1-abc\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\nHost: a\n\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\n\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, slow fields
		var fastTC, slowTC tracectx.Collector
		n := fast.scanHead(b, &fastTC)
		if n < 0 {
			return
		}
		if want := sectionEnd(b, 0); n != want {
			t.Fatalf("scanHead found a section of %d bytes, sectionEnd %d", n, want)
		}
		nl := bytes.IndexByte(b, '\n')
		if fast.lineLF != nl {
			t.Fatalf("scanHead put the start line's LF at %d, it is at %d", fast.lineLF, nl)
		}
		if !slow.parse(b[nl+1:n], &slowTC) {
			t.Fatalf("scanHead took a section parse refuses: %q", b[:n])
		}
		if fast.contentLength != slow.contentLength || fast.chunked != slow.chunked ||
			fast.connUpgrade != slow.connUpgrade || !bytes.Equal(fast.host, slow.host) ||
			!bytes.Equal(fast.upgrade, slow.upgrade) || (fast.host == nil) != (slow.host == nil) ||
			(fast.upgrade == nil) != (slow.upgrade == nil) {
			t.Fatalf("fields differ: scanHead %+v, parse %+v", fast, slow)
		}
		if fastTC != slowTC {
			t.Fatalf("trace headers differ: scanHead %+v, parse %+v", fastTC, slowTC)
		}
	})
}

// FuzzHTTP1ReuseRecords parses the same streams, cut and skipped alike,
// with and without ReuseRecords: a parser that reuses emitted exchanges
// must emit exactly the same records, so reuse never takes an exchange the
// parser is still filling in.
func FuzzHTTP1ReuseRecords(f *testing.F) {
	f.Add([]byte("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n"),
		[]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 404 No\r\n\r\n"), uint64(7), uint8(0))
	f.Add([]byte("POST /u HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234GET / HTTP/1.1\r\n\r\n"),
		[]byte("HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"), uint64(3), uint8(2))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No\r\n\r\n"), uint64(1), uint8(5))
	f.Fuzz(func(t *testing.T, req, resp []byte, seed uint64, skipEvery uint8) {
		lim := record.DefaultLimits()
		lim.MaxHeaderBytes, lim.MaxBuffered, lim.MaxPending = 1024, 4096, 8
		run := func(reuse bool) []record.Record {
			var got []record.Record
			p := New(lim, &record.Stats{}, func(r *record.Record) { got = append(got, *r) })
			if reuse {
				p.ReuseRecords()
			}
			side := func(fromClient bool) Side {
				if fromClient {
					return Request
				}
				return Response
			}
			ts := event.Timestamp(0)
			capture.Chop(req, resp, seed, int(skipEvery%8), func(fromClient bool, b []byte) {
				ts += 10
				p.Data(side(fromClient), b, ts, ts+5)
			}, func(fromClient bool, n uint64) {
				ts += 10
				p.Skip(side(fromClient), n, ts, ts+5)
			})
			p.Close(ts + 100)
			return got
		}
		plain, reused := run(false), run(true)
		if len(plain) != len(reused) {
			t.Fatalf("%d records without reuse, %d with", len(plain), len(reused))
		}
		for i := range plain {
			if fmt.Sprintf("%+v", plain[i]) != fmt.Sprintf("%+v", reused[i]) {
				t.Fatalf("record %d without reuse %+v\nwith %+v", i, plain[i], reused[i])
			}
		}
	})
}
