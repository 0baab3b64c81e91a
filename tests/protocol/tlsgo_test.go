package protocol

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

// TestGoTLSFromTheFirstRequest runs the Go peers over TLS: a net/http
// HTTPS server and a grpc-go server in one enrolled pod, one-shot Go
// clients (each a new process making its first request at once) in
// another. The peers are this test binary, a Go binary with crypto/tls:
// the daemon probes it at the server's exec, before any client exists, so
// every client request is recorded on both sides from each process's
// first, parsed as in clear text: HTTP/1.1, HTTP/2 by ALPN, and gRPC
// (unary, server streaming, an error status). The connections say "go".
//
// Then the late path, measured: fresh copies of a Go client (a new file
// each, never seen) are probed only when their exec reaches the daemon,
// racing the process's first call. Each such file is counted
// (weir_tls_late_probes_total); the share of first requests missed is
// logged. Last, a container root first seen at an exec has its programs
// probed then: a client started from it afterwards is recorded from its
// first request.
func TestGoTLSFromTheFirstRequest(t *testing.T) {
	harness.RequireRoot(t)
	f := &fixture{bins: harness.FindBinaries(t, needBin, needCNI)}
	f.daemon = harness.StartDaemon(t, f.bins, harness.DaemonOptions{ExtraArgs: []string{"--bpf.tls"}})
	f.net = harness.NewNetwork(t, f.bins, harness.NetworkOptions{
		Weir: &harness.WeirConf{DaemonSocket: f.daemon.Socket, SpoolDir: f.daemon.SpoolDir, Timeout: "2s"},
	})
	f.server = f.net.AddPod(t, harness.PodSpec{Namespace: "gotls", Name: "server"})
	f.client = f.net.AddPod(t, harness.PodSpec{Namespace: "gotls", Name: "client"})
	ip := f.server.IPv4()
	f.goSrv = netip.AddrPortFrom(ip, 8443)
	f.grpcSrv = netip.AddrPortFrom(ip, 9443)
	cert, key := peers.SelfSignedCert(t, t.TempDir())
	f.goLog = t.TempDir() + "/go-server.log"
	peers.Start(t, f.server, "go https-server", "http-server", "-listen", f.goSrv.String(), "-log", f.goLog,
		"-name", "go", "-tls-cert", cert, "-tls-key", key)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	selfIno, err := harness.Inode(self)
	if err != nil {
		t.Fatal(err)
	}
	waitGoProbed(ctx, t, f.daemon, selfIno, f.server)
	peers.Start(t, f.server, "grpc-server", "grpc-server", "-listen", f.grpcSrv.String(), "-tls-cert", cert, "-tls-key", key)

	const clients = 10
	url := "https://" + f.goSrv.String()
	for _, c := range []struct{ name, proto, flag string }{{"gotls1", "HTTP/1.1", ""}, {"gotls2", "HTTP/2", "-h2"}} {
		paths := fmt.Sprintf("/%[1]s/bytes/100?c=%[1]s,/%[1]s/status/404?c=%[1]s,/%[1]s/x?c=%[1]s", c.name)
		for range clients {
			args := []string{"http-client", "-url", url, "-n", "3", "-paths", paths}
			if c.flag != "" {
				args = append(args, c.flag)
			}
			var rep peers.HTTPClientReport
			if err := peers.RunJSON(runCtx(t), f.client, &rep, args...); err != nil {
				t.Fatal(err)
			}
		}
		truth := f.goTruth(t, caseMarker(c.name), 3*clients)
		f.checkRecords(t, expect{pod: f.server, role: "server", peer: f.client, protocol: c.proto, match: caseMarker(c.name)}, truth)
		f.checkRecords(t, expect{pod: f.client, role: "client", peer: f.server, protocol: c.proto, match: caseMarker(c.name)}, truth)
	}

	var rep peers.GRPCClientReport
	if err := peers.RunJSON(runCtx(t), f.client, &rep, "grpc-client", "-tls", "-addr", f.grpcSrv.String(),
		"-unary", "5", "-streams", "2", "-stream-messages", "5", "-errors", "2", "-error-code", "5"); err != nil {
		t.Fatal(err)
	}
	var want []exchange
	for _, c := range rep.Calls {
		want = append(want, exchange{Method: "POST", Path: c.Method, Status: 200, ReqBytes: -1, RespBytes: -1, GRPCStatus: c.Code})
	}
	if len(want) != 9 {
		t.Fatalf("grpc client made %d calls, want 9: %+v", len(want), rep.Calls)
	}
	isGRPC := func(p string) bool { return strings.HasPrefix(p, "/grpc.testing.TestService/") }
	f.checkRecords(t, expect{pod: f.server, role: "server", peer: f.client, protocol: "HTTP/2", match: isGRPC}, want)
	f.checkRecords(t, expect{pod: f.client, role: "client", peer: f.server, protocol: "HTTP/2", match: isGRPC}, want)

	conns, err := f.daemon.Connections(ctx, harness.ConnQuery{Pod: podKey(f.client)})
	if err != nil {
		t.Fatal(err)
	}
	conns = slices.DeleteFunc(conns, func(c harness.Connection) bool { return c.Remote != f.goSrv && c.Remote != f.grpcSrv })
	if len(conns) != 2*clients+1 {
		t.Errorf("client pod: %d connections to the Go servers, want %d", len(conns), 2*clients+1)
	}
	for _, c := range conns {
		if c.TLS != "go" {
			t.Errorf("connection %d to %s: tls %q, want \"go\"", c.ID, c.Remote, c.TLS)
		}
	}

	// The late path: each copy of the client is a file first seen at its
	// exec. Its first request can be missed; the file is counted.
	bin := filepath.Join(t.TempDir(), "tlsgo")
	build := exec.Command("go", "build", "-o", bin, "../../bpf/testdata/tlsgo")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tlsgo: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	lateBefore := lateProbes(ctx, t, f.daemon)
	const copies = 10
	for i := range copies {
		p := filepath.Join(t.TempDir(), "tlsgo")
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
		u := fmt.Sprintf("%s/late/%d?c=late", url, i)
		if out, err := f.client.Exec(runCtx(t), p, "get", u, "2", "h1"); err != nil {
			t.Fatalf("tlsgo copy %d: %v\n%s", i, err, out)
		}
	}
	truth := f.goTruth(t, caseMarker("late"), 2*copies)
	// Let the daemon finish what it can: late probes and records.
	time.Sleep(2 * time.Second)
	late := lateProbes(ctx, t, f.daemon) - lateBefore
	recs, err := f.daemon.Requests(ctx, podKey(f.client), recordsLimit)
	if err != nil {
		t.Fatal(err)
	}
	recs = slices.DeleteFunc(recs, func(r harness.Request) bool { return r.Role != "client" || !caseMarker("late")(r.Path) })
	first, second, incomplete := 0, 0, 0
	for _, r := range recs {
		// What the late path records is right, however little it is. The
		// probes of a file are attached one after another while its
		// process runs, so a request can be seen and its response not
		// (the read probe came later): that record must say it is
		// incomplete, and what it has must be the server's.
		e := fromRecord(r, exchange{ReqBytes: -1, RespBytes: -1, GRPCStatus: -1})
		if r.Incomplete {
			incomplete++
			if !slices.ContainsFunc(truth, func(w exchange) bool {
				return w.Method == e.Method && w.Path == e.Path && (e.Status == 0 || e.Status == w.Status)
			}) {
				t.Errorf("late path: incomplete record %s is not part of an exchange the server logged", e)
			}
		} else if !slices.Contains(truth, e) {
			t.Errorf("late path: record %s is not an exchange the server logged", e)
		}
		if strings.HasSuffix(r.Path, "&i=0") {
			first++
		} else {
			second++
		}
	}
	if late > copies {
		t.Errorf("weir_tls_late_probes_total rose by %d for %d new files", late, copies)
	}
	t.Logf("late path, %d Go clients each from a file never seen (probed asynchronously after the exec event): "+
		"%d files probed late (the others' processes were gone first), first requests recorded %d of %d, second %d of %d (%d of those records incomplete)",
		copies, late, first, copies, second, copies, incomplete)

	// A container root first seen at an exec (here a chroot): its
	// programs are probed then, so a Go client started from it later is
	// recorded from its first request, although its file never ran.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/local/bin/tlsgo"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	clientIno, err := harness.Inode(filepath.Join(root, "usr/local/bin/tlsgo"))
	if err != nil {
		t.Fatal(err)
	}
	buildSleeper(t, filepath.Join(root, "sleeper"), "time.Second")
	if out, err := f.client.Exec(runCtx(t), "chroot", root, "/sleeper"); err != nil {
		t.Fatalf("chroot sleeper: %v\n%s", err, out)
	}
	ctx, cancel = context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	waitGoProbed(ctx, t, f.daemon, clientIno, f.client)
	u := url + "/rootfs/x?c=rootfs"
	if out, err := f.client.Exec(runCtx(t), "chroot", root, "/usr/local/bin/tlsgo", "get", u, "2", "h1"); err != nil {
		t.Fatalf("chroot tlsgo: %v\n%s", err, out)
	}
	truth = f.goTruth(t, caseMarker("rootfs"), 2)
	f.checkRecords(t, expect{pod: f.client, role: "client", peer: f.server, protocol: "HTTP/1.1", match: caseMarker("rootfs")}, truth)
	f.checkRecords(t, expect{pod: f.server, role: "server", peer: f.client, protocol: "HTTP/1.1", match: caseMarker("rootfs")}, truth)
}

