package bpf

//lint:file-ignore SA1019 x/net/http2's Server.ServeConn and Transport are this test's reference HTTP/2 peer: one
// prior-knowledge connection per transport on a listener the test owns; net/http's Protocols would change the peer under test.

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/bpf/walker"
	"golang.org/x/net/http2"
)

// teeConn records what a connection sent and received, in order.
type teeConn struct {
	net.Conn
	mu         sync.Mutex
	sent, recv bytes.Buffer
}

func (c *teeConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.recv.Write(b[:n])
	c.mu.Unlock()
	return n, err
}

func (c *teeConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	c.sent.Write(b[:n])
	c.mu.Unlock()
	return n, err
}

// h2PeerEnv makes the test binary an HTTP/2 peer process (see h2Peer): it
// is re-executed from a thread in the enrolled netns, so every thread of
// the Go runtime that touches its sockets is in that namespace, which is
// what the kernel side filters on.
const h2PeerEnv = "WEIR_BPF_TEST_H2PEER"

// Shape of the h2 peer's traffic.
const (
	h2Conns    = 2
	h2Requests = 40
	h2BodySize = 40000
)

// h2Peer runs an h2c server (x/net/http2) and client in this process:
// h2Conns connections one after the other, each carrying h2Requests
// concurrent POSTs with bodies of h2BodySize answered with as much and a
// trailer (a HEADERS frame written right behind the last DATA frame). It
// leaves in dir, per client connection i, i.addr (its local address),
// i.sent and i.recv.
func h2Peer(dir string) error {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("X-Req", r.Header.Get("X-Req"))
		w.Write(bytes.Repeat([]byte{'r'}, h2BodySize))
		w.Header().Set("X-Sum", fmt.Sprint(n))
	})
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var srvConns sync.WaitGroup
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			srvConns.Go(func() {
				(&http2.Server{}).ServeConn(c, &http2.ServeConnOpts{Handler: handler})
				c.Close()
			})
		}
	}()
	defer srvConns.Wait()
	defer l.Close()
	addr := l.Addr().String()
	var (
		mu   sync.Mutex
		tees []*teeConn
	)
	for range h2Conns {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tee := &teeConn{Conn: c}
			mu.Lock()
			tees = append(tees, tee)
			mu.Unlock()
			return tee, nil
		}}
		client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		do := func(i int) error {
			req, _ := http.NewRequest("POST", "http://"+addr+fmt.Sprintf("/svc/%d", i),
				bytes.NewReader(bytes.Repeat([]byte{'q'}, h2BodySize)))
			req.Header.Set("X-Req", strings.Repeat(fmt.Sprint(i), 1+i%40)) // churns HPACK
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != h2BodySize {
				return fmt.Errorf("response body: %d bytes, %v", n, err)
			}
			return nil
		}
		if err := do(0); err != nil { // one connection, then concurrency on it
			return err
		}
		var wg sync.WaitGroup
		errs := make(chan error, h2Requests)
		for i := 1; i < h2Requests; i++ {
			wg.Go(func() {
				if err := do(i); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		tr.CloseIdleConnections()
	}
	time.Sleep(100 * time.Millisecond) // the server ends read what was sent
	mu.Lock()
	defer mu.Unlock()
	for i, tee := range tees {
		tee.mu.Lock()
		for name, b := range map[string][]byte{
			"addr": []byte(tee.LocalAddr().String()), "sent": tee.sent.Bytes(), "recv": tee.recv.Bytes(),
		} {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.%s", i, name)), b, 0o600); err != nil {
				return err
			}
		}
		tee.mu.Unlock()
	}
	return nil
}

// peerConn is one client connection of the h2 peer as it recorded it.
type peerConn struct {
	local      netip.AddrPort
	sent, recv []byte
}

