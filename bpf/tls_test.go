package bpf

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/bpf/event"
)

// tlsProbed loads the TLS set on a collector of the given capture tier and
// probes the node's libssl files.
func tlsProbed(t *testing.T, tier CaptureTier) (running, *TLS) {
	t.Helper()
	requireRoot(t)
	if tier == CaptureSocket {
		requireSocketTier(t)
	}
	if inGuest() {
		t.Skip("needs nginx and curl, dynamically linked against libc and libssl, which the tests/kernels guest " +
			"(a static Go init and test binaries, no libc) does not have: runs on the host")
	}
	for _, bin := range []string{"openssl", "curl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not installed: %v", bin, err)
		}
	}
	r := startCollector(t, Config{CaptureTier: tier})
	tl := loadTLS(t, r)
	libs := FindOpenSSL("/")
	if len(libs) == 0 {
		t.Fatal("no libssl under /")
	}
	for _, l := range libs {
		if _, err := tl.Acquire("test", l); err != nil {
			t.Fatalf("Acquire %s: %v", l, err)
		}
	}
	return r, tl
}

// loadTLS loads the TLS set on r's collector, closed when t ends. A
// verifier rejection fails t with the verifier's whole log: the kernels
// that reject differ from the host's (tests/kernels).
func loadTLS(t *testing.T, r running) *TLS {
	t.Helper()
	tl, err := r.LoadTLS(testLogger(t))
	if err != nil {
		if ve := (*ebpf.VerifierError)(nil); errors.As(err, &ve) {
			t.Fatalf("LoadTLS: %v\n%+v", err, ve)
		}
		t.Fatalf("LoadTLS: %v", err)
	}
	t.Cleanup(func() {
		if err := tl.Close(); err != nil {
			t.Errorf("TLS Close: %v", err)
		}
	})
	return tl
}

// testCert writes a self-signed certificate and key into dir.
func testCert(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "weir-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c, k := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c, k
}

