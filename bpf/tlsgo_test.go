package bpf

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
)

// tlsGoEnv names a prebuilt testdata/tlsgo binary (CGO_ENABLED=0): the
// tests/kernels guest has no Go toolchain, so tests/kernels/run.sh builds
// it on the host and ships it.
const tlsGoEnv = "WEIR_TEST_TLSGO"

// tlsGo returns the Go crypto/tls peers: $WEIR_TEST_TLSGO, else
// testdata/tlsgo built now.
func tlsGo(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv(tlsGoEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s: %v", tlsGoEnv, err)
		}
		return bin
	}
	if inGuest() {
		t.Fatalf("in the kernel guest without %s: tests/kernels/run.sh ships testdata/tlsgo", tlsGoEnv)
	}
	return buildTLSGo(t)
}

// buildTLSGo builds testdata/tlsgo (the Go crypto/tls peers) with extra
// go build flags and returns the binary's path.
func buildTLSGo(t *testing.T, flags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "tlsgo")
	args := append(append([]string{"build", "-o", out}, flags...), "./testdata/tlsgo")
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build tlsgo: %v\n%s", err, b)
	}
	return out
}

// goTLSServer starts `tlsgo serve` in ns and returns its address and pid.
func goTLSServer(t *testing.T, ns *testNetns, bin string) (string, int) {
	t.Helper()
	cert, key := testCert(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, bin, "serve", cert, key)
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	wait(t, in(ns, srv.Start), 5*time.Second)
	t.Cleanup(func() { cancel(); _ = srv.Wait() })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case addr := <-line:
		if addr == "" {
			t.Fatal("tlsgo serve printed no address")
		}
		return addr, srv.Process.Pid
	case <-time.After(10 * time.Second):
		t.Fatal("tlsgo serve: no address after 10s")
	}
	return "", 0
}

