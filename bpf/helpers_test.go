package bpf

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/internal/testenv"
)

// The privileged tests below load real programs into the running kernel
// and drive real TCP traffic over loopback inside network namespaces they
// create with unshare(2). They use nothing but Go and the kernel, so that
// `go test -c` binaries also run in a minimal VM guest on other kernels.

// requireRoot marks a privileged test (internal/testenv): skipped under
// -short and without root.
func requireRoot(t *testing.T) {
	t.Helper()
	testenv.Privileged(t, "loads eBPF programs and creates network namespaces")
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// testNetns is a network namespace kept alive by an open fd; it disappears
// when the fd is closed (at test cleanup) and no thread is left in it.
type testNetns struct {
	fd  int
	ino uint64
}

// newNetns creates a network namespace with loopback up.
func newNetns(t *testing.T) *testNetns {
	t.Helper()
	requireRoot(t)
	type result struct {
		ns  *testNetns
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread is in the new namespace and must
		// die with this goroutine rather than serve others.
		runtime.LockOSThread()
		ns, err := func() (*testNetns, error) {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return nil, fmt.Errorf("unshare netns: %w", err)
			}
			fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, fmt.Errorf("open netns: %w", err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(fd, &st); err != nil {
				unix.Close(fd)
				return nil, fmt.Errorf("stat netns: %w", err)
			}
			if err := loopbackUp(); err != nil {
				unix.Close(fd)
				return nil, err
			}
			return &testNetns{fd: fd, ino: st.Ino}, nil
		}()
		ch <- result{ns, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { unix.Close(r.ns.fd) })
	return r.ns
}

// loopbackUp sets IFF_UP on lo in the calling thread's namespace.
func loopbackUp() error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for ioctl: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// in runs f on a fresh OS thread inside ns (the host namespace when ns is
// nil) and returns a channel with its result. Everything f does — socket
// creation and every read and write — is done by a thread of that
// namespace, which is what the kernel side filters on.
func in(ns *testNetns, f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see newNetns
		if ns != nil {
			if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
				ch <- fmt.Errorf("setns: %w", err)
				return
			}
		}
		ch <- f()
	}()
	return ch
}

// wait returns the result of an `in` call, failing the test after d.
func wait(t *testing.T, ch <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatalf("timed out after %v", d)
	}
}

// recorder is an event.Sink and event.ProcessSink that keeps everything.
type recorder struct {
	mu      sync.Mutex
	opens   []event.ConnOpen
	closes  []event.ConnClose
	data    []event.Data
	procs   []event.ProcessEvent
	retrans []event.Retransmit
}

func (r *recorder) ConnOpen(e event.ConnOpen) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opens = append(r.opens, e)
}

func (r *recorder) ConnClose(e event.ConnClose) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closes = append(r.closes, e)
}

func (r *recorder) Data(e event.Data) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Payload = bytes.Clone(e.Payload) // only valid during the call
	r.data = append(r.data, e)
}

func (r *recorder) Retransmit(e event.Retransmit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retrans = append(r.retrans, e)
}

func (r *recorder) Process(e event.ProcessEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs = append(r.procs, e)
}

// snapshot is a consistent copy of what was recorded, restricted to one
// network namespace.
type snapshot struct {
	opens   []event.ConnOpen
	closes  []event.ConnClose
	data    []event.Data
	procs   []event.ProcessEvent
	retrans []event.Retransmit
}

// retransOf sums the segments of conn's Retransmit events.
func (s snapshot) retransOf(conn event.ConnID) (segs uint64) {
	for _, e := range s.retrans {
		if e.Conn == conn {
			segs += uint64(e.Segments)
		}
	}
	return segs
}

func (r *recorder) snapshot(netns uint64) snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s snapshot
	for _, e := range r.opens {
		if e.Proc.NetnsIno == netns {
			s.opens = append(s.opens, e)
		}
	}
	for _, e := range r.closes {
		if e.Proc.NetnsIno == netns {
			s.closes = append(s.closes, e)
		}
	}
	for _, e := range r.data {
		if e.Proc.NetnsIno == netns {
			s.data = append(s.data, e)
		}
	}
	for _, e := range r.procs {
		if e.Proc.NetnsIno == netns {
			s.procs = append(s.procs, e)
		}
	}
	// Retransmits carry only their connection: keep those of the
	// connections this namespace opened.
	for _, e := range r.retrans {
		if slices.ContainsFunc(s.opens, func(o event.ConnOpen) bool { return o.Conn == e.Conn }) {
			s.retrans = append(s.retrans, e)
		}
	}
	return s
}

