package protocol

import (
	"path/filepath"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/internal/capture"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// FuzzDetect drives a Conn of any role with arbitrary client and server
// bytes cut and skipped at fuzzer-chosen points. It must never panic, and
// what it emits must stay within what the input could hold.
func FuzzDetect(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.cap")
	for _, file := range files {
		cs, err := capture.Load(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(capture.Stream(cs, true), capture.Stream(cs, false), uint64(len(cs)), uint8(1), uint8(0))
	}
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), []byte{0, 0, 0, 4, 0, 0, 0, 0, 0}, uint64(3), uint8(0), uint8(3))
	f.Add([]byte("GET /fake HTTP/1.1\r\n\r\nGET /a HTTP/1.1\r\n\r\n"), []byte("GET /fake HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), uint64(9), uint8(0x81), uint8(0))
	f.Fuzz(func(t *testing.T, client, server []byte, seed uint64, role, skipEvery uint8) {
		lim := record.DefaultLimits()
		lim.MaxHeaderBytes, lim.MaxBuffered, lim.MaxStreams, lim.MaxPending = 4096, 8192, 16, 8
		n := 0
		st := &record.Stats{}
		// Bit 7 of role: the connection's start was not seen.
		c, err := NewConn(event.Role(role%3), st, func(r *record.Record) { n++ }, WithLimits(lim), WithStartSeen(role&0x80 == 0),
			WithCaptureControl(nopControl{}, 1))
		if err != nil {
			t.Fatal(err)
		}
		reqDir := event.Ingress
		if event.Role(role%3) == event.RoleClient {
			reqDir = event.Egress
		}
		var ts event.Timestamp
		capture.Chop(client, server, seed, int(skipEvery%8), func(fromClient bool, b []byte) {
			ts++
			d := reqDir
			if !fromClient {
				d = 1 - reqDir
			}
			c.Data(d, b, ts, ts)
		}, func(fromClient bool, k uint64) {
			d := reqDir
			if !fromClient {
				d = 1 - reqDir
			}
			c.Skip(d, k, ts, ts)
		})
		c.Close(ts + 1)
		if n > len(client)+len(server)+1 {
			t.Fatalf("%d records from %d bytes", n, len(client)+len(server))
		}
	})
}

type nopControl struct{}

func (nopControl) HTTP1() error                                        { return nil }
func (nopControl) SkipBody(dir event.Direction, from, to uint64) error { return nil }