// goTLSClients runs n one-shot `tlsgo` client processes in ns (args after
// the binary) one after the other and returns their pids.
func goTLSClients(t *testing.T, ns *testNetns, bin string, n int, args ...string) []int {
	t.Helper()
	var pids []int
	for range n {
		cmd := exec.Command(bin, args...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := <-in(ns, cmd.Run); err != nil {
			t.Fatalf("tlsgo %s: %v: %s", strings.Join(args, " "), err, errb.String())
		}
		pids = append(pids, cmd.Process.Pid)
	}
	return pids
}

// plainStreams joins each process's plaintext of one syscall id into one
// stream per connection, in stream order.
func plainStreams(s snapshot, pid uint32, sys event.Syscall) map[event.ConnID][]byte {
	out := make(map[event.ConnID][]byte)
	for _, e := range s.data {
		if e.Proc.TGID != pid || e.Syscall != sys {
			continue
		}
		b := out[e.Conn]
		if uint64(len(b)) < e.StreamOffset {
			b = append(b, make([]byte, e.StreamOffset-uint64(len(b)))...)
		}
		out[e.Conn] = append(b[:e.StreamOffset], e.Payload...)
	}
	return out
}

// h2Preface is what every HTTP/2 client writes first.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// TestGoTLSPlaintextOfEveryOneShotClient pins the Go crypto/tls probes
// under each capture tier the kernel has (the socket tier links a call to
// its connection by the socket ops it makes, the syscall tier by its read
// and write syscalls): a Go binary probed before any process runs it (as
// its file is at enrollment), one-shot client processes making their
// requests the moment they start against a Go net/http server, both in an
// enrolled namespace: every client's plaintext, its first request at
// stream offset 0, is reported (SysGoTLSWrite) on the client connection
// the tier opened for that process, for HTTP/1.1 and for h2 by ALPN; the
// server's (*Conn).Read plaintext carries every request. The same binary
// in a namespace that is not enrolled yields nothing.
func TestGoTLSPlaintextOfEveryOneShotClient(t *testing.T) {
	for _, tier := range []CaptureTier{CaptureSocket, CaptureSyscall} {
		t.Run(tier.String(), func(t *testing.T) {
			if tier == CaptureSocket {
				requireSocketTier(t)
			}
			testGoTLSOneShotClients(t, startCollector(t, Config{CaptureTier: tier}))
		})
	}
}

func testGoTLSOneShotClients(t *testing.T, r running) {
	bin := tlsGo(t)
	tl := loadTLS(t, r)
	if attached, err := tl.AcquireGo("test", bin, bin); err != nil || !attached {
		t.Fatalf("AcquireGo: attached %v, %v", attached, err)
	}
	if libs := tl.Libraries(); len(libs) != 1 || libs[0].Library != "go" || len(libs[0].Symbols) != 4 {
		t.Fatalf("Libraries() = %+v, want the Go binary with 4 functions", libs)
	}
	enrolled, other := newNetns(t), newNetns(t)
	if err := r.Enroll(enrolled.ino, 43); err != nil {
		t.Fatal(err)
	}
	// Fewer clients under the guest's emulated CPU: each process start
	// costs about a second there.
	n, perClient := 10, 3
	if inGuest() {
		n = 4
	}
	addr, srvPid := goTLSServer(t, enrolled, bin)
	url := "https://" + addr + "/hello"
	h1 := goTLSClients(t, enrolled, bin, n, "get", url, fmt.Sprint(perClient), "h1")
	reqs := func(s snapshot) int {
		got := 0
		for _, b := range plainStreams(s, uint32(srvPid), event.SysGoTLSRead) {
			got += bytes.Count(b, []byte("GET /hello?i="))
		}
		return got
	}
	eventually(t, 10*time.Second, "the server's plaintext of every HTTP/1.1 request", func() bool {
		return reqs(r.rec.snapshot(enrolled.ino)) == len(h1)*perClient
	})
	// Every HTTP/1.1 call was joined to its connection.
	if c := mustCounters(t, r)["tls_unlinked"]; c != 0 {
		t.Errorf("HTTP/1.1: tls_unlinked = %d, want 0", c)
	}
	h2 := goTLSClients(t, enrolled, bin, n, "get", url, fmt.Sprint(perClient), "h2")
	oaddr, _ := goTLSServer(t, other, bin)
	goTLSClients(t, other, bin, 3, "get", "https://"+oaddr+"/hello", "2", "h1")
	goTLSClients(t, other, bin, 3, "get", "https://"+oaddr+"/hello", "2", "h2")
	prefaces := func(s snapshot) (got int) {
		for _, b := range plainStreams(s, uint32(srvPid), event.SysGoTLSRead) {
			if bytes.HasPrefix(b, []byte(h2Preface)) {
				got++
			}
		}
		return got
	}
	eventually(t, 10*time.Second, "the server's plaintext of every h2 connection", func() bool {
		return prefaces(r.rec.snapshot(enrolled.ino)) == n
	})
	s := r.rec.snapshot(enrolled.ino)
	check := func(pids []int, first func([]byte) bool, what string) {
		for _, pid := range pids {
			w := firstPlain(s, uint32(pid), event.SysGoTLSWrite)
			if w.Syscall != event.SysGoTLSWrite {
				t.Errorf("%s client %d: no plaintext written", what, pid)
				continue
			}
			if w.StreamOffset != 0 || w.Seq != 0 || !first(w.Payload) {
				t.Errorf("%s client %d: first plaintext at offset %d seq %d: %q", what, pid, w.StreamOffset, w.Seq,
					w.Payload[:min(len(w.Payload), 40)])
			}
			open := false
			for _, o := range s.opens {
				if o.Conn == w.Conn && o.Proc.TGID == uint32(pid) && o.Role == event.RoleClient {
					open = true
				}
			}
			if !open {
				t.Errorf("%s client %d: plaintext on conn %d, not a client connection it opened", what, pid, w.Conn)
			}
			streams := plainStreams(s, uint32(pid), event.SysGoTLSRead)
			if len(streams[w.Conn]) == 0 {
				t.Errorf("%s client %d: no plaintext read on its connection", what, pid)
			}
		}
	}
	check(h1, func(b []byte) bool { return bytes.HasPrefix(b, []byte("GET /hello?i=0 HTTP/1.1\r\n")) }, "HTTP/1.1")
	check(h2, func(b []byte) bool { return bytes.HasPrefix(b, []byte(h2Preface)) }, "h2")
	for _, pid := range h1 {
		for _, b := range plainStreams(s, uint32(pid), event.SysGoTLSRead) {
			if c := bytes.Count(b, []byte("HTTP/1.1 200 OK")); c != perClient {
				t.Errorf("HTTP/1.1 client %d: %d responses read, want %d", pid, c, perClient)
			}
		}
	}
	for _, pid := range h2 {
		for _, b := range plainStreams(s, uint32(pid), event.SysGoTLSRead) {
			if c := bytes.Count(b, []byte("hello over HTTP/2.0")); c != perClient {
				t.Errorf("h2 client %d: %d response bodies read, want %d", pid, c, perClient)
			}
		}
	}
	// A one-shot h2 client exits with frames unread, so its kernel resets
	// the connection; a server write racing that reset returns success
	// after the reset closed the connection (loopback delivers it inside
	// the write). Such plaintext cannot join a connection: it is counted,
	// at most once per connection, never reported on another.
	if c := mustCounters(t, r)["tls_unlinked"]; c > uint64(n) {
		t.Errorf("h2: tls_unlinked = %d, want at most %d (server writes racing the client's exit)", c, n)
	}
	if got := r.rec.snapshot(other.ino); len(got.data)+len(got.opens) != 0 {
		t.Errorf("unenrolled namespace: %d data and %d open events, want none", len(got.data), len(got.opens))
	}
}

// TestGoTLSUnenrolledCallCost is a measurement, not an assertion: what a
// (*Conn).Read and a (*Conn).Write cost a process outside every enrolled
// namespace when its Go binary is probed (each probe hit: a trap, and for
// an entry the program's namespace check) against the same binary
// unprobed, rounds alternating. Root and real eBPF; runs when
// WEIR_BPF_TLS_COST=1.
func TestGoTLSUnenrolledCallCost(t *testing.T) {
	if os.Getenv("WEIR_BPF_TLS_COST") != "1" {
		t.Skip("a measurement: set WEIR_BPF_TLS_COST=1 (root) to run it")
	}
	bin := filepath.Join(t.TempDir(), "tlsgocost")
	build := exec.Command("go", "build", "-o", bin, "./testdata/tlsgocost")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	r := socketTier(t, Config{})
	tl := loadTLS(t, r)
	const calls, rounds = 200000, 3
	run := func() (read, write float64) {
		out, err := exec.Command(bin, fmt.Sprint(calls)).Output()
		if err != nil {
			t.Fatalf("tlsgocost: %v", err)
		}
		if _, err := fmt.Sscan(string(out), &read, &write); err != nil {
			t.Fatalf("parse %q: %v", out, err)
		}
		return read, write
	}
	for round := range rounds {
		if _, err := tl.AcquireGo("test", bin, bin); err != nil {
			t.Fatal(err)
		}
		pr, pw := run()
		tl.Release("test")
		ur, uw := run()
		t.Logf("round %d, from an unenrolled process: (*Conn).Read %.0f ns probed, %.0f unprobed: +%.0f ns (entry on a jump, emulated; a RET, single-stepped); "+
			"(*Conn).Write %.0f ns probed, %.0f unprobed: +%.0f ns (entry only)", round, pr, ur, pr-ur, pw, uw, pw-uw)
	}
}
