package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Exit statuses of timeout(1): 124 when it stopped the command with SIGTERM,
// 128+9 when it had to SIGKILL it after --kill-after.
const (
	timeoutStatus     = 124
	timeoutKillStatus = 137
)

// timeoutKillAfter is how long timeout(1) waits after SIGTERM before SIGKILL.
const timeoutKillAfter = 10 * time.Second

// maxLineBytes bounds one serial console line kept in memory; longer lines
// (a test dumping a buffer) are cut and the cut is counted in the log.
const maxLineBytes = 64 << 10

// kernelCmdline keeps the guest quiet and fast under emulation: console on
// the first UART (8250, built into Debian's kernels), panics end QEMU (with
// -no-reboot), the CPU's RDRAND seeds the RNG so Go's getrandom does not
// block, no speculative-execution mitigations slow the emulated CPU, and no
// BIOS disk probing (edd=off) prints a half line before init's first.
//
// A soft lockup panics (ending the run at once instead of at the harness
// timeout) after every CPU's stack is printed; loglevel=5 lets those stacks
// and registers (KERN_DEFAULT, level 4) reach the console. This is how the
// stale-code livelock described at defaultAccel was diagnosed.
const kernelCmdline = "console=ttyS0,115200 panic=-1 loglevel=5 random.trust_cpu=on mitigations=off edd=off " +
	"softlockup_all_cpu_backtrace=1 softlockup_panic=1 rdinit=/init"

// defaultAccel is QEMU's accelerator: TCG with one host thread for all
// vCPUs. The guest still has -smp CPUs (IPIs, per-CPU maps, softirqs on the
// other CPU all happen), but QEMU runs them round-robin instead of one
// host thread each (MTTCG). The cost: two CPUs never execute at the same
// instant, so races that need true parallelism show up less often here
// than on hardware (preemption and interrupts between CPUs still happen).
//
// Why not MTTCG: with it, QEMU 7.2 (Debian 12) intermittently keeps
// executing a stale translation of kernel text after the kernel patched it
// (issue #4). Each collector load and close toggles the syscall tracepoints'
// static key, which text_poke_bp() patches with an int3 at the jump-label
// site in syscall_trace_enter while both vCPUs run syscalls through it.
// Sometimes a vCPU keeps the translation holding the int3 after the patch
// is complete: memory holds the new jump ("Code: ... <eb> 63"), yet every
// CPU entering a syscall traps at syscall_trace_enter+0xe9, and
// kprobe_int3_handler, finding no int3 there any more ("removed right after
// we hit it"), backs RIP up to re-execute the instruction: the stale int3
// again, forever. Both CPUs soft-lock with only do_syscall_64 ->
// syscall_trace_enter -> asm_exc_int3 -> kprobe_int3_handler on their
// stacks and no lock or BPF program involved. On hardware the int3
// handler's IRET is serialising and the retry sees the new bytes. It was
// not caused by the richer tier: 3 of 3 runs of the richer tier's test
// locked up within 2-8 collector loads, and so did a run of base-tier-only
// tests (19th load) and a full run (2nd load, before any richer tier).
// With one TCG thread, 30 of 30 iterations of that test (5 runs) and every
// full run since passed it, with no lockup, at about the same wall time on
// a 2-core host. WEIR_KERNEL_ACCEL (run.sh) overrides it, e.g. "tcg" to check
// whether a newer QEMU still does this.
const defaultAccel = "tcg,thread=single"

// qemuStatus is how the QEMU process ended.
type qemuStatus struct {
	exitCode int  // QEMU's own exit status (isa-debug-exit: (code<<1)|1)
	timedOut bool // timeout(1) stopped it
}

// qemuArgs returns QEMU's command line: software emulation (the host's KVM
// does not run this guest), no network device, serial console on stdio, and
// the isa-debug-exit device through which the guest reports its exit code.
func qemuArgs(c *config, initramfs string) []string {
	return []string{
		"-accel", c.accel, "-cpu", "max",
		"-smp", strconv.Itoa(c.smp), "-m", c.memory,
		"-nographic", "-monitor", "none", "-no-reboot",
		"-nic", "none",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
		"-kernel", c.kernel, "-initrd", initramfs,
		"-append", strings.Join(append([]string{kernelCmdline}, c.cmdline...), " "),
	}
}

