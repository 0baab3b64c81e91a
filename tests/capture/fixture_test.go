package capture

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

func TestMain(m *testing.M) { peers.Main(m) }

// waitTimeout bounds every wait for the daemon to reflect traffic.
const waitTimeout = 20 * time.Second

// serverPort is where the server peer listens in the server pod.
const serverPort = 8080

// defaultCaptureLimit is the per-connection capture limit of most cases:
// above every transfer they make, so the dumps must hold every byte.
const defaultCaptureLimit = 4 << 20

var (
	needBin = []string{"weir-daemon"}
	needCNI = []string{"bridge", "host-local", "weir"}
)

// fixture is a capturing weir-daemon and two enrolled pods, "server" and
// "client", on a weir-chained network.
type fixture struct {
	bins    harness.Binaries
	daemon  *harness.Daemon
	dumpDir string
	net     *harness.Network
	server  *harness.Pod
	client  *harness.Pod
}

type fixtureOptions struct {
	ipv6       bool
	daemonArgs []string // appended after the suite's defaults (later flags win)
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	harness.RequireRoot(t)
	f := &fixture{bins: harness.FindBinaries(t, needBin, needCNI), dumpDir: t.TempDir()}
	args := append([]string{
		"--capture.dump-dir", f.dumpDir,
		"--bpf.capture-limit", strconv.Itoa(defaultCaptureLimit),
	}, o.daemonArgs...)
	f.daemon = harness.StartDaemon(t, f.bins, harness.DaemonOptions{ExtraArgs: args})
	f.net = harness.NewNetwork(t, f.bins, harness.NetworkOptions{
		IPv6: o.ipv6,
		Weir: &harness.WeirConf{DaemonSocket: f.daemon.Socket, SpoolDir: f.daemon.SpoolDir, Timeout: "2s"},
	})
	f.server = f.net.AddPod(t, harness.PodSpec{Namespace: "capture", Name: "server"})
	f.client = f.net.AddPod(t, harness.PodSpec{Namespace: "capture", Name: "client"})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := f.daemon.WaitPods(ctx, func(p []harness.PodRecord) bool {
		_, a := harness.FindPod(p, f.server.ContainerID)
		_, b := harness.FindPod(p, f.client.ContainerID)
		return a && b
	}); err != nil {
		t.Fatalf("pods not enrolled: %v", err)
	}
	return f
}

func podKey(p *harness.Pod) string { return p.Namespace + "/" + p.Name }

// startServer runs the Go HTTP server peer in the server pod.
func (f *fixture) startServer(t *testing.T) netip.AddrPort {
	t.Helper()
	peers.Start(t, f.server, "http-server", "http-server", "-listen", fmt.Sprintf(":%d", serverPort), "-name", "server")
	return netip.AddrPortFrom(f.server.IPv4(), serverPort)
}

