package bpf

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
)

// TestIgnoresUnenrolledAndHostTraffic runs the same exchange in an enrolled
// netns, an unenrolled one and the host netns at the same time: only the
// enrolled one is reported. After Unenroll, it is not reported either.
func TestIgnoresUnenrolledAndHostTraffic(t *testing.T) {
	r := startCollector(t, Config{})
	enrolled, other, later := newNetns(t), newNetns(t), newNetns(t)
	if err := r.Enroll(enrolled.ino, 11); err != nil {
		t.Fatal(err)
	}
	done := make(chan []conversation, 2)
	go func() { done <- exchange(t, other, "tcp4", "127.0.0.1:0", 5, 5) }()
	go func() { done <- exchange(t, nil, "tcp4", "127.0.0.1:0", 5, 5) }()
	convs := exchange(t, enrolled, "tcp4", "127.0.0.1:0", 5, 5)
	<-done
	<-done
	checkConversations(t, r, enrolled, 11, convs)
	for _, o := range r.rec.all().opens {
		if o.Proc.NetnsIno != enrolled.ino {
			t.Fatalf("captured a connection of netns %d, only %d is enrolled: %+v", o.Proc.NetnsIno, enrolled.ino, o)
		}
	}
	for _, d := range r.rec.all().data {
		if d.Proc.NetnsIno != enrolled.ino {
			t.Fatalf("captured data of netns %d: %+v", d.Proc.NetnsIno, d)
		}
	}

	before := len(r.rec.snapshot(enrolled.ino).opens)
	if err := r.Unenroll(enrolled.ino); err != nil {
		t.Fatal(err)
	}
	if err := r.Unenroll(enrolled.ino); err == nil {
		t.Fatal("second Unenroll of the same netns succeeded")
	}
	exchange(t, enrolled, "tcp4", "127.0.0.1:0", 2, 2)
	// Barrier: records are delivered in order, so once the exchange in a
	// netns enrolled afterwards is seen, anything from the first would be.
	if err := r.Enroll(later.ino, 12); err != nil {
		t.Fatal(err)
	}
	laterConvs := exchange(t, later, "tcp4", "127.0.0.1:0", 1, 0)
	checkConversations(t, r, later, 12, laterConvs)
	if after := len(r.rec.snapshot(enrolled.ino).opens); after != before {
		t.Fatalf("%d connections captured after Unenroll", after-before)
	}
}

// TestCapturesShortLivedChildProcess starts a client process inside the
// enrolled netns that connects, sends a line and exits within milliseconds:
// its whole connection is captured, and its fork, exec and exit reported.
func TestCapturesShortLivedChildProcess(t *testing.T) {
	r := startCollector(t, Config{})
	ns := newNetns(t)
	if err := r.Enroll(ns.ino, 21); err != nil {
		t.Fatal(err)
	}
	reply := []byte(strings.Repeat("bye-", 1000))
	var request string
	addrCh := make(chan string, 1)
	srv := in(ns, func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		addrCh <- l.Addr().String()
		c, err := l.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		request, err = bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		_, err = c.Write(reply)
		return err
	})
	addr := <-addrCh
	var pid int
	var took time.Duration
	wait(t, in(ns, func() error {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+addr)
		cmd.Stderr = os.Stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return err
		}
		pid = cmd.Process.Pid
		err := cmd.Wait()
		took = time.Since(start)
		return err
	}), 10*time.Second)
	wait(t, srv, 5*time.Second)
	t.Logf("child %d ran for %v", pid, took)

	var cl event.ConnOpen
	eventually(t, 5*time.Second, "the child's connection closed and its exit", func() bool {
		s := r.rec.snapshot(ns.ino)
		var closed, exited bool
		for _, o := range s.connsBy(event.RoleClient) {
			if o.Proc.TGID == uint32(pid) {
				cl = o
				_, closed = s.closeOf(o.Conn)
			}
		}
		for _, p := range s.procs {
			exited = exited || (p.Kind == event.ProcessExit && p.Proc.TGID == uint32(pid))
		}
		return closed && exited
	})
	s := r.rec.snapshot(ns.ino)
	if cl.Remote.String() != addr || cl.Proc.PodID != 21 {
		t.Fatalf("child connection %+v, want to %s in pod 21", cl, addr)
	}
	streamOf(t, s, cl.Conn, event.Egress).complete(t, "child egress", []byte(request))
	streamOf(t, s, cl.Conn, event.Ingress).complete(t, "child ingress", reply)
	if want := fmt.Sprintf("hello from child %d\n", pid); request != want {
		t.Fatalf("server got %q, want %q", request, want)
	}

	kinds := map[event.ProcessKind]event.ProcessEvent{}
	for _, p := range s.procs {
		if p.Proc.TGID == uint32(pid) {
			kinds[p.Kind] = p
		}
	}
	if f, ok := kinds[event.ProcessFork]; !ok || f.PPID != uint32(os.Getpid()) {
		t.Fatalf("fork of child %d not reported with parent %d: %+v", pid, os.Getpid(), kinds)
	}
	if e, ok := kinds[event.ProcessExec]; !ok || e.Filename != os.Args[0] {
		t.Fatalf("exec of child %d not reported with filename %s: %+v", pid, os.Args[0], kinds)
	}
	if x := kinds[event.ProcessExit]; x.ExitCode != 0 || x.Proc.PodID != 21 {
		t.Fatalf("exit of child %d: %+v, want code 0 in pod 21", pid, x)
	}
	t.Logf("child process events: fork %+v, exec %q, exit code %d; connection %d: %d bytes out, %d in",
		kinds[event.ProcessFork].Proc.Comm, kinds[event.ProcessExec].Filename, kinds[event.ProcessExit].ExitCode,
		cl.Conn, len(request), len(reply))
}

