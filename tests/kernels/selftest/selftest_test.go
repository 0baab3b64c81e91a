package selftest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/tests/kernels/internal/guestproto"
)

// expectEnv lists, comma-separated, the hook tiers this kernel must offer
// (btf, kprobe, fentry). The harness derives it from the kernel's config.
const expectEnv = "WEIR_KERNEL_EXPECT"

// Filesystem magic numbers (statfs f_type) of the mounts the tests need.
const (
	bpffsMagic   = 0xcafe4a11
	tracefsMagic = 0x74726163
)

// hookFunction is the kernel function the kprobe and fentry checks attach
// to: one of the functions Weir's upper tiers hook, easy to trigger from
// user space with a loopback TCP write.
const hookFunction = "tcp_sendmsg"

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("selftest: not root, every test here loads eBPF and skips")
	} else if err := rlimit.RemoveMemlock(); err != nil {
		fmt.Fprintln(os.Stderr, "selftest: removing the memlock limit:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading eBPF programs needs root")
	}
}

// ensureMounted mounts fstype on target unless a filesystem with that magic
// is already there. The guest init mounts everything (so there a missing
// mount is an error); on the host bpffs and tracefs are not mounted at boot.
func ensureMounted(t *testing.T, fstype, target string, magic int64) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err == nil && int64(st.Type) == magic {
		return
	}
	if os.Getenv(guestproto.GuestEnv) == "1" {
		t.Errorf("%s is not mounted on %s: the guest init should have mounted it", fstype, target)
	}
	// Left mounted on purpose: other tests on the host may have found it
	// mounted meanwhile and be using it; mounting is idempotent and harmless.
	if err := unix.Mount(fstype, target, fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
		t.Fatalf("mounting %s on %s: %v", fstype, target, err)
	}
}

// newCounter returns a one-slot array map holding a u64 event count.
func newCounter(t *testing.T) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "selftest_count", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatalf("creating counter map: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func readCounter(t *testing.T, m *ebpf.Map) uint64 {
	t.Helper()
	var n uint64
	if err := m.Lookup(uint32(0), &n); err != nil {
		t.Fatalf("reading counter: %v", err)
	}
	return n
}

// countingInsns increments the counter in m and returns ret. When tgid is not
// zero it counts only events of that process, so that other processes on the
// machine cannot inflate the count.
func countingInsns(m *ebpf.Map, tgid uint32, ret int32) asm.Instructions {
	var insns asm.Instructions
	if tgid != 0 {
		insns = append(insns,
			asm.FnGetCurrentPidTgid.Call(),
			asm.RSh.Imm(asm.R0, 32),
			asm.JNE.Imm(asm.R0, int32(tgid), "out"),
		)
	}
	return append(insns,
		asm.StoreImm(asm.R10, -4, 0, asm.Word), // key = 0
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord), // atomic: events may fire on several CPUs
		asm.Mov.Imm(asm.R0, ret).WithSymbol("out"),
		asm.Return(),
	)
}

func loadProgram(t *testing.T, spec *ebpf.ProgramSpec) (*ebpf.Program, error) {
	t.Helper()
	spec.License = "GPL"
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { prog.Close() })
	return prog, nil
}