// all returns everything recorded, whatever the namespace.
func (r *recorder) all() snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return snapshot{
		opens:   slices.Clone(r.opens),
		closes:  slices.Clone(r.closes),
		data:    slices.Clone(r.data),
		procs:   slices.Clone(r.procs),
		retrans: slices.Clone(r.retrans),
	}
}

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// running is a loaded collector with Run delivering into rec.
type running struct {
	*Collector
	rec *recorder
}

// startCollector loads a collector, runs it, and tears both down at cleanup.
func startCollector(t *testing.T, cfg Config) running {
	t.Helper()
	if cfg.CaptureTier == CaptureAuto {
		// WEIR_TEST_CAPTURE_TIER=syscall runs the tests that do not pick
		// a tier under the syscall tier on a kernel that has both.
		if v := os.Getenv("WEIR_TEST_CAPTURE_TIER"); v != "" {
			tier, err := ParseCaptureTier(v)
			if err != nil {
				t.Fatalf("WEIR_TEST_CAPTURE_TIER: %v", err)
			}
			cfg.CaptureTier = tier
		}
	}
	return startCollectorExact(t, cfg)
}

// startCollectorExact is startCollector without the environment's tier.
func startCollectorExact(t *testing.T, cfg Config) running {
	t.Helper()
	requireRoot(t)
	c, err := Load(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, rec) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return running{c, rec}
}

// stream is one direction of one connection rebuilt from Data events.
type stream struct {
	events   []event.Data
	size     uint64 // bytes the events cover
	captured []byte // payloads concatenated in Seq order
	gaps     int    // missing Seq numbers
}

// streamOf orders the events of conn/dir by Seq and checks that sizes and
// offsets line up: each event starts where the one before ended.
func streamOf(t *testing.T, s snapshot, conn event.ConnID, dir event.Direction) stream {
	t.Helper()
	var st stream
	for _, d := range s.data {
		if d.Conn == conn && d.Direction == dir {
			st.events = append(st.events, d)
		}
	}
	slices.SortFunc(st.events, func(a, b event.Data) int { return int(a.Seq) - int(b.Seq) })
	next := uint64(0)
	for i, d := range st.events {
		if i > 0 && d.Seq == st.events[i-1].Seq {
			t.Fatalf("conn %d %v: Seq %d delivered twice", conn, dir, d.Seq)
		}
		if d.Seq != uint64(i+st.gaps) {
			st.gaps += int(d.Seq) - (i + st.gaps)
		}
		if st.gaps == 0 && d.StreamOffset != next {
			t.Fatalf("conn %d %v: Seq %d at offset %d, want %d", conn, dir, d.Seq, d.StreamOffset, next)
		}
		if len(d.Payload) > int(d.Size) {
			t.Fatalf("conn %d %v: Seq %d carries %d bytes for a size of %d", conn, dir, d.Seq, len(d.Payload), d.Size)
		}
		if (len(d.Payload) < int(d.Size)) != d.Truncated {
			t.Fatalf("conn %d %v: Seq %d has %d of %d bytes but Truncated=%v", conn, dir, d.Seq, len(d.Payload), d.Size, d.Truncated)
		}
		next = d.StreamOffset + uint64(d.Size)
		st.size += uint64(d.Size)
		st.captured = append(st.captured, d.Payload...)
	}
	return st
}

// complete fails unless the stream has no gaps, nothing truncated, and
// exactly want as its bytes.
func (st stream) complete(t *testing.T, what string, want []byte) {
	t.Helper()
	if st.gaps != 0 {
		t.Fatalf("%s: %d Seq gaps", what, st.gaps)
	}
	if st.size != uint64(len(want)) {
		t.Fatalf("%s: events cover %d bytes, want %d", what, st.size, len(want))
	}
	if !bytes.Equal(st.captured, want) {
		t.Fatalf("%s: captured bytes differ from what was sent (%d vs %d bytes)\ncaptured: %.200q\nwant:     %.200q",
			what, len(st.captured), len(want), st.captured, want)
	}
}

// connsBy returns the ConnOpen events of a role.
func (s snapshot) connsBy(role event.Role) []event.ConnOpen {
	var out []event.ConnOpen
	for _, o := range s.opens {
		if o.Role == role {
			out = append(out, o)
		}
	}
	return out
}

func (s snapshot) closeOf(conn event.ConnID) (event.ConnClose, bool) {
	for _, c := range s.closes {
		if c.Conn == conn {
			return c, true
		}
	}
	return event.ConnClose{}, false
}