// TestEnrollScansExistingProcessesAndSockets enrolls a netns in which this
// process already has a thread and an open connection: the scan reports
// the process, and the connection is picked up on its first data syscall
// with an unknown role.
func TestEnrollScansExistingProcessesAndSockets(t *testing.T) {
	r := startCollector(t, Config{})
	ns := newNetns(t)
	addrCh := make(chan string, 1)
	goOn, accepted := make(chan struct{}), make(chan struct{})
	msg := []byte("sent after enrollment\n")
	srv := in(ns, func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		addrCh <- l.Addr().String()
		c, err := l.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		close(accepted)
		<-goOn
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != string(msg) {
			return fmt.Errorf("server read %q, %v", line, err)
		}
		return nil
	})
	addr := <-addrCh
	connected := make(chan struct{})
	cli := in(ns, func() error {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		close(connected)
		<-goOn
		_, err = c.Write(msg)
		return err
	})
	<-connected
	<-accepted
	if err := r.Enroll(ns.ino, 31); err != nil {
		t.Fatal(err)
	}
	close(goOn)
	wait(t, cli, 5*time.Second)
	wait(t, srv, 5*time.Second)

	// The open of each connection and its data are separate records: wait
	// for the data too, not only for the opens.
	eventually(t, 5*time.Second, "existing process and both connections with their bytes", func() bool {
		s := r.rec.snapshot(ns.ino)
		conns := s.connsBy(event.RoleUnknown)
		if len(conns) < 2 || len(s.procs) < 1 {
			return false
		}
		for _, o := range conns {
			var n int
			for _, d := range s.data {
				if d.Conn == o.Conn {
					n += int(d.Size)
				}
			}
			if n < len(msg) {
				return false
			}
		}
		return true
	})
	s := r.rec.snapshot(ns.ino)
	var found bool
	for _, p := range s.procs {
		found = found || (p.Kind == event.ProcessExisting && p.Proc.TGID == uint32(os.Getpid()) && p.Proc.PodID == 31)
	}
	if !found {
		t.Fatalf("scan did not report this process (%d): %+v", os.Getpid(), s.procs)
	}
	for _, o := range s.connsBy(event.RoleUnknown) {
		dir, sc := event.Egress, event.SysWrite
		if o.Syscall == event.SysRead {
			dir, sc = event.Ingress, event.SysRead
		}
		if o.Syscall != sc {
			t.Fatalf("pre-existing connection first seen through %v", o.Syscall)
		}
		streamOf(t, s, o.Conn, dir).complete(t, fmt.Sprintf("pre-existing conn %v", dir), msg)
	}
}
