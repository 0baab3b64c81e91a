package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/bpf/event"
)

// Privileged (root, real eBPF): like every test that loads the collector.

// kernelHasSocketTier says whether the running kernel's BTF has both socket
// tracepoints, independently of the loader's choice.
func kernelHasSocketTier(t *testing.T) bool {
	t.Helper()
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range []string{"btf_trace_sock_send_length", "btf_trace_sock_recv_length"} {
		if _, err := kernel.AnyTypeByName(tp); err != nil {
			return false
		}
	}
	return true
}

// kernelHasSendWindow says whether the running kernel has the
// tcp:tcp_sendmsg_locked tracepoint (Linux 6.13 on), where the socket tier
// opens a send's op window for the per-packet hooks. Without it (6.12) the
// base socket tier reports the per-send packet metrics unavailable; the
// richer tier, where it attaches, opens the window at tcp_sendmsg instead.
func kernelHasSendWindow(t *testing.T) bool {
	t.Helper()
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	_, err = kernel.AnyTypeByName("btf_trace_tcp_sendmsg_locked")
	return err == nil
}

// sendWindowMetrics are the metrics a socket-tier send has only through
// its op window.
var sendWindowMetrics = map[string]bool{"packets": true, "l2_duration": true, "l2_queue": true}

// checkSendWindowMetric checks metric m of a socket-tier collector with
// the base tier: available where the kernel has tcp_sendmsg_locked, else
// unavailable, naming it.
func checkSendWindowMetric(t *testing.T, m MetricStatus, hasWindow bool) {
	t.Helper()
	if hasWindow && !m.Available {
		t.Errorf("%s: %+v, want available (op windows at tcp_sendmsg_locked)", m.Name, m)
	}
	if !hasWindow && (m.Available || !strings.Contains(m.Reason, "tcp_sendmsg_locked")) {
		t.Errorf("%s: %+v, want unavailable naming tcp_sendmsg_locked (the kernel has no such tracepoint)", m.Name, m)
	}
}

// socketTier starts a collector that must run the socket tier: these tests
// pin what that tier does. On a kernel without the socket tracepoints
// (the 6.1 guest of tests/kernels) there is no socket tier to test; what
// such a kernel must do instead is pinned by TestCaptureTierFollowsTheKernel.
func socketTier(t *testing.T, cfg Config) running {
	t.Helper()
	requireSocketTier(t)
	cfg.CaptureTier = CaptureSocket
	return startCollector(t, cfg)
}

func requireSocketTier(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if !kernelHasSocketTier(t) {
		t.Skip("kernel has no sock_send_length/sock_recv_length tracepoints: it runs the syscall tier (TestCaptureTierFollowsTheKernel)")
	}
}

// TestCaptureTierFollowsTheKernel pins the choice: the default runs the
// socket tier exactly where the kernel has its tracepoints, else the
// syscall tier with the reason; asking for the socket tier where it is
// missing fails Load with ErrHookUnavailable, naming the tracepoint;
// asking for the syscall tier always gets it.
func TestCaptureTierFollowsTheKernel(t *testing.T) {
	requireRoot(t)
	has := kernelHasSocketTier(t)
	r := startCollectorExact(t, Config{})
	f := r.Features()
	want := CaptureSyscall
	if has {
		want = CaptureSocket
	}
	if f.Capture != want || f.CaptureReason == "" {
		t.Fatalf("default capture tier %s (%q), want %s", f.Capture, f.CaptureReason, want)
	}
	if !has {
		if !strings.Contains(f.CaptureReason, "sock_send_length") {
			t.Errorf("syscall tier chosen without naming the missing tracepoint: %q", f.CaptureReason)
		}
		c, err := Load(Config{CaptureTier: CaptureSocket}, testLogger(t))
		if err == nil {
			c.Close()
			t.Fatal("Load with the socket tier succeeded on a kernel without its tracepoints")
		}
		if !errors.Is(err, ErrHookUnavailable) || !strings.Contains(err.Error(), "sock_send_length") {
			t.Fatalf("Load with the socket tier: %v, want ErrHookUnavailable naming sock_send_length", err)
		}
	}
	s := startCollectorExact(t, Config{CaptureTier: CaptureSyscall})
	if got := s.Features().Capture; got != CaptureSyscall {
		t.Fatalf("asked for the syscall tier, got %s", got)
	}
}