// TestSocketFilterCountsLoopbackDatagrams attaches a socket filter to a UDP
// socket on 127.0.0.1 and checks it saw exactly the datagrams sent, which all
// still arrive. In the guest this also proves that init brought up lo.
func TestSocketFilterCountsLoopbackDatagrams(t *testing.T) {
	requireRoot(t)
	const datagrams = 16
	counter := newCounter(t)
	prog, err := loadProgram(t, &ebpf.ProgramSpec{
		Name: "count_dgrams", Type: ebpf.SocketFilter,
		Instructions: countingInsns(counter, 0, -1), // -1: keep the whole packet
	})
	if err != nil {
		t.Fatalf("loading socket filter: %v", err)
	}

	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listening on 127.0.0.1: %v", err)
	}
	defer rx.Close()
	raw, err := rx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var attachErr error
	if err := raw.Control(func(fd uintptr) {
		attachErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_BPF, prog.FD())
	}); err != nil {
		t.Fatal(err)
	}
	if attachErr != nil {
		t.Fatalf("SO_ATTACH_BPF: %v", attachErr)
	}

	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatalf("dialing the loopback socket (is lo up?): %v", err)
	}
	defer tx.Close()
	buf := make([]byte, 64)
	if err := rx.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := range datagrams {
		msg := fmt.Sprintf("datagram %d", i)
		if _, err := tx.Write([]byte(msg)); err != nil {
			t.Fatalf("sending datagram %d: %v", i, err)
		}
		n, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("receiving datagram %d through the filter: %v", i, err)
		}
		if got := string(buf[:n]); got != msg {
			t.Fatalf("datagram %d arrived as %q; want %q (the filter must keep whole packets)", i, got, msg)
		}
	}
	if got := readCounter(t, counter); got != datagrams {
		t.Errorf("socket filter counted %d packets; want %d", got, datagrams)
	}
}

// TestTracepointCountsOwnSyscalls attaches to the syscalls:sys_enter_getppid
// tracepoint (through tracefs) and checks the program ran once per getppid
// call of this process.
func TestTracepointCountsOwnSyscalls(t *testing.T) {
	requireRoot(t)
	ensureMounted(t, "tracefs", "/sys/kernel/tracing", tracefsMagic)
	const calls = 32
	counter := newCounter(t)
	prog, err := loadProgram(t, &ebpf.ProgramSpec{
		Name: "count_getppid", Type: ebpf.TracePoint,
		Instructions: countingInsns(counter, uint32(os.Getpid()), 0),
	})
	if err != nil {
		t.Fatalf("loading tracepoint program: %v", err)
	}
	tp, err := link.Tracepoint("syscalls", "sys_enter_getppid", prog, nil)
	if err != nil {
		t.Fatalf("attaching to syscalls:sys_enter_getppid: %v", err)
	}
	defer tp.Close()

	for range calls {
		unix.Getppid()
	}
	if got := readCounter(t, counter); got != calls {
		t.Errorf("tracepoint counted %d getppid calls; want %d", got, calls)
	}
}

// TestMapPinsInBPFFS pins a map in bpffs and opens it again from the pin, as
// the daemon does to keep state across restarts.
func TestMapPinsInBPFFS(t *testing.T) {
	requireRoot(t)
	ensureMounted(t, "bpf", "/sys/fs/bpf", bpffsMagic)
	m := newCounter(t)
	pin := filepath.Join("/sys/fs/bpf", fmt.Sprintf("weir-selftest-%d", os.Getpid()))
	if err := m.Pin(pin); err != nil {
		t.Fatalf("pinning map: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Unpin(); err != nil {
			t.Errorf("unpinning %s: %v", pin, err)
		}
	})
	if err := m.Put(uint32(0), uint64(42)); err != nil {
		t.Fatal(err)
	}
	pinned, err := ebpf.LoadPinnedMap(pin, nil)
	if err != nil {
		t.Fatalf("opening pinned map: %v", err)
	}
	defer pinned.Close()
	var v uint64
	if err := pinned.Lookup(uint32(0), &v); err != nil || v != 42 {
		t.Errorf("pinned map slot 0 = %d, %v; want 42 written through the original", v, err)
	}
}

// tcpWrites makes this process call tcp_sendmsg at least n times: n one-byte
// writes on a loopback TCP connection.
func tcpWrites(t *testing.T, n int) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on 127.0.0.1: %v", err)
	}
	defer ln.Close()
	drained := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			drained <- err
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, c)
		drained <- err
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatalf("dialing loopback: %v", err)
	}
	for i := range n {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			c.Close()
			t.Fatalf("write %d: %v", i, err)
		}
	}
	c.Close()
	if err := <-drained; err != nil {
		t.Fatalf("loopback server: %v", err)
	}
}