// httpsInNetns runs nginx (OpenSSL) serving HTTPS on loopback inside ns
// and n one-shot curl clients (OpenSSL) against it, each a new process
// whose only request is its first, and returns the clients' pids.
func httpsInNetns(t *testing.T, ns *testNetns, port, n int) []int {
	t.Helper()
	dir := t.TempDir()
	cert, key := testCert(t, dir)
	conf := fmt.Sprintf(`daemon off;
master_process off;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d ssl;
		ssl_certificate %[3]s;
		ssl_certificate_key %[4]s;
		location / { return 200 "hello over tls\n"; }
	}
}
`, dir, port, cert, key)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Fatalf("nginx not installed (Debian nginx-light): %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, "nginx", "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	wait(t, in(ns, srv.Start), 5*time.Second)
	t.Cleanup(func() { cancel(); _ = srv.Wait() })
	// Wait for the listener: a curl that fails is retried, not counted.
	url := fmt.Sprintf("https://127.0.0.1:%d/hello", port)
	var pids []int
	deadline := time.Now().Add(10 * time.Second)
	for len(pids) < n {
		cmd := exec.Command("curl", "-sS", "-k", "--http1.1", "-o", "/dev/null", url)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := <-in(ns, cmd.Run)
		if err != nil {
			if len(pids) == 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			t.Fatalf("curl: %v: %s", err, errb.String())
		}
		pids = append(pids, cmd.Process.Pid)
	}
	return pids
}

// TestOpenSSLPlaintextOfEveryOneShotClient pins the TLS set under each
// capture tier the kernel has: each one-shot curl process's first and only
// request is reported as plaintext (SysSSLWrite) on the TCP connection the
// tier reports for that process, with the server's SSL_read of the same
// request on the server's connection; the ciphertext on the socket is
// reported as before. A pair in a namespace that is not enrolled, using
// the same probed libssl, yields nothing at all.
func TestOpenSSLPlaintextOfEveryOneShotClient(t *testing.T) {
	for _, tier := range []CaptureTier{CaptureSocket, CaptureSyscall} {
		t.Run(tier.String(), func(t *testing.T) {
			r, _ := tlsProbed(t, tier)
			testOpenSSLOneShotClients(t, r)
		})
	}
}

func testOpenSSLOneShotClients(t *testing.T, r running) {
	enrolled, other := newNetns(t), newNetns(t)
	if err := r.Enroll(enrolled.ino, 41); err != nil {
		t.Fatal(err)
	}
	const n = 20
	pids := httpsInNetns(t, enrolled, 8443, n)
	httpsInNetns(t, other, 8443, 5)

	want := []byte("GET /hello HTTP/1.1\r\n")
	eventually(t, 10*time.Second, "a plaintext request of every curl process", func() bool {
		s := r.rec.snapshot(enrolled.ino)
		for _, pid := range pids {
			if !hasPlain(s, uint32(pid), event.SysSSLWrite, want) {
				return false
			}
		}
		return true
	})
	s := r.rec.snapshot(enrolled.ino)
	for _, pid := range pids {
		w := firstPlain(s, uint32(pid), event.SysSSLWrite)
		// The plaintext joins the connection the socket tier opened for
		// this process, at stream offset 0 of its own stream.
		if w.StreamOffset != 0 || w.Seq != 0 {
			t.Errorf("pid %d: first plaintext at offset %d seq %d, want 0/0", pid, w.StreamOffset, w.Seq)
		}
		open := false
		for _, o := range s.opens {
			if o.Conn == w.Conn && o.Proc.TGID == uint32(pid) && o.Role == event.RoleClient {
				open = true
			}
		}
		if !open {
			t.Errorf("pid %d: plaintext on conn %d, which is not a client connection it opened", pid, w.Conn)
		}
	}
	// The server read every request through SSL_read.
	reads := 0
	for _, e := range s.data {
		if e.Syscall == event.SysSSLRead && bytes.HasPrefix(e.Payload, want) {
			reads++
		}
	}
	if reads != n {
		t.Errorf("server: %d plaintext requests read, want %d", reads, n)
	}
	if c := mustCounters(t, r)["tls_unlinked"]; c != 0 {
		t.Errorf("tls_unlinked = %d, want 0", c)
	}
	if got := r.rec.snapshot(other.ino); len(got.data)+len(got.opens) != 0 {
		t.Errorf("unenrolled namespace: %d data and %d open events, want none", len(got.data), len(got.opens))
	}
}

func firstPlain(s snapshot, pid uint32, sys event.Syscall) event.Data {
	for _, e := range s.data {
		if e.Proc.TGID == pid && e.Syscall == sys {
			return e
		}
	}
	return event.Data{}
}

func hasPlain(s snapshot, pid uint32, sys event.Syscall, prefix []byte) bool {
	e := firstPlain(s, pid, sys)
	return e.Syscall == sys && bytes.HasPrefix(e.Payload, prefix)
}

// tlsCallLoop calls SSL_write n times through ctypes on an SSL object with
// no connection (each call fails at once, inside libssl, after the entry
// probe and before the return probe) and prints nanoseconds per call.
const tlsCallLoop = `
import ctypes, sys, time
l = ctypes.CDLL(sys.argv[1])
l.TLS_client_method.restype = ctypes.c_void_p
l.SSL_CTX_new.restype = ctypes.c_void_p
l.SSL_CTX_new.argtypes = [ctypes.c_void_p]
l.SSL_new.restype = ctypes.c_void_p
l.SSL_new.argtypes = [ctypes.c_void_p]
l.SSL_write.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
c = ctypes.CDLL("libcrypto.so.3")
ssl = l.SSL_new(l.SSL_CTX_new(l.TLS_client_method()))
w, b, n = l.SSL_write, b"x", int(sys.argv[2])
t = time.perf_counter_ns()
for i in range(n):
    w(ssl, b, 1)
    if i % 1000 == 0:
        c.ERR_clear_error()
print((time.perf_counter_ns() - t) / n)
`

// TestTLSUnenrolledCallCost is a measurement, not an assertion: what an
// SSL_write costs a process outside every enrolled namespace when the
// library file it uses is probed (uprobe trap, the entry program's netns
// check, the return trap) against the same call unprobed, rounds
// alternating. Root and real eBPF; runs when WEIR_BPF_TLS_COST=1.
func TestTLSUnenrolledCallCost(t *testing.T) {
	if os.Getenv("WEIR_BPF_TLS_COST") != "1" {
		t.Skip("a measurement: set WEIR_BPF_TLS_COST=1 (root) to run it")
	}
	_, tl := tlsProbed(t, CaptureAuto)
	libs := FindOpenSSL("/")
	const calls, rounds = 200000, 3
	run := func() float64 {
		out, err := exec.Command("python3", "-c", tlsCallLoop, libs[0], fmt.Sprint(calls)).Output()
		if err != nil {
			t.Fatalf("python3 SSL_write loop: %v", err)
		}
		var ns float64
		if _, err := fmt.Sscan(string(out), &ns); err != nil {
			t.Fatalf("parse %q: %v", out, err)
		}
		return ns
	}
	for round := range rounds {
		probed := run()
		tl.Release("test")
		plain := run()
		for _, l := range libs {
			if _, err := tl.Acquire("test", l); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("round %d: SSL_write from an unenrolled process: %.0f ns probed, %.0f ns unprobed: +%.0f ns per call (ratio %.2f)",
			round, probed, plain, probed-plain, probed/plain)
	}
}

// Debian's android-libboringssl(-dev): BoringSSL as a shared libssl, with
// its headers apart from OpenSSL's.
const (
	boringSSLLibDir     = "/usr/lib/x86_64-linux-gnu/android"
	boringSSLIncludeDir = "/usr/include/android"
)

// buildSSLPeer compiles testdata/sslpeer against the BoringSSL of
// android-libboringssl(-dev) with the system C compiler and returns the
// binary and the libssl file it loads; it skips, naming the packages,
// where they are not installed.
func buildSSLPeer(t *testing.T) (string, string) {
	t.Helper()
	lib := filepath.Join(boringSSLLibDir, "libssl.so")
	if _, err := os.Stat(filepath.Join(boringSSLIncludeDir, "openssl", "ssl.h")); err != nil {
		t.Skipf("BoringSSL headers not installed (apt install android-libboringssl-dev; tests/install-deps.sh does): %v", err)
	}
	real, err := filepath.EvalSymlinks(lib)
	if err != nil {
		t.Skipf("BoringSSL not installed (apt install android-libboringssl): %v", err)
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("no C compiler: %v", err)
	}
	out := filepath.Join(t.TempDir(), "sslpeer")
	cmd := exec.Command(cc, "-O1", "-o", out, "-I", boringSSLIncludeDir, "testdata/sslpeer/sslpeer.c",
		"-L", boringSSLLibDir, "-Wl,-rpath,"+boringSSLLibDir, "-lssl", "-lcrypto")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cc sslpeer against BoringSSL: %v\n%s", err, b)
	}
	return out, real
}

// TestBoringSSLPlaintextOfEveryOneShotClient pins BoringSSL as a probed
// library: a libssl that is BoringSSL (android-libboringssl) is probed
// through the OpenSSL API it shares (SSL_read, SSL_write) and listed as
// "boringssl"; each one-shot client process's request is reported as
// BoringSSL plaintext (SysBoringSSLWrite, TLSLibrary "boringssl") on the
// client connection it opened, at stream offset 0, the server's
// SSL_read of it likewise, under each capture tier the kernel has; a pair
// in a namespace that is not enrolled yields nothing.
func TestBoringSSLPlaintextOfEveryOneShotClient(t *testing.T) {
	requireRoot(t)
	if inGuest() {
		t.Skip("needs a C compiler and BoringSSL (libc), which the tests/kernels guest does not have: runs on the host")
	}
	peer, lib := buildSSLPeer(t)
	for _, tier := range []CaptureTier{CaptureSocket, CaptureSyscall} {
		t.Run(tier.String(), func(t *testing.T) {
			if tier == CaptureSocket {
				requireSocketTier(t)
			}
			testBoringSSLOneShotClients(t, startCollector(t, Config{CaptureTier: tier}), peer, lib)
		})
	}
}

func testBoringSSLOneShotClients(t *testing.T, r running, peer, lib string) {
	tl := loadTLS(t, r)
	if _, err := tl.Acquire("test", lib); err != nil {
		t.Fatalf("Acquire %s: %v", lib, err)
	}
	if libs := tl.Libraries(); len(libs) != 1 || libs[0].Library != "boringssl" {
		t.Fatalf("Libraries() = %+v, want %s as boringssl", libs, lib)
	}
	enrolled, other := newNetns(t), newNetns(t)
	if err := r.Enroll(enrolled.ino, 44); err != nil {
		t.Fatal(err)
	}
	const n = 10
	srvPid, pids := sslPeers(t, enrolled, peer, n)
	sslPeers(t, other, peer, 3)

	want := []byte("GET /hello HTTP/1.1\r\n")
	eventually(t, 10*time.Second, "a plaintext request of every client and the server's read of it", func() bool {
		s := r.rec.snapshot(enrolled.ino)
		for _, pid := range pids {
			if !hasPlain(s, uint32(pid), event.SysBoringSSLWrite, want) {
				return false
			}
		}
		reads := 0
		for _, b := range plainStreams(s, uint32(srvPid), event.SysBoringSSLRead) {
			reads += bytes.Count(b, want)
		}
		return reads == n
	})
	s := r.rec.snapshot(enrolled.ino)
	for _, pid := range pids {
		w := firstPlain(s, uint32(pid), event.SysBoringSSLWrite)
		if w.StreamOffset != 0 || w.Seq != 0 || w.Syscall.TLSLibrary() != "boringssl" {
			t.Errorf("pid %d: first plaintext at offset %d seq %d, library %q; want 0/0 boringssl", pid,
				w.StreamOffset, w.Seq, w.Syscall.TLSLibrary())
		}
		open := false
		for _, o := range s.opens {
			if o.Conn == w.Conn && o.Proc.TGID == uint32(pid) && o.Role == event.RoleClient {
				open = true
			}
		}
		if !open {
			t.Errorf("pid %d: plaintext on conn %d, which is not a client connection it opened", pid, w.Conn)
		}
		if !bytes.Contains(plainStreams(s, uint32(pid), event.SysBoringSSLRead)[w.Conn], []byte("hello over tls\n")) {
			t.Errorf("pid %d: the response's plaintext was not read on its connection", pid)
		}
	}
	for _, e := range s.data {
		if e.Syscall == event.SysSSLWrite || e.Syscall == event.SysSSLRead {
			t.Fatalf("BoringSSL plaintext reported as OpenSSL's (%s)", e.Syscall)
		}
	}
	if c := mustCounters(t, r)["tls_unlinked"]; c != 0 {
		t.Errorf("tls_unlinked = %d, want 0", c)
	}
	if got := r.rec.snapshot(other.ino); len(got.data)+len(got.opens) != 0 {
		t.Errorf("unenrolled namespace: %d data and %d open events, want none", len(got.data), len(got.opens))
	}
}

// sslPeers runs `sslpeer serve` in ns and n one-shot `sslpeer get` clients
// against it, one after the other, and returns the server's and the
// clients' pids.
func sslPeers(t *testing.T, ns *testNetns, peer string, n int) (int, []int) {
	t.Helper()
	cert, key := testCert(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, peer, "serve", cert, key, fmt.Sprint(n))
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	wait(t, in(ns, srv.Start), 5*time.Second)
	t.Cleanup(func() { cancel(); _ = srv.Wait() })
	var port int
	if _, err := fmt.Fscan(out, &port); err != nil {
		t.Fatalf("sslpeer serve printed no port: %v", err)
	}
	var pids []int
	for range n {
		cmd := exec.Command(peer, "get", fmt.Sprint(port))
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := <-in(ns, cmd.Run); err != nil {
			t.Fatalf("sslpeer get: %v: %s", err, errb.String())
		}
		pids = append(pids, cmd.Process.Pid)
	}
	return srv.Process.Pid, pids
}

// TestTLSSyscallTierLinkCost is a measurement, not an assertion: what the
// TLS set's syscall-tier hook (tls_sys_enter on the read/write syscalls)
// adds to plain TCP that makes no TLS call, 64-byte round trips in an
// enrolled netns under the syscall tier without and with the TLS set
// loaded, rounds alternating; and its eBPF run time per run. Root and real
// eBPF; runs when WEIR_BPF_TLS_COST=1.
func TestTLSSyscallTierLinkCost(t *testing.T) {
	measurement(t, "WEIR_BPF_TLS_COST")
	const trips, rounds = 20000, 4
	wall := map[bool][]float64{}
	for round := range rounds {
		for _, withTLS := range []bool{round%2 == 0, round%2 != 0} {
			// One collector at a time: each is closed before the next.
			c, err := Load(Config{CaptureTier: CaptureSyscall}, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			ns := newNetns(t)
			if err := c.Enroll(ns.ino, 1); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx, &recorder{}) }()
			var tl *TLS
			if withTLS {
				if tl, err = c.LoadTLS(testLogger(t)); err != nil {
					t.Fatal(err)
				}
			}
			stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
			if err != nil {
				t.Fatal(err)
			}
			var before *ebpf.ProgramStats
			if tl != nil {
				before, _ = tl.coll.Programs["tls_sys_enter"].Stats()
			}
			d := roundTrips(t, ns, trips)
			if tl != nil {
				if after, err := tl.coll.Programs["tls_sys_enter"].Stats(); err == nil && before != nil {
					n := after.RunCount - before.RunCount
					if n > 0 {
						t.Logf("round %d: tls_sys_enter %.1f runs per round trip, %v per run", round,
							float64(n)/trips, (after.Runtime-before.Runtime)/time.Duration(n))
					}
				}
				tl.Close()
			}
			stats.Close()
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			c.Close()
			wall[withTLS] = append(wall[withTLS], float64(d.Nanoseconds())/trips)
		}
	}
	without, with := median(wall[false]), median(wall[true])
	t.Logf("syscall tier, enrolled plain TCP: %.0f ns per 64 B round trip without the TLS set, %.0f with: %+.0f ns (ratio %.3f; medians of %d)",
		without, with, with-without, with/without, rounds)
}