// runH2Peer runs h2Peer as a child process in ns and returns its
// connections.
func runH2Peer(t *testing.T, ns *testNetns) []peerConn {
	t.Helper()
	dir := t.TempDir()
	wait(t, in(ns, func() error {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), h2PeerEnv+"="+dir)
		cmd.Stderr = os.Stderr
		return cmd.Run()
	}), 90*time.Second)
	var out []peerConn
	for i := 0; ; i++ {
		addr, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d.addr", i)))
		if err != nil {
			break
		}
		var pc peerConn
		if pc.local, err = netip.ParseAddrPort(string(addr)); err != nil {
			t.Fatal(err)
		}
		pc.sent, _ = os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d.sent", i)))
		pc.recv, _ = os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d.recv", i)))
		out = append(out, pc)
	}
	if len(out) != h2Conns {
		t.Fatalf("h2 peer recorded %d connections, want %d", len(out), h2Conns)
	}
	return out
}

// syscallOf is one syscall's events as the kernel reported them.
type syscallOf struct {
	dir    event.Direction
	events []event.Data
}

// syscallsOf groups conn's events (both directions) into syscalls, in the
// order the syscalls ended.
func syscallsOf(t *testing.T, s snapshot, conn event.ConnID) []syscallOf {
	t.Helper()
	var out []syscallOf
	for _, dir := range []event.Direction{event.Egress, event.Ingress} {
		st := streamOf(t, s, conn, dir)
		if st.gaps != 0 {
			t.Fatalf("conn %d %v: %d Seq gaps", conn, dir, st.gaps)
		}
		var cur []event.Data
		for _, d := range st.events {
			cur = append(cur, d)
			if d.Send != nil || d.Recv != nil || isLast(d, st.events) {
				out = append(out, syscallOf{dir, cur})
				cur = nil
			}
		}
		if len(cur) > 0 {
			t.Fatalf("conn %d %v: events after the last syscall's last", conn, dir)
		}
	}
	slices.SortStableFunc(out, func(a, b syscallOf) int {
		return int(int64(a.events[0].End) - int64(b.events[0].End))
	})
	return out
}

// isLast reports whether d is the last event of its syscall: the next event
// belongs to another syscall (other timestamps) or there is none.
func isLast(d event.Data, evs []event.Data) bool {
	i := slices.IndexFunc(evs, func(e event.Data) bool { return e.Seq == d.Seq })
	return i == len(evs)-1 || evs[i+1].Start != d.Start || evs[i+1].End != d.End
}