// TestSocketTierIsDefaultAndAttachesNoSyscallTracepoint pins the point of
// the tier: where the kernel has the socket tracepoints the default picks
// it, and then no syscall tracepoint is attached; the per-operation
// metrics stay available through the op windows (tcp_sendmsg_locked and
// the per-packet hooks, gated per thread).
func TestSocketTierIsDefaultAndAttachesNoSyscallTracepoint(t *testing.T) {
	requireSocketTier(t)
	r := startCollectorExact(t, Config{}) // the default, whatever WEIR_TEST_CAPTURE_TIER says
	f := r.Features()
	if f.Capture != CaptureSocket || f.CaptureReason == "" {
		t.Fatalf("capture tier %s (%q), want socket with a reason", f.Capture, f.CaptureReason)
	}
	attached := map[string]bool{}
	for _, h := range f.Hooks {
		attached[h.Name] = h.Attached
		if h.Attached && strings.HasPrefix(h.Name, "tracepoint/syscalls/") {
			t.Errorf("socket tier attached %s", h.Name)
		}
		if !h.Attached && h.Reason == "" {
			t.Errorf("hook %s left out without a reason", h.Name)
		}
	}
	hasWindow := kernelHasSendWindow(t)
	hooks := []string{"tp_btf/sock_send_length", "tp_btf/sock_recv_length", "tp_btf/inet_sock_set_state",
		"tp_btf/net_dev_queue", "tp_btf/skb_copy_datagram_iovec"}
	if hasWindow {
		hooks = append(hooks, "tp_btf/tcp_sendmsg_locked")
	}
	for _, h := range hooks {
		if !attached[h] {
			t.Errorf("socket tier hook %s not attached", h)
		}
	}
	for _, m := range f.Metrics {
		switch m.Name {
		case "packets", "l2_duration", "l2_queue":
			checkSendWindowMetric(t, m, hasWindow)
		case "recv_queue", "rtt", "retransmits", "drops":
			if !m.Available {
				t.Errorf("%s: %+v, want available (op windows, socket state and socket hooks)", m.Name, m)
			}
		}
	}
}

