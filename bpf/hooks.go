package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// Tier is a level of kernel support, from what every kernel with BTF offers
// to what only some let a monitor use. Richer tiers add programs (per-packet
// kernel metrics); they never replace the base tier's capture.
type Tier int

const (
	// TierBase: syscall tracepoints and BTF tracepoints (tp_btf). Loads on
	// kernels in lockdown, without kprobes and without fentry.
	TierBase Tier = iota
	// TierFentry: fentry/fexit on kernel functions (BPF trampolines).
	TierFentry
	// TierKprobe: kprobes, for kernels with kprobes but no fentry.
	TierKprobe
)

func (t Tier) String() string {
	switch t {
	case TierBase:
		return "base"
	case TierFentry:
		return "fentry"
	case TierKprobe:
		return "kprobe"
	default:
		return fmt.Sprintf("tier(%d)", int(t))
	}
}

// hookKind says how a program attaches; it follows from its ELF section.
type hookKind int

const (
	kindTracepoint hookKind = iota // "tracepoint/<group>/<event>", needs tracefs
	kindTPBTF                      // "tp_btf/<event>", typed raw tracepoint
)

// hook is one attach point of one program. The table is derived from the
// programs' section names, so a program added in C is attached, probed and
// reported without a second list to keep in sync here.
type hook struct {
	name    string // the section name, which is also the hook's public name
	tier    Tier
	kind    hookKind
	group   string // tracepoint group; empty for tp_btf
	event   string
	program string // program name in the collection
}

// hooksOf builds the hook table of a collection spec, sorted by name.
func hooksOf(spec *ebpf.CollectionSpec) ([]hook, error) {
	var hooks []hook
	for name, p := range spec.Programs {
		if p.Type == ebpf.SchedCLS {
			continue // per-pod TC programs: attached by EnrollPod, not here
		}
		h := hook{name: p.SectionName, program: name}
		parts := strings.Split(p.SectionName, "/")
		switch {
		case parts[0] == "tracepoint" && len(parts) == 3:
			h.tier, h.kind, h.group, h.event = TierBase, kindTracepoint, parts[1], parts[2]
		case parts[0] == "tp_btf" && len(parts) == 2:
			h.tier, h.kind, h.event = TierBase, kindTPBTF, parts[1]
		default:
			return nil, fmt.Errorf("program %s: section %q is not a hook kind the loader knows", name, p.SectionName)
		}
		hooks = append(hooks, h)
	}
	sort.Slice(hooks, func(i, j int) bool { return hooks[i].name < hooks[j].name })
	return hooks, nil
}

// check reports why h cannot attach on this kernel, before anything is
// loaded, so the error names the hook rather than a verifier failure.
func (h hook) check(tracefs string, kernel *btf.Spec) error {
	switch h.kind {
	case kindTracepoint:
		id := filepath.Join(tracefs, "events", h.group, h.event, "id")
		if _, err := os.Stat(id); err != nil {
			return &HookError{Hook: h.name, Err: fmt.Errorf("tracepoint %s/%s not found in %s: %w", h.group, h.event, tracefs, err)}
		}
	case kindTPBTF:
		if _, err := kernel.AnyTypeByName("btf_trace_" + h.event); err != nil {
			return &HookError{Hook: h.name, Err: fmt.Errorf("raw tracepoint %s not in kernel BTF: %w", h.event, err)}
		}
	}
	return nil
}

// attach attaches prog at h.
func (h hook) attach(prog *ebpf.Program) (link.Link, error) {
	var (
		l   link.Link
		err error
	)
	switch h.kind {
	case kindTracepoint:
		l, err = link.Tracepoint(h.group, h.event, prog, nil)
	case kindTPBTF:
		l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	default:
		err = fmt.Errorf("unknown hook kind %d", h.kind)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, &HookError{Hook: h.name, Err: err}
		}
		return nil, fmt.Errorf("attach %s: %w", h.name, err)
	}
	return l, nil
}

// HookStatus says whether one hook is in use and, if not, why.
type HookStatus struct {
	Name     string
	Tier     Tier
	Attached bool
	Reason   string // why not attached; empty when attached
}

// TierStatus is the result of probing one tier at load.
type TierStatus struct {
	Tier      Tier
	Available bool
	Reason    string // what the probe ran into when not available
}

// Features describes what the loaded collector uses and what the kernel
// would allow, so the daemon can report which metrics exist on this node
// instead of silently reporting zeros.
type Features struct {
	// Capture is the capture tier that runs (never CaptureAuto), and
	// CaptureReason one line saying why it was chosen.
	Capture       CaptureTier
	CaptureReason string
	// Tier is the richest tier whose programs are attached.
	Tier Tier
	// TierError says why the richest available tier is not in use, when
	// loading or attaching it failed.
	TierError string
	// Tiers holds the probe result of every tier, in Tier order.
	Tiers []TierStatus
	// Hooks lists every hook of the loaded programs.
	Hooks []HookStatus
	// Metrics lists every event.Metric, in bit order, with whether this
	// node measures it and why not (or what bounds it).
	Metrics []MetricStatus
}
