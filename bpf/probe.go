package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// probeSymbol is the kernel function the fentry and kprobe probes try. It
// is one the richer tiers instrument, so "available" means what they need.
const probeSymbol = "tcp_sendmsg"

// probeTiers loads and attaches a do-nothing program for each tier beyond
// the base one and reports what happened. Kernels in lockdown refuse fentry
// (EPERM) and kernels without CONFIG_KPROBES have no kprobe PMU; both are
// normal, not errors.
func probeTiers() []TierStatus {
	return []TierStatus{
		{Tier: TierBase, Available: true},
		probeFentry(),
		probeKprobe(),
	}
}

func returnZero() asm.Instructions {
	return asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
}

func probeFentry() TierStatus {
	st := TierStatus{Tier: TierFentry}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "weir_probe_fent",
		Type:         ebpf.Tracing,
		AttachType:   ebpf.AttachTraceFEntry,
		AttachTo:     probeSymbol,
		Instructions: returnZero(),
		License:      "GPL",
	})
	if err != nil {
		st.Reason = probeReason("load fentry/"+probeSymbol, err)
		return st
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFEntry})
	if err != nil {
		st.Reason = probeReason("attach fentry/"+probeSymbol, err)
		return st
	}
	l.Close()
	st.Available = true
	return st
}

func probeKprobe() TierStatus {
	st := TierStatus{Tier: TierKprobe}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "weir_probe_kp",
		Type:         ebpf.Kprobe,
		Instructions: returnZero(),
		License:      "GPL",
	})
	if err != nil {
		st.Reason = probeReason("load kprobe program", err)
		return st
	}
	defer prog.Close()
	l, err := link.Kprobe(probeSymbol, prog, nil)
	if err != nil {
		st.Reason = probeReason("attach kprobe/"+probeSymbol, err)
		return st
	}
	l.Close()
	st.Available = true
	return st
}

// probeReason is one line for CLI tables: verifier logs are long, and the
// errno is what tells lockdown (EPERM) from a missing feature (ENOENT).
func probeReason(what string, err error) string {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Sprintf("%s: rejected by the verifier: %v", what, ve.Cause)
	}
	if errors.Is(err, unix.EPERM) {
		// cilium/ebpf suggests MEMLOCK here; with the memlock limit
		// removed, EPERM means the kernel refused (e.g. lockdown).
		return fmt.Sprintf("%s: operation not permitted (refused by the kernel, e.g. lockdown)", what)
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return fmt.Sprintf("%s: %v (%v)", what, errno, err)
	}
	return fmt.Sprintf("%s: %v", what, err)
}
