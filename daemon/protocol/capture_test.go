package protocol

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/internal/capture"
	"github.com/weirnet/weir/daemon/protocol/record"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the parsers' output")

func captures(t testing.TB) []string {
	files, err := filepath.Glob("testdata/*.cap")
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures in testdata (run internal/capturegen): %v", err)
	}
	return files
}

// TestCapturesMatchGolden pins every record parsed from the real captures
// (nginx, curl, h2load, Go net/http, grpc-go) against reviewed golden files.
func TestCapturesMatchGolden(t *testing.T) {
	for _, f := range captures(t) {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			recs, st, _ := feed(t, load(t, name))
			got := summary(recs)
			golden := strings.TrimSuffix(f, ".cap") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("records differ from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
			}
			if n := st.ProtocolErrors.Load() + st.HTTP1Resyncs.Load() + st.HTTP2FrameLost.Load() + st.Incomplete.Load(); n != 0 {
				t.Errorf("clean capture produced errors/resyncs/incomplete: %d", n)
			}
		})
	}
}

// TestHTTP1SizesAddUpToStreamBytes: for HTTP/1 every byte of each direction
// belongs to exactly one record's header or body.
func TestHTTP1SizesAddUpToStreamBytes(t *testing.T) {
	for _, f := range captures(t) {
		cs := load(t, filepath.Base(f))
		recs, _, c := feed(t, cs)
		if c.Kind() != KindHTTP1 {
			continue
		}
		var req, resp uint64
		for _, r := range recs {
			req += r.ReqHeaderBytes + r.ReqBodyBytes
			resp += r.RespHeaderBytes + r.RespBodyBytes
		}
		if want := uint64(len(capture.Stream(cs, true))); req != want {
			t.Errorf("%s: request bytes %d, stream has %d", f, req, want)
		}
		if want := uint64(len(capture.Stream(cs, false))); resp != want {
			t.Errorf("%s: response bytes %d, stream has %d", f, resp, want)
		}
	}
}

// TestRecordsIndependentOfChunking re-splits each direction at random
// points (including single bytes) and requires the same records.
func TestRecordsIndependentOfChunking(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, f := range captures(t) {
		cs := load(t, filepath.Base(f))
		want, _, _ := feed(t, cs)
		for round := 0; round < 5; round++ {
			got, _, _ := feed(t, resplit(cs, rng, round == 0))
			if a, b := summary(got), summary(want); a != b {
				t.Fatalf("%s round %d: records depend on chunking:\n got:\n%s\nwant:\n%s", f, round, a, b)
			}
		}
	}
}

// resplit cuts every chunk into random pieces (1-byte pieces when tiny),
// keeping each direction's order and the interleaving of the original.
func resplit(cs []capture.Chunk, rng *rand.Rand, tiny bool) []capture.Chunk {
	var out []capture.Chunk
	for _, c := range cs {
		for b := c.Data; len(b) > 0; {
			n := 1
			if !tiny {
				n = 1 + rng.IntN(len(b))
			}
			out = append(out, capture.Chunk{FromClient: c.FromClient, Data: b[:n]})
			b = b[n:]
		}
	}
	return out
}

// TestHTTP1LargeBodiesBeyondCaptureLimit replaces most of each big response
// read with Skip (as a capture limit would) and requires the same records:
// HTTP/1 body sizes come from framing. (HTTP/2's equivalent, a gap inside
// one DATA payload, is pinned in package http2; a gap spanning frame headers
// loses framing by design.)
func TestHTTP1LargeBodiesBeyondCaptureLimit(t *testing.T) {
	for _, name := range []string{"nginx-h1-1.cap"} {
		cs := load(t, name)
		want, _, _ := feed(t, cs)
		var got []*record.Record
		st := &record.Stats{}
		c, err := NewConn(event.RoleServer, st, func(r *record.Record) { got = append(got, r) })
		if err != nil {
			t.Fatal(err)
		}
		var skipped int
		for i, ch := range cs {
			dir := event.Egress
			if ch.FromClient {
				dir = event.Ingress
			}
			ts := event.Timestamp(10*i + 10)
			// Keep the first 512 bytes of big server reads, as a
			// per-chunk capture limit would.
			if !ch.FromClient && len(ch.Data) > 16384 {
				c.Data(dir, ch.Data[:512], ts, ts+5)
				c.Skip(dir, uint64(len(ch.Data)-512), ts, ts+5)
				skipped++
				continue
			}
			c.Data(dir, ch.Data, ts, ts+5)
		}
		c.Close(event.Timestamp(10*len(cs) + 20))
		if skipped == 0 {
			t.Fatalf("%s: no chunk was large enough to truncate", name)
		}
		if a, b := summary(got), summary(want); a != b {
			t.Errorf("%s: truncation changed records:\n got:\n%s\nwant:\n%s", name, a, b)
		}
	}
}

// TestHTTP2MatchesXNetReference decodes the HTTP/2 captures with x/net's
// Framer and hpack.Decoder and requires the same streams.
func TestHTTP2MatchesXNetReference(t *testing.T) {
	for _, f := range captures(t) {
		name := filepath.Base(f)
		if !strings.Contains(name, "h2c-") && !strings.HasPrefix(name, "grpc") || strings.HasPrefix(name, "h2c-upgrade") {
			continue
		}
		cs := load(t, name)
		ref := map[uint32]*refStream{}
		if _, err := xnetDecode(capture.Stream(cs, true), true, ref); err != nil {
			t.Fatalf("%s client: %v", name, err)
		}
		if _, err := xnetDecode(capture.Stream(cs, false), false, ref); err != nil {
			t.Fatalf("%s server: %v", name, err)
		}
		recs, _, _ := feed(t, cs)
		ours := map[uint32]*refStream{}
		for _, r := range recs {
			gs := ""
			if r.GRPCStatus >= 0 {
				gs = fmt.Sprint(r.GRPCStatus)
			}
			ours[r.StreamID] = &refStream{method: r.Method, path: r.Path, status: fmt.Sprint(r.Status), grpcStatus: gs, respBody: r.RespBodyBytes}
		}
		// x/net sees a stream's headers even when it was reset before a
		// response; our record then has status 0.
		for _, s := range ref {
			if s.status == "" {
				s.status = "0"
			}
		}
		if a, b := refSummary(ours), refSummary(ref); a != b {
			t.Errorf("%s:\nours:\n%s\nx/net:\n%s", name, a, b)
		}
	}
}