// waitGoProbed waits until the Go binary of inode ino is probed for pod.
func waitGoProbed(ctx context.Context, t *testing.T, d *harness.Daemon, ino uint64, pod *harness.Pod) {
	t.Helper()
	var feat struct {
		TLS *struct {
			Libraries []struct {
				Path    string   `json:"path"`
				Library string   `json:"library"`
				Inode   uint64   `json:"inode"`
				Users   []string `json:"users"`
			} `json:"libraries"`
		} `json:"tls"`
	}
	owner := "netns:" + strconv.FormatUint(pod.NS.Inode, 10)
	err := harness.Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		if err := d.GetJSON(ctx, "/api/v1/features", &feat); err != nil {
			return false, err
		}
		for _, l := range feat.TLS.Libraries {
			if l.Inode == ino && l.Library == "go" && slices.Contains(l.Users, owner) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the Go binary (inode %d) was not probed for %s: %v (%+v)", ino, podKey(pod), err, feat.TLS)
	}
}

// lateProbes reads weir_tls_late_probes_total.
func lateProbes(ctx context.Context, t *testing.T, d *harness.Daemon) int {
	t.Helper()
	b, err := d.Get(ctx, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "weir_tls_late_probes_total "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatal("no weir_tls_late_probes_total in /metrics")
	return 0
}