// conns returns every connection the daemon lists for a pod.
func (f *fixture) conns(t *testing.T, pod *harness.Pod) []harness.Connection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs, err := f.daemon.Connections(ctx, harness.ConnQuery{Pod: podKey(pod)})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// waitClosed waits until, for every address in addrs, the pod has a closed
// connection whose address on side ("local" or "remote") is that address,
// and returns them in the order of addrs. An address may repeat: a client
// can get the same ephemeral port again once its earlier connection is
// gone, so the n-th occurrence of an address is matched with the n-th
// connection of that address by first-seen time.
func (f *fixture) waitClosed(t *testing.T, pod *harness.Pod, side string, addrs []netip.AddrPort) []harness.Connection {
	t.Helper()
	want := map[netip.AddrPort]int{}
	for _, a := range addrs {
		want[a]++
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var found map[netip.AddrPort][]harness.Connection
	matched := 0
	err := harness.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		cs, err := f.daemon.Connections(ctx, harness.ConnQuery{Pod: podKey(pod), State: "closed"})
		if err != nil {
			return false, err
		}
		found, matched = map[netip.AddrPort][]harness.Connection{}, 0
		for _, c := range cs {
			a := c.Local
			if side == "remote" {
				a = c.Remote
			}
			if want[a] > 0 {
				found[a] = append(found[a], c)
			}
		}
		done := true
		for a, n := range want {
			if len(found[a]) > n {
				return false, fmt.Errorf("%d closed connections of %s with %s address %s, the peer made %d:%s", len(found[a]), podKey(pod), side, a, n, describe(found[a]))
			}
			matched += len(found[a])
			done = done && len(found[a]) == n
		}
		return done, nil
	})
	if err != nil {
		open, _ := f.daemon.Connections(context.Background(), harness.ConnQuery{Pod: podKey(pod), State: "open"})
		t.Fatalf("pod %s: %d of %d expected closed connections (by %s address) listed: %v\nstill open:%s",
			podKey(pod), matched, len(addrs), side, err, describe(open))
	}
	out := make([]harness.Connection, len(addrs))
	next := map[netip.AddrPort]int{}
	for i, a := range addrs {
		cs := found[a]
		slices.SortFunc(cs, func(x, y harness.Connection) int { return x.FirstSeen.Compare(y.FirstSeen) })
		out[i] = cs[next[a]]
		next[a]++
	}
	return out
}

// checkDump compares the daemon's dump of a connection with the peer's own
// record: egress must be exactly what the side sent, ingress what it read.
func (f *fixture) checkDump(t *testing.T, c harness.Connection, wantEgress, wantIngress []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := harness.WaitDump(ctx, f.dumpDir, c.ID)
	if err != nil {
		t.Errorf("connection %d (%s %s→%s): %v", c.ID, c.Role, c.Local, c.Remote, err)
		return
	}
	compareBytes(t, fmt.Sprintf("connection %d %s egress", c.ID, c.Role), d.Egress, wantEgress)
	compareBytes(t, fmt.Sprintf("connection %d %s ingress", c.ID, c.Role), d.Ingress, wantIngress)
}

func compareBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if string(got) == string(want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Errorf("%s: captured %d bytes, peer moved %d; first difference at offset %d\n got: %q\nwant: %q",
		what, len(got), len(want), i, around(got, i), around(want, i))
}

func around(b []byte, i int) []byte {
	lo, hi := max(0, i-32), min(len(b), i+32)
	if lo > hi {
		return nil
	}
	return b[lo:hi]
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatalf("peer reported address %q: %v", s, err)
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// selfComm is the comm the kernel gives the re-executed test binary: its
// file name, cut to 15 bytes (TASK_COMM_LEN - 1).
func selfComm(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := filepath.Base(exe)
	if len(c) > 15 {
		c = c[:15]
	}
	return c
}

func runCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// describe formats connections for a failure message.
func describe(cs []harness.Connection) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "\n  id=%d pid=%d fd=%d %s %s→%s state=%s close=%q openSeen=%v sent=%d recv=%d syscalls=%d/%d gaps=%d first=%s last=%s connect=%+v",
			c.ID, c.PID, c.FD, c.Role, c.Local, c.Remote, c.State, c.CloseReason, c.OpenSeen, c.BytesSent, c.BytesRecv,
			c.SyscallsSent, c.SyscallsRecv, c.Gaps, c.FirstSeen.Format("15:04:05.000000"), c.LastSeen.Format("15:04:05.000000"), c.Connect)
	}
	return b.String()
}

// captureTier is the capture tier the daemon runs ("socket" or "syscall"),
// as /api/v1/features says.
func (f *fixture) captureTier(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var feat wire.Features
	if err := f.daemon.GetJSON(ctx, "/api/v1/features", &feat); err != nil {
		t.Fatal(err)
	}
	if feat.CaptureTier == "" {
		t.Fatal("/api/v1/features names no capture tier")
	}
	return feat.CaptureTier
}
