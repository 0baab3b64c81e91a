package http1

import (
	"path/filepath"
	"testing"

	"github.com/weirnet/weir/daemon/protocol/internal/capture"
	"github.com/weirnet/weir/daemon/protocol/record"
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
