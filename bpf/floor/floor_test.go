package floor

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/internal/testenv"
)

// inNewNetns runs f on a thread of its own, in a new network namespace
// with loopback up, and returns the namespace's inode and f's error.
// The thread is never unlocked, so it dies with its goroutine.
func inNewNetns(ready func(ino uint64), f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ch <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("unshare netns: %w", err)
			}
			var st unix.Stat_t
			if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
				return fmt.Errorf("stat netns: %w", err)
			}
			s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(s)
			ifr, err := unix.NewIfreq("lo")
			if err != nil {
				return err
			}
			if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
				return err
			}
			ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
			if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
				return err
			}
			ready(st.Ino)
			return f()
		}()
	}()
	return <-ch
}

// exchange connects over loopback with raw syscalls (so the test knows
// which: write, writev with two segments, sendmsg with more than a big
// record holds) and reads everything on the other end.
func exchange(payloads [][]byte) error {
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	if err := unix.Listen(ln, 1); err != nil {
		return err
	}
	sa, err := unix.Getsockname(ln)
	if err != nil {
		return err
	}
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(c)
	if err := unix.Connect(c, sa); err != nil {
		return err
	}
	s, _, err := unix.Accept(ln)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	total := 0
	for _, p := range payloads {
		total += len(p)
	}
	if _, err := unix.Write(c, payloads[0]); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if _, err := unix.Writev(c, payloads[1:3]); err != nil {
		return fmt.Errorf("writev: %w", err)
	}
	if _, err := unix.SendmsgBuffers(c, payloads[3:], nil, nil, 0); err != nil {
		return fmt.Errorf("sendmsg: %w", err)
	}
	buf := make([]byte, 64<<10)
	for got := 0; got < total; {
		n, err := unix.Read(s, buf)
		if err != nil || n == 0 {
			return fmt.Errorf("read after %d of %d bytes: %v", got, total, err)
		}
		got += n
	}
	return nil
}

func filled(n int, b byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = b + byte(i%7)
	}
	return p
}

func byteSum(ps ...[]byte) uint64 {
	var s uint64
	for _, p := range ps {
		for _, v := range p {
			s += uint64(v)
		}
	}
	return s
}

// TestFloorCopiesEnrolledSocketPayloadIntoItsRing pins what the bench's
// floor does: for a socket of an enrolled namespace each send (write,
// writev's two segments, sendmsg's segments) is one record holding the
// op's payload up to the big class (4096 bytes), and the receiving end's
// reads are copied too; a namespace not enrolled gets nothing. Privileged:
// loads eBPF.
func TestFloorCopiesEnrolledSocketPayloadIntoItsRing(t *testing.T) {
	testenv.Privileged(t, "loads eBPF programs and creates network namespaces")
	var set *Set
	t.Cleanup(func() {
		if set != nil {
			if err := set.Close(); err != nil {
				t.Error(err)
			}
		}
	})
	write, head, body := filled(100, 'a'), filled(60, 'h'), filled(200, 'b')
	big1, big2 := filled(3000, 'x'), filled(2000, 'y') // 5000 bytes: 4096 copied
	payloads := [][]byte{write, head, body, big1, big2}
	var loadErr error
	err := inNewNetns(func(ino uint64) { set, loadErr = Load([]uint64{ino}) }, func() error {
		if loadErr != nil {
			return loadErr
		}
		return exchange(payloads)
	})
	if err != nil {
		t.Fatal(err)
	}
	// And traffic of a namespace not enrolled: no records.
	if err := inNewNetns(func(uint64) {}, func() error { return exchange(payloads) }); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(5 * time.Second)
	for set.Sent().Records < 3 || set.Received().Len < 5360 {
		if time.Now().After(deadline) {
			t.Fatalf("reader drained sent %+v received %+v, want 3 sends and 5360 bytes received", set.Sent(), set.Received())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // anything from the unenrolled run would be in by now

	sent := set.Sent()
	want := Counts{Records: 3, Len: 5360, Copied: 100 + 260 + 4096,
		ByteSum: byteSum(write, head, body, big1, big2[:4096-3000])}
	if sent != want {
		t.Errorf("sent: got %+v, want %+v (write, writev of two, sendmsg of 5000 bytes copied to 4096)", sent, want)
	}
	recv := set.Received()
	if recv.Len != 5360 || recv.Records == 0 || recv.Copied > recv.Len {
		t.Errorf("received: got %+v, want 5360 bytes moved over at least one record, no more copied", recv)
	}
	if recv.Copied == recv.Len && recv.ByteSum != byteSum(payloads...) {
		t.Errorf("received bytes sum %d, want %d: not the payload sent", recv.ByteSum, byteSum(payloads...))
	}
	if lost, err := set.Lost(); err != nil || lost != 0 {
		t.Errorf("lost records: %d (%v), want 0", lost, err)
	}
	if m := set.Malformed(); m != 0 {
		t.Errorf("%d malformed records", m)
	}
	roles := map[Role]int{}
	for _, r := range set.Roles() {
		roles[r]++
	}
	if roles[Capture] != 2 || roles[EmptySock] != 2 || roles[EmptyPacket] != 2 {
		t.Errorf("program roles %v, want 2 of each", roles)
	}
}