// TestSocketTierUnenrolledNetnsRunsNoPayloadWork moves data in a netns that
// is not enrolled while the socket hooks run for it (their run count
// grows): no event comes out, no counter moves, and the per-CPU scratch the
// payload path starts with is never touched (a sentinel written into every
// CPU's slot survives), so the program returned at the netns filter.
func TestSocketTierUnenrolledNetnsRunsNoPayloadWork(t *testing.T) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF run stats: %v", err)
	}
	defer stats.Close()
	r := socketTier(t, Config{})
	enrolled, other := newNetns(t), newNetns(t)
	if err := r.Enroll(enrolled.ino, 21); err != nil {
		t.Fatal(err)
	}
	scratch := r.coll.Maps[captureMapSockScratch]
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	sentinel := bytes.Repeat([]byte{0xa5}, int(scratch.ValueSize()))
	vals := make([][]byte, cpus)
	for i := range vals {
		vals[i] = sentinel
	}
	if err := scratch.Put(uint32(0), vals); err != nil {
		t.Fatalf("write scratch sentinel: %v", err)
	}
	progStats := func(prog string) *ebpf.ProgramStats {
		st, err := r.coll.Programs[prog].Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	progs := []string{captureProgOnSockSend, captureProgOnSockRecv, captureProgOnSockState}
	before := map[string]*ebpf.ProgramStats{}
	for _, p := range progs {
		before[p] = progStats(p)
	}
	countersBefore := mustCounters(t, r)

	exchange(t, other, "tcp4", "127.0.0.1:0", 5, 5)

	for _, p := range progs {
		after := progStats(p)
		n := after.RunCount - before[p].RunCount
		if n == 0 {
			t.Fatalf("%s did not run for the unenrolled netns' socket I/O: the test saw none", p)
		}
		// A figure for bpf/OVERHEAD.md, not an assertion.
		t.Logf("%s: %d runs for unenrolled sockets, %v per run (with bpf_stats' own clock reads)",
			p, n, (after.Runtime-before[p].Runtime)/time.Duration(n))
	}
	var got [][]byte
	if err := scratch.Lookup(uint32(0), &got); err != nil {
		t.Fatal(err)
	}
	for cpu, v := range got {
		if !bytes.Equal(v, sentinel) {
			t.Fatalf("CPU %d's socket-op scratch was written by unenrolled I/O: the program went past the netns filter", cpu)
		}
	}
	// Barrier: the enrolled netns' exchange is seen, so anything from the
	// other one written before it would be too.
	convs := exchange(t, enrolled, "tcp4", "127.0.0.1:0", 1, 1)
	checkConversations(t, r, enrolled, 21, convs)
	for _, d := range r.rec.all().data {
		if d.Proc.NetnsIno != enrolled.ino {
			t.Fatalf("data of an unenrolled netns: %+v", d)
		}
	}
	for _, o := range r.rec.all().opens {
		if o.Proc.NetnsIno != enrolled.ino {
			t.Fatalf("connection of an unenrolled netns: %+v", o)
		}
	}
	for name, v := range mustCounters(t, r) {
		if v != countersBefore[name] {
			t.Errorf("counter %s moved from %d to %d", name, countersBefore[name], v)
		}
	}
}

// pidfdThread is PIDFD_THREAD (O_EXCL): a pidfd for one thread, which is
// what a task-storage map is keyed by.
const pidfdThread = unix.O_EXCL

// loopbackOnOneThread listens, dials, accepts and moves a request and a
// response over loopback in ns, every syscall on one locked thread, and
// reports whether that thread then has op-window storage (inflight): the
// storage is created only by a per-packet hook that went past its gate.
func loopbackOnOneThread(t *testing.T, r running, ns *testNetns) (window bool) {
	t.Helper()
	inflight := r.coll.Maps[captureMapInflight]
	wait(t, in(ns, func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		c, err := net.Dial("tcp4", l.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		s, err := l.Accept()
		if err != nil {
			return err
		}
		defer s.Close()
		buf := make([]byte, 64)
		for _, pair := range [][2]net.Conn{{c, s}, {s, c}} {
			if _, err := pair[0].Write(buf); err != nil {
				return err
			}
			if _, err := io.ReadFull(pair[1], buf); err != nil {
				return err
			}
		}
		fd, err := unix.PidfdOpen(unix.Gettid(), pidfdThread)
		if err != nil {
			return fmt.Errorf("pidfd of this thread: %w", err)
		}
		defer unix.Close(fd)
		v := make([]byte, inflight.ValueSize())
		switch err := inflight.Lookup(uint32(fd), &v); {
		case err == nil:
			window = true
		case !errors.Is(err, ebpf.ErrKeyNotExist):
			return fmt.Errorf("look up the thread's inflight storage: %w", err)
		}
		return nil
	}), 10*time.Second)
	return window
}