// TestH2WalkerCopiesEveryFrameHeaderAndSkipsDataPastBudget runs real
// HTTP/2 traffic past a 4 KiB budget and checks, for both ends of every
// connection: every frame header and every non-DATA payload was copied,
// DATA payloads were skipped as SkipH2Data, and the kernel's events are
// exactly those the Go twin (package bpf/walker) predicts for the same
// syscalls.
func TestH2WalkerCopiesEveryFrameHeaderAndSkipsDataPastBudget(t *testing.T) {
	const budget = 4096
	r := startCollector(t, Config{CaptureLimit: budget})
	ns := newNetns(t)
	if err := r.Enroll(ns.ino, 9); err != nil {
		t.Fatal(err)
	}
	tees := runH2Peer(t, ns)
	eventually(t, 10*time.Second, "a close for every connection", func() bool {
		return len(r.rec.snapshot(ns.ino).closes) >= 2*len(tees)
	})
	s := r.rec.snapshot(ns.ino)
	var skipped, dataSkips, frames, packed int
	for _, tee := range tees {
		local := tee.local
		for _, o := range s.opens {
			var out, in []byte // what this end sent and received
			switch {
			case o.Role == event.RoleClient && o.Local == local:
				out, in = tee.sent, tee.recv
			case o.Role == event.RoleServer && o.Remote == local:
				out, in = tee.recv, tee.sent
			default:
				continue
			}
			streams := [2][]byte{event.Egress: out, event.Ingress: in}
			twin := &walker.Conn{Cfg: walker.Config{ChunkSize: DefaultChunkSize, CaptureLimit: budget, MaxFrameCopy: DefaultMaxFrameCopy}}
			var copied [2][]bool
			for d := range streams {
				copied[d] = make([]bool, len(streams[d]))
			}
			for _, sc := range syscallsOf(t, s, o.Conn) {
				first, last := sc.events[0], sc.events[len(sc.events)-1]
				from, to := first.StreamOffset, last.StreamOffset+uint64(last.Size)
				want := twin.Syscall(sc.dir, [][]byte{streams[sc.dir][from:to]}, false)
				if len(want) != len(sc.events) {
					t.Fatalf("conn %d %v syscall at %d: kernel %d events, twin %d\nkernel %s\ntwin   %s", o.Conn, sc.dir, from,
						len(sc.events), len(want), describe(sc.events), describeTwin(want))
				}
				for i, e := range sc.events {
					w := want[i]
					if e.StreamOffset != w.Offset || e.Size != w.Size || !bytes.Equal(e.Payload, w.Payload) || e.Skip != w.Skip {
						t.Fatalf("conn %d %v event %d: kernel %s, twin %s", o.Conn, sc.dir, i, describe([]event.Data{e}), describeTwin([]walker.Event{w}))
					}
					if !bytes.Equal(e.Payload, streams[sc.dir][e.StreamOffset:e.StreamOffset+uint64(len(e.Payload))]) {
						t.Fatalf("conn %d %v: payload at %d is not what was moved", o.Conn, sc.dir, e.StreamOffset)
					}
					for k := range e.Payload {
						copied[sc.dir][e.StreamOffset+uint64(k)] = true
					}
					if e.Skip == event.SkipH2Data && i+1 < len(sc.events) {
						packed++ // more frames behind a skipped DATA payload, same syscall
					}
					if e.Skip != event.SkipNone {
						skipped++
						if e.Skip == event.SkipH2Data {
							dataSkips++
						}
					}
				}
			}
			for d := range streams {
				frames += checkFramesCopied(t, streams[d], copied[d], fmt.Sprintf("conn %d %v", o.Conn, event.Direction(d)))
				if twin.Dirs[d].Mode() != walker.H2 {
					t.Fatalf("conn %d %v: walker mode %d, counts %+v", o.Conn, event.Direction(d), twin.Dirs[d].Mode(), twin.Counts)
				}
			}
		}
	}
	if packed == 0 {
		t.Fatalf("no syscall carried frames behind a skipped DATA payload: the test proves nothing about packing")
	}
	if dataSkips == 0 || skipped != dataSkips {
		t.Fatalf("%d skipped suffixes, %d of them DATA payloads: want only DATA skips, some", skipped, dataSkips)
	}
	counters, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if counters["h2_desync"] != 0 || counters["ringbuf_full"] != 0 || counters["chunk_truncated"] != 0 {
		t.Fatalf("kernel counters %v", counters)
	}
	t.Logf("%d frames checked, %d DATA payload skips, %d of them with frames behind in the same syscall", frames, dataSkips, packed)
}

// checkFramesCopied walks the HTTP/2 frames of a whole stream and fails
// unless every frame header, and the payload of every frame but DATA, is
// in copied. It returns how many frames it checked.
func checkFramesCopied(t *testing.T, b []byte, copied []bool, what string) int {
	t.Helper()
	at, n := 0, 0
	if bytes.HasPrefix(b, []byte(walker.Preface)) {
		if !all(copied[:len(walker.Preface)]) {
			t.Fatalf("%s: preface not copied", what)
		}
		at = len(walker.Preface)
	}
	for at+9 <= len(b) {
		length := int(b[at])<<16 | int(b[at+1])<<8 | int(b[at+2])
		typ := b[at+3]
		if !all(copied[at : at+9]) {
			t.Fatalf("%s: header of frame %d (type %d) at %d not copied", what, n, typ, at)
		}
		if typ != 0 && !all(copied[at+9:at+9+length]) {
			t.Fatalf("%s: payload of frame %d (type %d, %d bytes) at %d not copied", what, n, typ, length, at)
		}
		at += 9 + length
		n++
	}
	if at != len(b) {
		t.Fatalf("%s: stream of %d bytes ends inside a frame at %d", what, len(b), at)
	}
	return n
}

func all(b []bool) bool { return !slices.Contains(b, false) }

func describe(evs []event.Data) string {
	var sb strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&sb, "[@%d %d/%d %v] ", e.StreamOffset, len(e.Payload), e.Size, e.Skip)
	}
	return sb.String()
}

func describeTwin(evs []walker.Event) string {
	var sb strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&sb, "[@%d %d/%d %v] ", e.Offset, len(e.Payload), e.Size, e.Skip)
	}
	return sb.String()
}
