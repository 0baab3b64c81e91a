package http2

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weirnet/weir/bpf/event"
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

// FuzzHTTP2AgreesWithFullParse replays the same client and server bytes,
// cut at the same fuzzer-chosen points, twice: once whole, once with some
// pieces skipped (gaps at random). Every record of the gapped replay must be
// one the whole replay produced for the same stream: a gap may lose
// records, never change one.
func FuzzHTTP2AgreesWithFullParse(f *testing.F) {
	for seed := uint64(1); seed <= 3; seed++ {
		ws, _ := churn(seed, 6)
		var c, s []byte
		for _, w := range ws {
			if w.side == Client {
				c = append(c, w.b...)
			} else {
				s = append(s, w.b...)
			}
		}
		f.Add(c[len(Preface):], s, seed*7919, uint8(5))
	}
	f.Fuzz(func(t *testing.T, client, server []byte, seed uint64, skipEvery uint8) {
		if skipEvery%8 == 0 {
			skipEvery = 5
		}
		lim := record.DefaultLimits()
		lim.MaxHeaderBytes, lim.MaxBuffered, lim.MaxStreams, lim.MaxHPACKTable = 2048, 4096, 64, 4096
		type key struct {
			method, path string
			status, grpc int
			reset        bool
		}
		ref := map[uint32][]key{}
		full := New(lim, &record.Stats{}, func(r *record.Record) {
			ref[r.StreamID] = append(ref[r.StreamID], key{r.Method, r.Path, r.Status, r.GRPCStatus, r.Reset})
		})
		var got []*record.Record
		gapped := New(lim, &record.Stats{}, func(r *record.Record) { got = append(got, r) })
		side := func(fromClient bool) Side {
			if fromClient {
				return Client
			}
			return Server
		}
		client = append([]byte(Preface), client...)
		streams := [2][]byte{client, server}
		var off [2]int
		capture.Chop(client, server, seed, int(skipEvery%8), func(fromClient bool, b []byte) {
			s := side(fromClient)
			off[s] += len(b)
			full.Data(s, b, 1, 2)
			gapped.Data(s, b, 1, 2)
		}, func(fromClient bool, n uint64) {
			s := side(fromClient)
			full.Data(s, streams[s][off[s]:off[s]+int(n)], 1, 2)
			off[s] += int(n)
			gapped.Skip(s, n, 1, 2)
		})
		full.Close(3)
		gapped.Close(3)
		for _, r := range got {
			k := key{r.Method, r.Path, r.Status, r.GRPCStatus, r.Reset}
			ok := false
			for _, w := range ref[r.StreamID] {
				ok = ok || w == k
			}
			if !ok {
				t.Fatalf("stream %d: gapped replay says %+v, the whole replay %+v", r.StreamID, k, ref[r.StreamID])
			}
		}
	})
}

// FuzzHTTP2ReuseRecords parses the same streams, cut and skipped alike,
// with and without ReuseRecords: a parser that reuses finished streams
// must emit exactly the same records.
func FuzzHTTP2ReuseRecords(f *testing.F) {
	for seed := uint64(1); seed <= 3; seed++ {
		ws, _ := churn(seed, 6)
		var c, s []byte
		for _, w := range ws {
			if w.side == Client {
				c = append(c, w.b...)
			} else {
				s = append(s, w.b...)
			}
		}
		f.Add(c[len(Preface):], s, seed*7919, uint8(seed))
	}
	f.Fuzz(func(t *testing.T, client, server []byte, seed uint64, skipEvery uint8) {
		lim := record.DefaultLimits()
		lim.MaxHeaderBytes, lim.MaxBuffered, lim.MaxStreams, lim.MaxHPACKTable = 2048, 4096, 8, 4096
		client = append([]byte(Preface), client...)
		run := func(reuse bool) []string {
			var got []string
			p := New(lim, &record.Stats{}, func(r *record.Record) { got = append(got, fmt.Sprintf("%+v", *r)) })
			if reuse {
				p.ReuseRecords()
			}
			side := func(fromClient bool) Side {
				if fromClient {
					return Client
				}
				return Server
			}
			ts := event.Timestamp(0)
			capture.Chop(client, server, seed, int(skipEvery%8), func(fromClient bool, b []byte) {
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
		if !slices.Equal(plain, reused) {
			t.Fatalf("records without reuse:\n%v\nwith:\n%v", plain, reused)
		}
	})
}
