// Command guestinit is /init of the initramfs that the kernel test harness
// (tests/kernels/run.sh) boots under QEMU. It turns a bare kernel into just
// enough of a machine for Go tests that load eBPF: it mounts the pseudo
// filesystems those tests need (proc, sysfs, devtmpfs, bpffs, tracefs,
// debugfs, cgroup2, a tmpfs /tmp), loads the kernel modules the host packed,
// brings up the loopback interface, then runs each test binary from the
// manifest and reports through the serial console and QEMU's isa-debug-exit
// device.
//
// It is a static Go program (CGO_ENABLED=0) so the initramfs needs no libc,
// shell or iproute2: every step is a syscall or netlink message from here.
// As PID 1 it must never return; it powers the machine off when done.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/tests/kernels/internal/guestproto"
)

// killGrace bounds how long the guest waits for a killed test binary's
// output to drain (a leftover child may hold the pipe open).
const killGrace = 5 * time.Second

func main() {
	con := &console{w: os.Stdout}
	log := slog.New(slog.NewTextHandler(con, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // the kernel's clock is meaningless to the reader; elapsed times are logged explicitly
			}
			return a
		},
	}))
	code := run(context.Background(), log, con)
	halt(log, code)
}

// console serialises writes to the serial console so that the guest's own
// lines and the test output do not interleave mid-line.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(p)
}

func (c *console) line(s string) {
	_, _ = c.Write([]byte(s + "\n"))
}

// run does everything but halting and returns the exit code to report.
func run(ctx context.Context, log *slog.Logger, con *console) int {
	m, err := guestproto.ReadManifest(guestproto.ManifestPath)
	if err != nil {
		// Without the manifest there is no nonce, so no marker the host
		// would accept: the host reports the run as failed for lack of one.
		log.Error("cannot read the manifest", "err", err)
		return guestproto.ExitHarness
	}
	marker := func(kind string, fields map[string]string) {
		con.line(guestproto.Format(m.Nonce, guestproto.Marker{Kind: kind, Fields: fields}))
	}
	fail := func(err error) int {
		log.Error("guest setup failed", "err", err)
		marker(guestproto.KindError, map[string]string{"msg": err.Error()})
		marker(guestproto.KindDone, map[string]string{"exit": strconv.Itoa(guestproto.ExitHarness)})
		return guestproto.ExitHarness
	}

	if err := mountAll(log); err != nil {
		return fail(err)
	}
	if err := loadModules(log, m.Modules); err != nil {
		return fail(err)
	}
	if err := loopbackUp(); err != nil {
		return fail(err)
	}
	if err := setEnv(m.Env); err != nil {
		return fail(err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fail(fmt.Errorf("uname: %w", err))
	}
	marker(guestproto.KindInfo, map[string]string{
		"release": unix.ByteSliceToString(uts.Release[:]),
		"cpus":    strconv.Itoa(numCPU()),
	})

	code := guestproto.ExitPassed
	for _, t := range m.Tests {
		marker(guestproto.KindBegin, map[string]string{"name": t.Name})
		res := runTest(ctx, log, con, t)
		fields := map[string]string{
			"name":    t.Name,
			"exit":    strconv.Itoa(res.exit),
			"passed":  strconv.Itoa(res.counts.Passed),
			"failed":  strconv.Itoa(res.counts.Failed),
			"skipped": strconv.Itoa(res.counts.Skipped),
			"seconds": strconv.FormatFloat(res.elapsed.Seconds(), 'f', 2, 64),
		}
		if res.timedOut {
			fields["timeout"] = "true"
		}
		if res.err != nil {
			fields["msg"] = res.err.Error()
		}
		marker(guestproto.KindEnd, fields)
		if res.exit != 0 {
			code = guestproto.ExitTestsFailed
		}
	}
	marker(guestproto.KindDone, map[string]string{"exit": strconv.Itoa(code)})
	return code
}

// mount is one filesystem the tests expect.
type mount struct {
	fstype, target string
	flags          uintptr
	optional       bool // debugfs: useful for debugging, not needed by any test
}

// guestMounts lists the pseudo filesystems in dependency order (/sys before
// the filesystems mounted below it).
func guestMounts() []mount {
	return []mount{
		{fstype: "proc", target: "/proc", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{fstype: "sysfs", target: "/sys", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{fstype: "devtmpfs", target: "/dev", flags: unix.MS_NOSUID},
		{fstype: "bpf", target: "/sys/fs/bpf", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{fstype: "tracefs", target: "/sys/kernel/tracing", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{fstype: "debugfs", target: "/sys/kernel/debug", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, optional: true},
		{fstype: "cgroup2", target: "/sys/fs/cgroup", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{fstype: "tmpfs", target: "/tmp", flags: unix.MS_NOSUID | unix.MS_NODEV},
		{fstype: "tmpfs", target: "/run", flags: unix.MS_NOSUID | unix.MS_NODEV},
	}
}

func mountAll(log *slog.Logger) error {
	for _, mt := range guestMounts() {
		if err := os.MkdirAll(mt.target, 0o755); err != nil {
			return fmt.Errorf("creating mount point %s: %w", mt.target, err)
		}
		err := unix.Mount(mt.fstype, mt.target, mt.fstype, mt.flags, "")
		if errors.Is(err, unix.EBUSY) {
			continue // already mounted (the kernel may mount devtmpfs itself)
		}
		if err != nil {
			if mt.optional {
				log.Warn("optional mount failed", "fstype", mt.fstype, "target", mt.target, "err", err)
				continue
			}
			return fmt.Errorf("mounting %s on %s: %w", mt.fstype, mt.target, err)
		}
	}
	return nil
}

// loadModules inserts modules in the given order (the host resolved
// dependencies). A module that is already present is fine.
func loadModules(log *slog.Logger, paths []string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("opening module: %w", err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("loading module %s: %w", filepath.Base(p), err)
		}
		log.Info("module loaded", "module", filepath.Base(p))
	}
	return nil
}

// loopbackUp brings up lo: the kernel creates it down, and tests talk to
// servers they start on 127.0.0.1.
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("setting lo up: %w", err)
	}
	return nil
}

// setEnv gives test binaries a conventional environment plus the manifest's.
func setEnv(extra map[string]string) error {
	env := map[string]string{"PATH": "/bin:/sbin", "HOME": "/root", "TMPDIR": "/tmp", guestproto.GuestEnv: "1"}
	for k, v := range extra {
		env[k] = v
	}
	for k, v := range env {
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("setting %s: %w", k, err)
		}
	}
	return os.MkdirAll("/root", 0o700)
}

func numCPU() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0
	}
	return set.Count()
}

