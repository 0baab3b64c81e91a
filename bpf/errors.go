package bpf

import (
	"errors"
	"fmt"
)

// Errors Load returns, distinct so the daemon can tell the operator exactly
// what the node lacks (and exit 1) instead of printing a verifier dump.
// Test with errors.Is; a missing hook is also an *HookError naming it.
var (
	// ErrBTFMissing: the kernel exposes no BTF (/sys/kernel/btf/vmlinux),
	// which CO-RE relocations and tp_btf programs need.
	ErrBTFMissing = errors.New("kernel BTF not available")
	// ErrPermission: the process may not load or attach eBPF programs
	// (needs root, or CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN).
	ErrPermission = errors.New("not permitted to load eBPF programs")
	// ErrHookUnavailable: a tracepoint or other attach point the programs
	// need does not exist on this kernel.
	ErrHookUnavailable = errors.New("eBPF hook unavailable on this kernel")
	// ErrClosed: the Collector was closed.
	ErrClosed = errors.New("collector closed")
)

// HookError names the hook that could not be used and why.
type HookError struct {
	Hook string // e.g. "tracepoint/syscalls/sys_enter_read"
	Err  error
}

func (e *HookError) Error() string {
	return fmt.Sprintf("hook %s unavailable: %v", e.Hook, e.Err)
}

func (e *HookError) Unwrap() error { return e.Err }

// Is makes every HookError match ErrHookUnavailable.
func (e *HookError) Is(target error) bool { return target == ErrHookUnavailable }