// boot runs QEMU under timeout(1) and feeds every console line to col, to
// stdout (prefixed) and to the log file at logPath.
func boot(ctx context.Context, log *slog.Logger, c *config, initramfs, logPath string, col *collector) (qemuStatus, error) {
	timeoutBin, err := exec.LookPath("timeout")
	if err != nil {
		return qemuStatus{}, fmt.Errorf("timeout(1) is needed to bound QEMU: %w", err)
	}
	qemu, err := exec.LookPath(c.qemu)
	if err != nil {
		return qemuStatus{}, fmt.Errorf("QEMU not found (apt-get install qemu-system-x86): %w", err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return qemuStatus{}, fmt.Errorf("creating serial log: %w", err)
	}
	defer logFile.Close()

	// Our own deadline is a backstop behind timeout(1), for a QEMU that
	// ignores even SIGKILL's parent dying (it should not).
	ctx, cancel := context.WithTimeout(ctx, c.timeout+timeoutKillAfter+10*time.Second)
	defer cancel()
	args := append([]string{"--kill-after=" + timeoutKillAfter.String(), strconv.Itoa(int(c.timeout.Seconds())) + "s", qemu}, qemuArgs(c, initramfs)...)
	cmd := exec.CommandContext(ctx, timeoutBin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return qemuStatus{}, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return qemuStatus{}, err
	}
	log.Info("booting", "cmd", timeoutBin+" "+strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return qemuStatus{}, fmt.Errorf("starting QEMU: %w", err)
	}

	var mu sync.Mutex // serialises the log file and the terminal
	emit := func(prefix string, term io.Writer, line string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(logFile, line)
		fmt.Fprintln(term, prefix+terminalSafe(line))
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		readLines(stdout, func(line string) {
			emit("[guest] ", os.Stdout, line)
			col.observe(line)
		})
	}()
	go func() {
		defer wg.Done()
		readLines(stderr, func(line string) { emit("[qemu] ", os.Stderr, line) })
	}()
	wg.Wait()
	err = cmd.Wait()

	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return qemuStatus{exitCode: 0}, nil
	case ctx.Err() != nil:
		return qemuStatus{timedOut: true, exitCode: -1}, nil
	case errors.As(err, &exitErr):
		code := exitErr.ExitCode()
		return qemuStatus{exitCode: code, timedOut: code == timeoutStatus || code == timeoutKillStatus}, nil
	default:
		return qemuStatus{}, fmt.Errorf("waiting for QEMU: %w", err)
	}
}

// readLines calls fn for each line of r, without line endings (the serial
// console sends CRLF). Lines longer than maxLineBytes are cut.
func readLines(r io.Reader, fn func(string)) {
	br := bufio.NewReaderSize(r, maxLineBytes)
	for {
		line, isPrefix, err := br.ReadLine()
		if len(line) > 0 || (err == nil && !isPrefix) {
			s := strings.TrimRight(string(line), "\r")
			if isPrefix {
				s += " [line cut at " + strconv.Itoa(maxLineBytes) + " bytes]"
				for isPrefix && err == nil { // drop the rest of the line
					_, isPrefix, err = br.ReadLine()
				}
			}
			fn(s)
		}
		if err != nil {
			return
		}
	}
}

// escapeSeq matches the terminal control sequences SeaBIOS and the kernel
// send to the serial console (clear screen, reset, line wrap).
var escapeSeq = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_]|c)`)

// terminalSafe strips control sequences and characters from a console line
// before it is shown, so a guest cannot clear or garble the CI log. The
// serial log file keeps the raw bytes.
func terminalSafe(line string) string {
	line = escapeSeq.ReplaceAllString(line, "")
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, line)
}