// TestSocketTierPerPacketHooksStopAtTheGateForUnenrolledSockets runs the
// per-packet hooks (they run for every packet and copy of the node) for a
// loopback exchange in a netns that is not enrolled, all on one thread: the
// hooks run (their run counts grow) but none opens an op window -- the
// thread has no inflight storage afterwards, so each returned at its gate
// (one task-storage lookup; the window openers one netns lookup more). The
// same exchange in an enrolled netns opens windows, and its operations
// carry packets and L2 and receive-queue times.
func TestSocketTierPerPacketHooksStopAtTheGateForUnenrolledSockets(t *testing.T) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF run stats: %v", err)
	}
	defer stats.Close()
	r := socketTier(t, Config{})
	enrolled, other := newNetns(t), newNetns(t)
	if err := r.Enroll(enrolled.ino, 23); err != nil {
		t.Fatal(err)
	}
	progs := []string{captureProgOnDevQueue, captureProgOnDevStartXmit, captureProgOnDevXmit,
		captureProgOnNetifReceive, captureProgOnTcpProbe, captureProgOnSkbCopy}
	// Without tcp:tcp_sendmsg_locked (6.12) sends get no window: the
	// device hooks still run and must stop at the gate.
	hasWindow := kernelHasSendWindow(t)
	if hasWindow {
		progs = append(progs, captureProgOnTcpSendmsg)
	}
	before := map[string]*ebpf.ProgramStats{}
	for _, p := range progs {
		st, err := r.coll.Programs[p].Stats()
		if err != nil {
			t.Fatal(err)
		}
		before[p] = st
	}
	if loopbackOnOneThread(t, r, other) {
		t.Fatal("an unenrolled netns' exchange opened an op window: a per-packet hook went past its gate")
	}
	for _, p := range progs {
		st, err := r.coll.Programs[p].Stats()
		if err != nil {
			t.Fatal(err)
		}
		n := st.RunCount - before[p].RunCount
		if n == 0 {
			t.Fatalf("%s did not run for the unenrolled exchange: the test saw none", p)
		}
		// A figure for bpf/OVERHEAD.md, not an assertion (other
		// traffic of the node runs the hooks too).
		t.Logf("%s: %d runs, %v per run (with bpf_stats' own clock reads)", p, n, (st.Runtime-before[p].Runtime)/time.Duration(n))
	}
	if !loopbackOnOneThread(t, r, enrolled) {
		t.Fatal("an enrolled netns' exchange opened no op window")
	}
	eventually(t, 5*time.Second, "metrics on the enrolled exchange's operations", func() bool {
		var send, l2, recv, queue bool
		for _, d := range r.rec.snapshot(enrolled.ino).data {
			if d.Send != nil && d.Send.Packets > 0 {
				send = true
				l2 = l2 || d.Send.Measured&event.MetricL2Duration != 0
			}
			if d.Recv != nil && d.Recv.Packets > 0 {
				recv = true
				queue = queue || d.Recv.Measured&event.MetricRecvQueue != 0
			}
		}
		return (send && l2 || !hasWindow) && recv && queue
	})
}

