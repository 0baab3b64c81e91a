package bpf

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/bpf/walker"
	"golang.org/x/net/http2"
)

// rawWrite is one write (or writev, when vectored) of the edge-case client.
type rawWrite struct {
	segs     [][]byte
	vectored bool
}

func frames(f func(fr *http2.Framer)) []byte {
	var b bytes.Buffer
	f(http2.NewFramer(&b, nil))
	return b.Bytes()
}

// TestH2WalkerEdgeCasesMatchTheTwin drives the kernel walker through its
// bounds with crafted HTTP/2 writes and checks its events against the Go
// twin's for both ends: more events than a syscall may have (the rest is a
// chunk_limit suffix, and the walker keeps its place), frame headers split
// across iovecs, a HEADERS frame over the copy bound (frame_limit), more
// iovecs than are walked (the walker loses its place: h2_desync, then the
// budget decides).
func TestH2WalkerEdgeCasesMatchTheTwin(t *testing.T) {
	const maxFrame = MinMaxFrameCopy
	r := startCollector(t, Config{CaptureLimit: 1, MaxFrameCopy: maxFrame})
	ns := newNetns(t)
	if err := r.Enroll(ns.ino, 11); err != nil {
		t.Fatal(err)
	}
	hdrs := func(sid uint32, n int) []byte {
		return frames(func(fr *http2.Framer) {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: sid, BlockFragment: bytes.Repeat([]byte{0x82}, n), EndHeaders: true})
		})
	}
	many := frames(func(fr *http2.Framer) {
		fr.WriteSettings()
		for range 40 {
			fr.WriteData(1, false, bytes.Repeat([]byte{'d'}, 300))
		}
	})
	many = append(many, hdrs(3, 10)...)
	split := append(hdrs(5, 30), frames(func(fr *http2.Framer) { fr.WriteData(5, false, bytes.Repeat([]byte{'e'}, 1000)) })...)
	var tiny [][]byte
	for range 20 {
		tiny = append(tiny, frames(func(fr *http2.Framer) { fr.WritePing(false, [8]byte{1}) }))
	}
	writes := []rawWrite{
		{segs: [][]byte{[]byte(walker.Preface)}},
		{segs: [][]byte{many}},
		{segs: [][]byte{split[:4], split[4:12], split[12:50], split[50:]}, vectored: true},
		{segs: [][]byte{hdrs(7, maxFrame+100)}},
		{segs: tiny, vectored: true}, // 20 iovecs: past MAX_IOVECS
		{segs: [][]byte{bytes.Repeat([]byte{'z'}, 9000)}},
	}
	var sent []byte
	for _, w := range writes {
		sent = append(sent, bytes.Join(w.segs, nil)...)
	}

	addrCh := make(chan string, 1)
	srv := in(ns, func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			close(addrCh)
			return err
		}
		defer l.Close()
		addrCh <- l.Addr().String()
		c, err := l.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 1000)
		var got int
		for {
			n, err := c.Read(buf)
			got += n
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		if got != len(sent) {
			return fmt.Errorf("server read %d bytes, want %d", got, len(sent))
		}
		return nil
	})
	addr, ok := <-addrCh
	if !ok {
		wait(t, srv, time.Second)
	}
	var local string
	wait(t, in(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		local = c.LocalAddr().String()
		for _, w := range writes {
			if w.vectored {
				bufs := net.Buffers(slices.Clone(w.segs)) // WriteTo consumes its slice
				if _, err := bufs.WriteTo(c); err != nil {
					return err
				}
			} else if _, err := c.Write(w.segs[0]); err != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond) // one read per write at most... or several
		}
		return nil
	}), 10*time.Second)
	wait(t, srv, 10*time.Second)
	eventually(t, 5*time.Second, "both closes", func() bool { return len(r.rec.snapshot(ns.ino).closes) >= 2 })

	s := r.rec.snapshot(ns.ino)
	reasons := map[event.SkipReason]int{}
	for _, o := range s.opens {
		dir, what := event.Ingress, "server ingress"
		if o.Role == event.RoleClient {
			if o.Local.String() != local {
				continue
			}
			dir, what = event.Egress, "client egress"
		}
		twin := &walker.Conn{Cfg: walker.Config{ChunkSize: DefaultChunkSize, CaptureLimit: 1, MaxFrameCopy: maxFrame}}
		at := 0
		for _, sc := range syscallsOf(t, s, o.Conn) {
			if sc.dir != dir {
				t.Fatalf("%s: a syscall in the other direction", what)
			}
			first, last := sc.events[0], sc.events[len(sc.events)-1]
			from, to := first.StreamOffset, last.StreamOffset+uint64(last.Size)
			segs, vectored := [][]byte{sent[from:to]}, false
			if dir == event.Egress {
				// The client's syscalls are its writes, in order.
				w := writes[at]
				at++
				segs, vectored = w.segs, w.vectored
				if uint64(len(bytes.Join(segs, nil))) != to-from {
					t.Fatalf("write %d of %d bytes reported as one syscall of %d", at-1, len(bytes.Join(segs, nil)), to-from)
				}
			}
			want := twin.Syscall(dir, segs, vectored)
			if len(want) != len(sc.events) {
				t.Fatalf("%s syscall at %d: kernel %d events, twin %d\nkernel %s\ntwin   %s", what, from,
					len(sc.events), len(want), describe(sc.events), describeTwin(want))
			}
			for i, e := range sc.events {
				w := want[i]
				if e.StreamOffset != w.Offset || e.Size != w.Size || !bytes.Equal(e.Payload, w.Payload) || e.Skip != w.Skip {
					t.Fatalf("%s event %d: kernel %s, twin %s", what, i, describe([]event.Data{e}), describeTwin([]walker.Event{w}))
				}
				reasons[e.Skip]++
			}
		}
		if dir == event.Egress && at != len(writes) {
			t.Fatalf("%d of %d writes reported", at, len(writes))
		}
		// The client's writev past the iovec limit cost its walker its
		// place; the server reads single buffers and keeps following (the
		// trailing bytes parse as an oversized extension frame).
		if dir == event.Egress && (twin.Dirs[dir].Mode() != walker.Opaque || twin.Counts.H2Desync != 1) ||
			dir == event.Ingress && twin.Dirs[dir].Mode() != walker.H2 {
			t.Fatalf("%s: twin mode %d, counts %+v", what, twin.Dirs[dir].Mode(), twin.Counts)
		}
	}
	for _, want := range []event.SkipReason{event.SkipH2Data, event.SkipChunkLimit, event.SkipFrameLimit, event.SkipIOVLimit, event.SkipBudget} {
		if reasons[want] == 0 {
			t.Errorf("no %v skip on the client's side: %v", want, reasons)
		}
	}
	counters, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"h2_desync", "h2_frame_limit", "chunk_truncated", "iov_limit", "capture_limit"} {
		if counters[name] == 0 {
			t.Errorf("counter %s not incremented: %v", name, counters)
		}
	}
}
