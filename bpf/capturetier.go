package bpf

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// CaptureTier is where payload and connection events come from. It is
// independent of Tier (the richer per-function timing): the capture tier
// decides which hooks every socket operation of the node passes through.
type CaptureTier int

const (
	// CaptureAuto picks CaptureSocket where the kernel has the socket
	// tracepoints (and the BTF to read their arguments), else
	// CaptureSyscall. The zero value.
	CaptureAuto CaptureTier = iota
	// CaptureSocket captures at tp_btf/sock_send_length and
	// sock_recv_length: only socket I/O runs a program, filtered first on
	// the socket's network namespace, with the payload read from the
	// syscall's user buffer (bpf_task_pt_regs). Connection lifecycle from
	// tp_btf/inet_sock_set_state, identity by socket cookie. No syscall
	// tracepoint is attached.
	CaptureSocket
	// CaptureSyscall captures at syscall enter/exit tracepoints, the
	// design that runs on kernels without the socket tracepoints (6.1):
	// every task of the node takes the slow syscall path, and every hooked
	// syscall of every process runs a program.
	CaptureSyscall
)

func (t CaptureTier) String() string {
	switch t {
	case CaptureAuto:
		return "auto"
	case CaptureSocket:
		return "socket"
	case CaptureSyscall:
		return "syscall"
	default:
		return fmt.Sprintf("capture(%d)", int(t))
	}
}

// ParseCaptureTier reads a tier name as String writes it.
func ParseCaptureTier(s string) (CaptureTier, error) {
	for _, t := range []CaptureTier{CaptureAuto, CaptureSocket, CaptureSyscall} {
		if s == t.String() {
			return t, nil
		}
	}
	return CaptureAuto, fmt.Errorf("capture tier %q: want auto, socket or syscall", s)
}

// socketTierHooks are the hooks only the socket tier attaches. The value
// says whether the tier needs the hook: without tcp_sendmsg_locked the tier
// still runs, but its sends have no op window for the per-packet hooks, so
// their packets and L2 times are reported unavailable -- unless the richer
// tier runs, which opens send windows at tcp_sendmsg (Linux 6.12 is such a
// kernel: socket tracepoints, no tcp_sendmsg_locked).
var socketTierHooks = map[string]bool{
	"tp_btf/sock_send_length":   true,
	"tp_btf/sock_recv_length":   true,
	"tp_btf/tcp_sendmsg_locked": false,
}

// tierOf says which capture tier hook h belongs to; CaptureAuto means both.
func (h hook) captureTier() CaptureTier {
	switch {
	case h.kind == kindTPBTF && hasKey(socketTierHooks, h.name):
		return CaptureSocket
	case h.kind == kindTracepoint && h.group == "syscalls":
		return CaptureSyscall
	}
	return CaptureAuto
}

// chooseCaptureTier picks the capture tier: the socket tier where its hooks
// exist unless the syscall tier is asked for. It returns the tier and one
// line saying why, for Features.
func chooseCaptureTier(want CaptureTier, hooks []hook, kernel *btf.Spec) (CaptureTier, string, error) {
	var missing []string
	for _, h := range hooks {
		if h.captureTier() != CaptureSocket || !socketTierHooks[h.name] {
			continue
		}
		if err := h.check("", kernel); err != nil {
			missing = append(missing, err.Error())
		}
	}
	switch want {
	case CaptureSyscall:
		return CaptureSyscall, "syscall tier asked for (bpf.captureTier=syscall)", nil
	case CaptureSocket:
		if len(missing) > 0 {
			return 0, "", &HookError{Hook: "socket tier", Err: fmt.Errorf("asked for, but %s", strings.Join(missing, "; "))}
		}
		return CaptureSocket, "socket tier asked for (bpf.captureTier=socket)", nil
	}
	if len(missing) > 0 {
		return CaptureSyscall, "socket tracepoints missing: " + strings.Join(missing, "; "), nil
	}
	return CaptureSocket, "kernel has tp_btf sock_send_length and sock_recv_length", nil
}

// pruneCaptureTier removes from spec and hooks the programs of the capture
// tier that does not run, so they are neither loaded (a tp_btf program for
// a tracepoint the kernel lacks would not load) nor attached, and the
// running tier's optional hooks the kernel lacks; it returns the hooks that
// run and a status for each one left out.
func pruneCaptureTier(spec *ebpf.CollectionSpec, hooks []hook, tier CaptureTier, kernel *btf.Spec) ([]hook, []HookStatus) {
	var keep []hook
	var left []HookStatus
	for _, h := range hooks {
		ht := h.captureTier()
		if ht != CaptureAuto && ht != tier {
			delete(spec.Programs, h.program)
			left = append(left, HookStatus{Name: h.name, Tier: h.tier,
				Reason: fmt.Sprintf("%s tier only; the %s tier runs", ht, tier)})
			continue
		}
		if ht == CaptureSocket && !socketTierHooks[h.name] {
			if err := h.check("", kernel); err != nil {
				delete(spec.Programs, h.program)
				left = append(left, HookStatus{Name: h.name, Tier: h.tier, Reason: err.Error()})
				continue
			}
		}
		keep = append(keep, h)
	}
	return keep, left
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}