func mustCounters(t *testing.T, r running) Counters {
	t.Helper()
	c, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mmsghdr is struct mmsghdr of x86-64.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// mmsg calls sendmmsg or recvmmsg with one iovec per buffer.
func mmsg(trap uintptr, fd int, bufs [][]byte) (int, []uint32, error) {
	iovs := make([]unix.Iovec, len(bufs))
	msgs := make([]mmsghdr, len(bufs))
	for i, b := range bufs {
		iovs[i].Base = &b[0]
		iovs[i].SetLen(len(b))
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.SetIovlen(1)
	}
	n, _, errno := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
	if errno != 0 {
		return 0, nil, errno
	}
	lens := make([]uint32, n)
	for i := range lens {
		lens[i] = msgs[i].n
	}
	return int(n), lens, nil
}

// TestSocketTierCapturesMmsgPerMessagePeekOnceAndSendfileUncaptured drives
// the socket operations whose registers need care: every message of a
// sendmmsg and of a recvmmsg is captured with its own bytes (twice over
// the same vector, which must not confuse the message position); a
// MSG_PEEK read is not reported (the bytes are reported once, when read);
// sendfile is size-only, typed and counted as uncaptured.
func TestSocketTierCapturesMmsgPerMessagePeekOnceAndSendfileUncaptured(t *testing.T) {
	r := socketTier(t, Config{})
	ns := newNetns(t)
	if err := r.Enroll(ns.ino, 22); err != nil {
		t.Fatal(err)
	}
	parts := [][]byte{[]byte("one-"), []byte("two--"), []byte("three---")}
	batch := bytes.Join(parts, nil)
	peeked := []byte("peeked-then-read")
	file := bytes.Repeat([]byte("sendfile."), 1000)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	uncapturedBefore := mustCounters(t, r)["uncaptured_op"]

	var lfd, port int
	wait(t, in(ns, func() error { lfd, port = rawListen4(t); return nil }), time.Second)
	sent := make(chan struct{}, 2)
	srv := in(ns, func() error {
		defer unix.Close(lfd)
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for round := 0; round < 2; round++ {
			<-sent // the whole batch is queued: recvmmsg fills each buffer
			bufs := [][]byte{make([]byte, len(parts[0])), make([]byte, len(parts[1])), make([]byte, len(parts[2]))}
			n, lens, err := mmsg(unix.SYS_RECVMMSG, fd, bufs)
			if err != nil || n != 3 || !bytes.Equal(bytes.Join(bufs, nil), batch) {
				return fmt.Errorf("recvmmsg round %d: %d messages (%v) %v", round, n, lens, err)
			}
		}
		buf := make([]byte, 64)
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK)
		if err != nil || !bytes.HasPrefix(peeked, buf[:n]) {
			return fmt.Errorf("peek: %q %v", buf[:n], err)
		}
		got, err := readFull(fd, len(peeked))
		if err != nil || !bytes.Equal(got, peeked) {
			return fmt.Errorf("read after peek: %q %v", got, err)
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		for off := 0; off < len(file); {
			n, err := unix.Sendfile(fd, int(f.Fd()), nil, len(file)-off)
			if err != nil {
				return fmt.Errorf("sendfile: %w", err)
			}
			off += n
		}
		return nil
	})
	cli := in(ns, func() error {
		fd, err := rawConnect4(port)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for round := 0; round < 2; round++ {
			if n, _, err := mmsg(unix.SYS_SENDMMSG, fd, parts); err != nil || n != 3 {
				return fmt.Errorf("sendmmsg round %d: %d %v", round, n, err)
			}
			time.Sleep(50 * time.Millisecond) // let loopback deliver it all
			sent <- struct{}{}
		}
		if err := writeAll(fd, peeked); err != nil {
			return err
		}
		got, err := readFull(fd, len(file))
		if err != nil || !bytes.Equal(got, file) {
			return fmt.Errorf("read sendfile bytes: %d %v", len(got), err)
		}
		return nil
	})
	wait(t, cli, 10*time.Second)
	wait(t, srv, 10*time.Second)
	eventually(t, 5*time.Second, "both closes", func() bool { return len(r.rec.snapshot(ns.ino).closes) >= 2 })

	s := r.rec.snapshot(ns.ino)
	cl, sv := s.connsBy(event.RoleClient), s.connsBy(event.RoleServer)
	if len(cl) != 1 || len(sv) != 1 {
		t.Fatalf("want one client and one server connection, got %+v", s.opens)
	}
	want := append(append(bytes.Clone(batch), batch...), peeked...)
	streamOf(t, s, cl[0].Conn, event.Egress).complete(t, "client egress", want)
	in := streamOf(t, s, sv[0].Conn, event.Ingress)
	in.complete(t, "server ingress (peek reported once)", want)
	for _, st := range []struct {
		st      stream
		syscall event.Syscall
	}{{streamOf(t, s, cl[0].Conn, event.Egress), event.SysSendmmsg}, {in, event.SysRecvmmsg}} {
		var msgs []string
		for _, d := range st.st.events {
			if d.Syscall == st.syscall {
				msgs = append(msgs, string(d.Payload))
			}
		}
		if got, want := strings.Join(msgs, "|"), "one-|two--|three---|one-|two--|three---"; got != want {
			t.Errorf("%s events %q, want one per message %q", st.syscall, got, want)
		}
	}

	eg := streamOf(t, s, sv[0].Conn, event.Egress)
	if eg.size != uint64(len(file)) || len(eg.captured) != 0 {
		t.Fatalf("sendfile: %d bytes covered, %d captured; want %d size-only", eg.size, len(eg.captured), len(file))
	}
	for _, d := range eg.events {
		if d.Syscall != event.SysSendfile || d.Skip != event.SkipSendfile {
			t.Fatalf("sendfile reported as %+v", d)
		}
	}
	if got := mustCounters(t, r)["uncaptured_op"]; got <= uncapturedBefore {
		t.Fatalf("uncaptured_op counter %d after sendfile, was %d", got, uncapturedBefore)
	}
}

// TestFDReuseIsTwoConnections closes a connection and at once connects
// again on the same fd number, under each capture tier: two client
// connections with their own ids, each stream exact, each closed once.
// The fd number is the kernel's lowest free one, which another thread of
// the test binary may take in between: the pair is retried until both
// connections got the same number.
func TestFDReuseIsTwoConnections(t *testing.T) {
	for _, tier := range []CaptureTier{CaptureSocket, CaptureSyscall} {
		t.Run(tier.String(), func(t *testing.T) {
			if tier == CaptureSocket {
				requireSocketTier(t)
			}
			r := startCollector(t, Config{CaptureTier: tier})
			ns := newNetns(t)
			if err := r.Enroll(ns.ino, 23); err != nil {
				t.Fatal(err)
			}
			msgs := [][]byte{[]byte("first connection"), []byte("second one, same fd")}
			var lfd, port int
			wait(t, in(ns, func() error { lfd, port = rawListen4(t); return nil }), time.Second)
			srv := in(ns, func() error {
				// Reads every connection to EOF until the listener
				// is shut down.
				defer unix.Close(lfd)
				for {
					fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
					if err != nil {
						return nil
					}
					buf := make([]byte, 64)
					for {
						n, err := unix.Read(fd, buf)
						if n <= 0 || err != nil {
							break
						}
					}
					unix.Close(fd)
				}
			})
			var fd int
			var locals [2]netip.AddrPort
			cli := in(ns, func() error {
				defer unix.Shutdown(lfd, unix.SHUT_RDWR)
				for range 10 {
					var fds [2]int
					for i, m := range msgs {
						f, err := rawConnect4(port)
						if err != nil {
							return err
						}
						sa, _ := unix.Getsockname(f)
						in4 := sa.(*unix.SockaddrInet4)
						locals[i] = netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))
						fds[i] = f
						err = writeAll(f, m)
						unix.Close(f)
						if err != nil {
							return err
						}
					}
					if fds[0] == fds[1] {
						fd = fds[0]
						return nil
					}
				}
				return errors.New("10 pairs of connections never reused an fd number")
			})
			wait(t, cli, 10*time.Second)
			wait(t, srv, 10*time.Second)
			var cl [2]event.ConnOpen
			eventually(t, 5*time.Second, "both connections opened and closed", func() bool {
				s := r.rec.snapshot(ns.ino)
				for i := range cl {
					for _, o := range s.connsBy(event.RoleClient) {
						if o.Local == locals[i] {
							cl[i] = o
						}
					}
					if _, ok := s.closeOf(cl[i].Conn); cl[i].Conn == 0 || !ok {
						return false
					}
				}
				return true
			})
			s := r.rec.snapshot(ns.ino)
			if cl[0].Conn == cl[1].Conn {
				t.Fatalf("both connections reported as conn %d", cl[0].Conn)
			}
			for i, o := range cl {
				if o.FD != int32(fd) {
					t.Errorf("client conn %d reported on fd %d, want %d", i, o.FD, fd)
				}
				streamOf(t, s, o.Conn, event.Egress).complete(t, fmt.Sprintf("client conn %d", i), msgs[i])
				n := 0
				for _, c := range s.closes {
					if c.Conn == o.Conn {
						n++
					}
				}
				if n != 1 {
					t.Errorf("client conn %d closed %d times, want once", i, n)
				}
			}
		})
	}
}
