package http2

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirnet/weir/daemon/protocol/internal/capture"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// FuzzHTTP2 feeds arbitrary client and server streams, cut and skipped at
// fuzzer-chosen points. The parser must not panic and must keep its buffers
// and stream table within the limits.
func FuzzHTTP2(f *testing.F) {
	files, _ := filepath.Glob("../testdata/*.cap")
	for _, file := range files {
		if !strings.Contains(file, "h2c-") && !strings.Contains(file, "grpc") || strings.Contains(file, "upgrade") {
			continue
		}
		cs, err := capture.Load(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(capture.Stream(cs, true), capture.Stream(cs, false), uint64(len(cs)), uint8(0))
	}
	f.Fuzz(func(t *testing.T, client, server []byte, seed uint64, skipEvery uint8) {
		lim := record.DefaultLimits()
		lim.MaxHeaderBytes, lim.MaxBuffered, lim.MaxStreams, lim.MaxHPACKTable = 2048, 4096, 8, 4096
		p := New(lim, &record.Stats{}, func(r *record.Record) {
			if len(r.UnknownFields) > maxUnknownFields || len(r.GRPCMessage) > maxGRPCMessage {
				t.Fatalf("unbounded record fields: %+v", *r)
			}
		})
		side := func(fromClient bool) Side {
			if fromClient {
				return Client
			}
			return Server
		}
		// Always start with the preface so the fuzzer explores frames.
		client = append([]byte(Preface), client...)
		capture.Chop(client, server, seed, int(skipEvery%8), func(fromClient bool, b []byte) {
			p.Data(side(fromClient), b, 1, 2)
			if len(p.streams) > lim.MaxStreams {
				t.Fatalf("%d streams open", len(p.streams))
			}
			for _, d := range p.dirs {
				if len(d.hb) > lim.MaxHeaderBytes || len(d.buf) > lim.MaxBuffered || len(d.dec.tab.data) > 2*lim.MaxHPACKTable+4096 {
					t.Fatalf("buffers over bound: hb %d buf %d table %d", len(d.hb), len(d.buf), len(d.dec.tab.data))
				}
			}
		}, func(fromClient bool, n uint64) { p.Skip(side(fromClient), n, 1, 2) })
		p.Close(3)
	})
}
