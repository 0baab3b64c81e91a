package protocol

import (
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

const nginxTLSPort = 443

// TestOpenSSLFromTheFirstRequest runs nginx (OpenSSL) serving HTTPS in one
// enrolled pod and one-shot curl clients (OpenSSL), each a new process, in
// another: every request is recorded on both sides, the first of every
// process included, because the daemon probed libssl when the pods were
// enrolled, before any of these processes existed; over HTTP/1.1 and over
// HTTP/2 (ALPN h2). The connections say TLS and which library.
func TestOpenSSLFromTheFirstRequest(t *testing.T) {
	harness.RequireRoot(t)
	f := &fixture{bins: harness.FindBinaries(t, needBin, needCNI)}
	f.daemon = harness.StartDaemon(t, f.bins, harness.DaemonOptions{ExtraArgs: []string{"--bpf.tls"}})
	f.net = harness.NewNetwork(t, f.bins, harness.NetworkOptions{
		Weir: &harness.WeirConf{DaemonSocket: f.daemon.Socket, SpoolDir: f.daemon.SpoolDir, Timeout: "2s"},
	})
	f.server = f.net.AddPod(t, harness.PodSpec{Namespace: "tls", Name: "server"})
	f.client = f.net.AddPod(t, harness.PodSpec{Namespace: "tls", Name: "client"})
	ip := f.server.IPv4()
	f.nginx1 = netip.AddrPortFrom(ip, nginxPort)
	tlsAddr := netip.AddrPortFrom(ip, nginxTLSPort)
	f.nginx = peers.StartNginx(t, f.server, peers.NginxOptions{Listen: f.nginx1.String(), ListenTLS: tlsAddr.String()})

	const n = 20
	marker := caseMarker("tls1")
	var client []peers.HTTPResult
	for i := range n {
		// -k: the certificate is self-signed. One process per request:
		// each request is its process's first.
		u := fmt.Sprintf("https://%s/tls/%d?c=tls1", tlsAddr, i)
		client = append(client, f.curl(t, []string{"-k", "--http1.1"}, []string{u})...)
	}
	truth := nginxTruth(f.nginxLog(t, marker, n))
	checkClientView(t, client, f.nginxLog(t, marker, n))
	f.checkRecords(t, expect{pod: f.server, role: "server", peer: f.client, protocol: "HTTP/1.1", match: marker}, truth)
	f.checkRecords(t, expect{pod: f.client, role: "client", peer: f.server, protocol: "HTTP/1.1", match: marker}, truth)

	// HTTP/2 by ALPN: the kernel's frame walker runs on the plaintext
	// from its first byte, so HPACK is decodable from the first request.
	marker2 := caseMarker("tls2")
	var client2 []peers.HTTPResult
	for i := range n {
		u := fmt.Sprintf("https://%s/tls/%d?c=tls2", tlsAddr, i)
		client2 = append(client2, f.curl(t, []string{"-k", "--http2"}, []string{u})...)
	}
	truth2 := nginxTruth(f.nginxLog(t, marker2, n))
	checkClientView(t, client2, f.nginxLog(t, marker2, n))
	f.checkRecords(t, expect{pod: f.server, role: "server", peer: f.client, protocol: "HTTP/2", match: marker2}, truth2)
	f.checkRecords(t, expect{pod: f.client, role: "client", peer: f.server, protocol: "HTTP/2", match: marker2}, truth2)

	// Every connection to the TLS port is TLS, read through OpenSSL.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conns, err := f.daemon.Connections(ctx, harness.ConnQuery{Pod: podKey(f.client)})
	if err != nil {
		t.Fatal(err)
	}
	tlsConns := slices.DeleteFunc(conns, func(c harness.Connection) bool { return c.Remote != tlsAddr })
	if len(tlsConns) != 2*n {
		t.Errorf("client pod: %d connections to %s, want %d", len(tlsConns), tlsAddr, 2*n)
	}
	for _, c := range tlsConns {
		if c.TLS != "openssl" {
			t.Errorf("connection %d to %s: tls %q, want \"openssl\"", c.ID, tlsAddr, c.TLS)
		}
	}

	// The features say which library file is probed, for these pods.
	var feat struct {
		TLS *struct {
			Libraries []struct {
				Path  string   `json:"path"`
				Inode uint64   `json:"inode"`
				Users []string `json:"users"`
			} `json:"libraries"`
		} `json:"tls"`
	}
	if err := f.daemon.GetJSON(ctx, "/api/v1/features", &feat); err != nil {
		t.Fatal(err)
	}
	if feat.TLS == nil || len(feat.TLS.Libraries) == 0 {
		t.Fatalf("features: no TLS library probed: %+v", feat.TLS)
	}
	for _, l := range feat.TLS.Libraries {
		if !strings.Contains(l.Path, "libssl.so") || len(l.Users) < 2 {
			t.Errorf("features: library %s used by %v, want libssl used by both pods", l.Path, l.Users)
		}
	}
	t.Logf("%d one-shot HTTPS requests (h1 and h2) recorded on both sides; probed: %+v", 2*n, feat.TLS.Libraries)

	// The late path: a process of the client pod executes inside a root
	// the daemon did not scan at enrollment (a container created later),
	// holding its own copy of libssl (another inode): that file is probed
	// at the exec, for the client pod.
	root := t.TempDir()
	libDir := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	if err := os.MkdirAll(libDir, 0o755); err != nil {
		t.Fatal(err)
	}
	lib, err := os.ReadFile(feat.TLS.Libraries[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(libDir, "libssl.so.3"), lib, 0o644); err != nil {
		t.Fatal(err)
	}
	copyIno, err := harness.Inode(filepath.Join(libDir, "libssl.so.3"))
	if err != nil {
		t.Fatal(err)
	}
	buildSleeper(t, filepath.Join(root, "sleeper"), "3 * time.Second")
	if out, err := f.client.Exec(runCtx(t), "chroot", root, "/sleeper"); err != nil {
		t.Fatalf("chroot: %v\n%s", err, out)
	}
	err = harness.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := f.daemon.GetJSON(ctx, "/api/v1/features", &feat); err != nil {
			return false, err
		}
		for _, l := range feat.TLS.Libraries {
			if l.Inode == copyIno && slices.Contains(l.Users, "netns:"+strconv.FormatUint(f.client.NS.Inode, 10)) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the copy of libssl in a root first seen at an exec was not probed for the client pod: %v (%+v)", err, feat.TLS.Libraries)
	}
}

// buildSleeper builds, at path, a static program that sleeps for d (a Go
// duration expression) and exits: a process to run from a chroot, which
// reveals that root to the daemon's TLS gate without making a TLS call.
func buildSleeper(t *testing.T, path, d string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"time\"\n\nfunc main() { time.Sleep("+d+") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", path, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build sleeper: %v\n%s", err, out)
	}
}