// result is the outcome of one test binary.
type result struct {
	exit     int // process exit code, -1 when killed
	counts   guestproto.Counts
	elapsed  time.Duration
	timedOut bool
	err      error // why the binary could not be run or waited for
}

// runTest runs one test binary with its output copied to the console and
// tallied. The binary runs in its own process group so that a timeout kills
// any children it left behind too.
func runTest(ctx context.Context, log *slog.Logger, con *console, t guestproto.Test) result {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(t.Timeout))
	defer cancel()

	out := &lineTally{con: con}
	cmd := exec.CommandContext(ctx, t.Path, t.Args...)
	cmd.Dir = t.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = killGrace

	start := time.Now()
	log.Info("running test binary", "name", t.Name, "path", t.Path, "args", strings.Join(t.Args, " "), "timeout", time.Duration(t.Timeout))
	err := cmd.Run()
	out.flush()
	res := result{exit: 0, counts: out.counts, elapsed: time.Since(start)}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.exit = exitErr.ExitCode()
	default:
		res.exit = -1
		res.err = err
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.timedOut = true
		res.exit = -1
		res.err = fmt.Errorf("killed after %v", time.Duration(t.Timeout))
	}
	return res
}

// lineTally copies output to the console a line at a time and counts the
// top-level test results in it. exec feeds it from a single goroutine.
type lineTally struct {
	con     *console
	partial []byte
	counts  guestproto.Counts
}

func (l *lineTally) Write(p []byte) (int, error) {
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.emit(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *lineTally) flush() {
	if len(l.partial) > 0 {
		l.emit(string(l.partial))
		l.partial = nil
	}
}

func (l *lineTally) emit(line string) {
	l.counts.Observe(line)
	l.con.line(line)
}

// halt reports code through isa-debug-exit, which ends QEMU with exit status
// (code<<1)|1, and powers off if that device is missing. PID 1 must not
// return: the kernel would panic.
func halt(log *slog.Logger, code int) {
	unix.Sync()
	// Both exits stop the machine at once; lines still queued in the tty or
	// the UART would be lost, among them the "done" marker. tcdrain waits
	// until the serial driver has sent everything.
	if err := unix.IoctlSetInt(int(os.Stdout.Fd()), unix.TCSBRK, 1); err != nil {
		log.Warn("draining the console failed, the last lines may be lost", "err", err)
	}
	if err := debugExit(code); err != nil {
		log.Error("isa-debug-exit failed, powering off", "err", err)
	}
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		log.Error("power off failed", "err", err)
	}
	select {}
}