// unavailable reports whether err is how a kernel says "this hook type is not
// offered here" (missing config, lockdown), as opposed to a bug in the
// program or the test.
func unavailable(err error) bool {
	return errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, os.ErrNotExist) ||
		errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EOPNOTSUPP)
}

// TestHookTiersMatchKernelConfig checks each upper hook tier on this kernel:
// where WEIR_KERNEL_EXPECT names it, it must attach and run; where it does
// not, it must either work or fail with an error that says "unavailable", so
// that the daemon's tier probe can tell the two apart. It prints one
// "weir-kernel-report:" line that the harness copies into its summary.
func TestHookTiersMatchKernelConfig(t *testing.T) {
	requireRoot(t)
	expect := map[string]bool{}
	for _, f := range strings.Split(os.Getenv(expectEnv), ",") {
		if f = strings.TrimSpace(f); f != "" {
			expect[f] = true
		}
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s, expecting %q", unix.ByteSliceToString(uts.Release[:]), os.Getenv(expectEnv))

	found := map[string]string{}
	check := func(name string, probe func(t *testing.T) error) {
		t.Run(name, func(t *testing.T) {
			err := probe(t)
			switch {
			case err == nil:
				found[name] = "yes"
			case expect[name]:
				found[name] = "MISSING"
				t.Fatalf("%s expected on this kernel (%s=%s) but unavailable: %v", name, expectEnv, os.Getenv(expectEnv), err)
			case unavailable(err):
				found[name] = "no"
				t.Logf("%s unavailable on this kernel, as its config allows: %v", name, err)
			default:
				found[name] = "error"
				t.Fatalf("%s failed with an error that does not read as 'unavailable': %v", name, err)
			}
		})
	}

	check("btf", func(t *testing.T) error {
		spec, err := btf.LoadKernelSpec()
		if err != nil {
			return err
		}
		var fn *btf.Func
		if err := spec.TypeByName(hookFunction, &fn); err != nil {
			t.Fatalf("kernel BTF loaded but has no function %s: %v", hookFunction, err)
		}
		return nil
	})
	check("kprobe", func(t *testing.T) error {
		counter := newCounter(t)
		prog, err := loadProgram(t, &ebpf.ProgramSpec{
			Name: "count_kprobe", Type: ebpf.Kprobe,
			Instructions: countingInsns(counter, uint32(os.Getpid()), 0),
		})
		if err != nil {
			return fmt.Errorf("loading kprobe program: %w", err)
		}
		kp, err := link.Kprobe(hookFunction, prog, nil)
		if err != nil {
			return fmt.Errorf("attaching kprobe to %s: %w", hookFunction, err)
		}
		defer kp.Close()
		return expectRuns(t, counter, hookFunction, "kprobe")
	})
	check("fentry", func(t *testing.T) error {
		counter := newCounter(t)
		prog, err := loadProgram(t, &ebpf.ProgramSpec{
			Name: "count_fentry", Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: hookFunction,
			Instructions: countingInsns(counter, uint32(os.Getpid()), 0),
		})
		if err != nil {
			return fmt.Errorf("loading fentry program for %s: %w", hookFunction, err)
		}
		fe, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return fmt.Errorf("attaching fentry to %s: %w", hookFunction, err)
		}
		defer fe.Close()
		return expectRuns(t, counter, hookFunction, "fentry")
	})

	t.Logf("%sbtf=%s kprobe=%s fentry=%s", "weir-kernel-report: ", found["btf"], found["kprobe"], found["fentry"])
}

// expectRuns triggers fn and fails the test unless the attached program
// counted every call: an attach that succeeds but never fires is a failure,
// not an unavailable tier.
func expectRuns(t *testing.T, counter *ebpf.Map, fn, kind string) error {
	t.Helper()
	const writes = 8
	tcpWrites(t, writes)
	if got := readCounter(t, counter); got < writes {
		t.Fatalf("%s on %s attached but counted %d calls after %d writes; want at least %d", kind, fn, got, writes, writes)
	}
	return nil
}
