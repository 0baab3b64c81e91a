package bpf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/weirnet/weir/bpf/event"
)

// TestHTTP1HintLiftsTheBudgetAndSkipsOnlyTheBodyRange: with a 4 KiB budget,
// a connection user space hinted as HTTP/1 is copied whole except the body
// range given to SkipBody, reported size-only as SkipBody; bytes after the
// range are copied even though the budget is long spent. The kernel drops
// the hint when the connection closes.
func TestHTTP1HintLiftsTheBudgetAndSkipsOnlyTheBodyRange(t *testing.T) {
	r := startCollector(t, Config{CaptureLimit: 4096})
	ns := newNetns(t)
	if err := r.Enroll(ns.ino, 10); err != nil {
		t.Fatal(err)
	}
	addrCh := make(chan string, 1)
	srv := in(ns, func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			close(addrCh)
			return err
		}
		addrCh <- l.Addr().String()
		return serve(l, 1)
	})
	addr, ok := <-addrCh
	if !ok {
		wait(t, srv, time.Second)
	}
	const big, after = 200000, 50000
	local := make(chan netip.AddrPort, 1)
	goAhead := make(chan struct{})
	var recv bytes.Buffer
	cli := in(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		if err != nil {
			close(local)
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		r := bufio.NewReader(io.TeeReader(c, &recv))
		ask := func(i, n int) error {
			if _, err := fmt.Fprintf(c, "req %d %d\n", i, n); err != nil {
				return err
			}
			if _, err := r.ReadString('\n'); err != nil {
				return err
			}
			_, err := io.CopyN(io.Discard, r, int64(n))
			return err
		}
		if err := ask(0, 10); err != nil {
			close(local)
			return err
		}
		local <- c.LocalAddr().(*net.TCPAddr).AddrPort()
		<-goAhead
		if err := ask(1, big); err != nil {
			return err
		}
		return ask(2, after)
	})
	la, ok := <-local
	if !ok {
		wait(t, cli, time.Second)
	}
	var id event.ConnID
	eventually(t, 5*time.Second, "the client connection", func() bool {
		for _, o := range r.rec.snapshot(ns.ino).connsBy(event.RoleClient) {
			if o.Local == la {
				id = o.Conn
				return true
			}
		}
		return false
	})
	resp0 := len("resp 0 10\n") + 10
	from := uint64(resp0 + len(fmt.Sprintf("resp 1 %d\n", big)))
	to := from + big - 1000 // the body's last 1000 bytes stay copied
	if err := r.HintHTTP1(id); err != nil {
		t.Fatal(err)
	}
	if err := r.SkipBody(id, event.Ingress, from, to); err != nil {
		t.Fatal(err)
	}
	close(goAhead)
	wait(t, cli, 30*time.Second)
	wait(t, srv, 5*time.Second)
	eventually(t, 5*time.Second, "the client's close", func() bool {
		_, ok := r.rec.snapshot(ns.ino).closeOf(id)
		return ok
	})

	want := recv.Bytes()
	st := streamOf(t, r.rec.snapshot(ns.ino), id, event.Ingress)
	if st.gaps != 0 || st.size != uint64(len(want)) {
		t.Fatalf("ingress: %d gaps, %d bytes covered, want %d", st.gaps, st.size, len(want))
	}
	var skippedBody uint64
	for _, e := range st.events {
		if !bytes.Equal(e.Payload, want[e.StreamOffset:e.StreamOffset+uint64(len(e.Payload))]) {
			t.Fatalf("payload at %d is not what was received", e.StreamOffset)
		}
		sufFrom, sufTo := e.StreamOffset+uint64(len(e.Payload)), e.StreamOffset+uint64(e.Size)
		if sufFrom == sufTo {
			continue
		}
		if e.Skip != event.SkipBody || sufFrom < from || sufTo > to {
			t.Fatalf("bytes [%d, %d) skipped as %v: only the hinted range [%d, %d) may be skipped", sufFrom, sufTo, e.Skip, from, to)
		}
		skippedBody += sufTo - sufFrom
	}
	// The hint lands while the connection is idle, so the kernel applies
	// it to the whole range.
	if skippedBody != to-from {
		t.Fatalf("%d body bytes skipped, want %d", skippedBody, to-from)
	}
	if len(st.captured) != len(want)-int(to-from) {
		t.Fatalf("%d bytes copied, want all %d outside the range", len(st.captured), len(want)-int(to-from))
	}
	var h captureH1Hint
	if err := r.hints.m.Lookup(uint64(id), &h); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("hint still there after close: %+v, %v", h, err)
	}
	if err := r.SkipBody(id, event.Ingress, 10, 5); err == nil || r.ReaderStats().HintFailures != 1 {
		t.Fatalf("a backwards range was accepted (%v) or not counted (%d)", err, r.ReaderStats().HintFailures)
	}
}
