package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

const (
	vmlinuxBTF  = "/sys/kernel/btf/vmlinux"
	tracefsPath = "/sys/kernel/tracing"
	// tracefsMagic is TRACEFS_MAGIC from linux/magic.h.
	tracefsMagic = 0x74726163
)

// Capability numbers from linux/capability.h.
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// checkKernel fails with ErrBTFMissing or ErrPermission before anything is
// loaded, and returns the kernel's BTF for CO-RE.
func checkKernel() (*btf.Spec, error) {
	if _, err := os.Stat(vmlinuxBTF); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (needs a kernel built with CONFIG_DEBUG_INFO_BTF)", ErrBTFMissing, vmlinuxBTF, err)
	}
	if err := checkCapabilities(); err != nil {
		return nil, err
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("%w: parse %s: %v", ErrBTFMissing, vmlinuxBTF, err)
	}
	return spec, nil
}

// checkCapabilities reads the effective capability set of this process:
// loading needs CAP_BPF, attaching tracepoints CAP_PERFMON, and mounting
// tracefs CAP_SYS_ADMIN (which also stands in for the other two).
func checkCapabilities() error {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		hex, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return fmt.Errorf("parse CapEff %q: %w", hex, err)
		}
		has := func(c uint) bool { return eff&(1<<c) != 0 }
		if has(capSysAdmin) || (has(capBPF) && has(capPerfmon)) {
			return nil
		}
		return fmt.Errorf("%w: effective capabilities %#x lack CAP_SYS_ADMIN, or CAP_BPF and CAP_PERFMON (run as root)", ErrPermission, eff)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	return fmt.Errorf("read capabilities: no CapEff line in /proc/self/status")
}

// permissionError wraps err with ErrPermission when the kernel said EPERM,
// so that a refused load is not reported as a program bug. (The verifier
// rejects programs with EACCES: that is a program bug, not a permission.)
func permissionError(what string, err error) error {
	var ve *ebpf.VerifierError
	if errors.Is(err, unix.EPERM) && !errors.As(err, &ve) {
		return fmt.Errorf("%s: %w: %w", what, ErrPermission, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ensureTracefs returns where tracefs is mounted, mounting it at
// /sys/kernel/tracing when it is not: classic tracepoints are attached by
// reading their ids from it. The mount is left in place on Close because
// other tools may come to rely on it.
func ensureTracefs(log *slog.Logger) (string, error) {
	for _, p := range []string{tracefsPath, "/sys/kernel/debug/tracing"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == tracefsMagic {
			return p, nil
		}
	}
	if err := unix.Mount("tracefs", tracefsPath, "tracefs", 0, ""); err != nil {
		return "", fmt.Errorf("tracefs is not mounted and mounting it at %s failed: %w", tracefsPath, err)
	}
	log.Info("mounted tracefs", "path", tracefsPath)
	return tracefsPath, nil
}
