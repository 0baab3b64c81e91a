package monitor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/capture"
	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/daemon/streamdump"
)

// testNetns is a network namespace kept alive by an open fd.
type testNetns struct {
	fd  int
	ino uint64
}

// newNetns creates a network namespace with loopback up, from a thread
// that is then left to die in it.
func newNetns(t *testing.T) *testNetns {
	t.Helper()
	type result struct {
		ns  *testNetns
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is in the namespace
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

// startIn starts cmd from a thread inside ns, so the process and all its
// threads live in ns.
func startIn(ns *testNetns, cmd *exec.Cmd) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread joins ns
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			ch <- fmt.Errorf("setns: %w", err)
			return
		}
		ch <- cmd.Start()
	}()
	return <-ch
}

// TestRealCaptureOfAnHTTPWorkload runs the whole pipeline on the real eBPF
// collector: a namespace enrolled through a real registry, an HTTP/1.1
// server and client in it, and checks that /api/v1/requests shows exactly
// the exchanges made, from both sides, and that the stream dump holds
// exactly the bytes the client sent and received.
func TestRealCaptureOfAnHTTPWorkload(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("loads eBPF programs and creates a network namespace: needs root")
	}
	ns := newNetns(t)
	dumpDir := filepath.Join(t.TempDir(), "dump")
	cfg := config.Default()
	cfg.Capture.DumpDir = dumpDir
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rec := &recorder{}
	m, err := New(Options{Config: cfg, Logger: log, Consumers: []flow.Consumer{rec}})
	if err != nil {
		t.Fatalf("New: %v (%s)", err, Explain(err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})

	reg, err := registry.Open(registry.Options{Dir: t.TempDir(), Observers: []registry.Observer{m}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Enroll(&registry.Pod{
		Network: "test", ContainerID: "0123456789abcdef", Ifname: "eth0", Namespace: "demo", Name: "app-6c7d9f8b5-k2lm4",
		NetnsInode: ns.ino, IPs: []registry.IPConfig{{Address: "127.0.0.1/8"}},
	}); err != nil {
		t.Fatal(err)
	}
	srv := api.New(reg, log)
	m.RegisterHTTP(srv)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)

	work := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+work)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := startIn(ns, cmd); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("workload: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-waited
		t.Fatalf("workload did not finish in 30s\n%s", stderr.String())
	}
	var made []madeRequest
	if b, err := os.ReadFile(filepath.Join(work, "requests.json")); err != nil || json.Unmarshal(b, &made) != nil {
		t.Fatalf("workload's request list: %v", err)
	}
	wantMade := append(slices.Clone(keepAliveRequests), newConnRequests...)
	if len(made) != len(wantMade) {
		t.Fatalf("workload made %v", made)
	}

	// Every exchange shows up twice, as the client and as the server.
	client := wire.NewClient
	c, err := client(ts.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []wire.Request
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err = c.Requests(context.Background(), "demo/app-6c7d9f8b5-k2lm4", 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= 2*len(made) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, role := range []string{"client", "server"} {
		var seen []string
		for i := len(got) - 1; i >= 0; i-- { // oldest first
			r := got[i]
			if r.Role != role {
				continue
			}
			seen = append(seen, fmt.Sprintf("%s %s %d", r.Method, r.Path, r.Status))
			if r.PeerPod != "demo/app-6c7d9f8b5-k2lm4" || r.Incomplete || r.Protocol != "HTTP/1.1" || r.LatencyMs <= 0 {
				t.Errorf("%s request %+v: want a complete HTTP/1.1 exchange with its own pod as peer", role, r)
			}
		}
		var want []string
		for _, r := range made {
			want = append(want, fmt.Sprintf("%s %s %d", r.Method, r.Path, r.Status))
		}
		if !slices.Equal(seen, want) {
			t.Errorf("%s-side requests:\n%v\nwant:\n%v", role, seen, want)
		}
	}

	// The dump of every client connection is byte for byte what the
	// client sent and received; the server's side is the mirror image.
	sents, _ := filepath.Glob(filepath.Join(work, "*-sent.bin"))
	if len(sents) != 1+len(newConnRequests) {
		t.Fatalf("workload recorded %d connections, want %d", len(sents), 1+len(newConnRequests))
	}
	var summaries []streamdump.Summary
	deadline = time.Now().Add(10 * time.Second)
	for {
		summaries = summaries[:0]
		files, _ := filepath.Glob(filepath.Join(dumpDir, "*.json"))
		for _, f := range files {
			var s streamdump.Summary
			if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &s) == nil {
				summaries = append(summaries, s)
			}
		}
		if len(summaries) >= 2*len(sents) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	readDump := func(id uint64, dir string) []byte {
		b, err := os.ReadFile(filepath.Join(dumpDir, fmt.Sprintf("%d-%s.bin", id, dir)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, sent := range sents {
		var port uint16
		fmt.Sscanf(filepath.Base(sent), "%d-sent.bin", &port)
		wantSent, _ := os.ReadFile(sent)
		wantRecv, _ := os.ReadFile(filepath.Join(work, fmt.Sprintf("%d-recv.bin", port)))
		found := 0
		for _, s := range summaries {
			ci := s.Connection
			var egress, ingress []byte
			switch {
			case ci.Role == "client" && ci.Local.Port() == port:
				egress, ingress = wantSent, wantRecv
			case ci.Role == "server" && ci.Remote.Port() == port:
				egress, ingress = wantRecv, wantSent
			default:
				continue
			}
			found++
			if len(s.Gaps) != 0 {
				t.Errorf("conn %d (%s, port %d): gaps %+v", ci.ID, ci.Role, port, s.Gaps)
			}
			if got := readDump(ci.ID, "egress"); !bytes.Equal(got, egress) {
				t.Errorf("conn %d (%s, port %d): egress dump %q, want %q", ci.ID, ci.Role, port, got, egress)
			}
			if got := readDump(ci.ID, "ingress"); !bytes.Equal(got, ingress) {
				t.Errorf("conn %d (%s, port %d): ingress dump %q, want %q", ci.ID, ci.Role, port, got, ingress)
			}
		}
		if found != 2 {
			t.Errorf("client port %d: %d dumped connections (want its client and its server side)", port, found)
		}
	}
	// Consumers got every connect, accept and exchange, each exchange with
	// the read and the write that carried it.
	conns := len(sents)
	deadline = time.Now().Add(10 * time.Second)
	for {
		rec.mu.Lock()
		n := len(rec.exchanges)
		rec.mu.Unlock()
		if n >= 2*len(made) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rec.mu.Lock()
	kinds := map[flow.OpKind]int{}
	for _, op := range rec.ops {
		kinds[op.Kind]++
	}
	// A connection's close is reported by the kernel side when close
	// returns; another thread can accept a connection on the freed fd
	// first. Reuse of an fd does not end a connection (the table keys the
	// new one apart), so every connection ends closed; the close op count
	// follows the closes the table applied.
	closed := 0
	for _, s := range summaries {
		if s.Connection.CloseReason != capture.ReasonClosed {
			t.Errorf("connection %d ended %q, want closed", s.Connection.ID, s.Connection.CloseReason)
			continue
		}
		closed++
	}
	if kinds[flow.OpConnect] != conns || kinds[flow.OpAccept] != conns || kinds[flow.OpClose] != closed {
		t.Errorf("kernel ops by kind = %v, want %d connect, %d accept, %d close", kinds, conns, conns, closed)
	}
	if len(rec.exchanges) != 2*len(made) {
		t.Errorf("%d exchanges delivered, want %d", len(rec.exchanges), 2*len(made))
	}
	for _, ex := range rec.exchanges {
		var read, write bool
		for _, op := range ex.Ops {
			read = read || op.Kind == flow.OpRead
			write = write || op.Kind == flow.OpWrite
		}
		if !read || !write || ex.Conn.Local.Pod == nil || ex.Conn.Local.Pod.Service != "app" {
			t.Errorf("exchange %s %s (%s): ops %d read %t write %t, local pod %+v", ex.Record.Method, ex.Record.Path,
				ex.Conn.Role, len(ex.Ops), read, write, ex.Conn.Local.Pod)
		}
	}
	rec.mu.Unlock()

	// The connections API names the pod.
	infos, err := c.Connections(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, ci := range infos {
		if ci.Namespace == "demo" && ci.Pod == "app-6c7d9f8b5-k2lm4" {
			named++
		}
	}
	if named < 2*conns {
		t.Errorf("connections API: %d of %d connections name the pod", named, len(infos))
	}

	if t.Failed() {
		var all []string
		for _, s := range summaries {
			all = append(all, fmt.Sprintf("%d %s %s->%s %s", s.Connection.ID, s.Connection.Role, s.Connection.Local, s.Connection.Remote, s.Connection.CloseReason))
		}
		t.Logf("dumped connections: %v", all)
		for _, ci := range m.Table().Connections(capture.Filter{}) {
			b, _ := json.Marshal(ci)
			t.Logf("table: %s", b)
		}
		files, _ := filepath.Glob(filepath.Join(work, "*"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			t.Logf("workload file %s: %q", filepath.Base(f), b)
		}
		t.Logf("workload output:\n%s", stderr.String())
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal("monitor stopped early")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// Keep the check honest: the API handler answers from the same monitor.
var _ http.Handler = (*api.Server)(nil)
