package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

// Cost is where one scenario's CPU goes, from a dedicated pair of load runs
// (without and with Weir) whose only job is accounting: the machine's busy
// time, the eBPF programs' run time (kernel.bpf_stats) and the daemon's
// CPU, each divided by the requests served. It answers how far the
// throughput ratio could rise if the daemon's user space cost nothing,
// which the saturation ratios alone cannot tell.
type Cost struct {
	Scenario string
	// BaseCPU and WeirCPU are all CPUs' busy time per request (from
	// /proc/stat) without and with Weir.
	BaseCPU, WeirCPU time.Duration
	// BPF is the run time of the daemon's eBPF programs per request, as
	// the kernel accounts it with bpf_stats on.
	BPF time.Duration
	// Daemon is weir-daemon's utime+stime per request.
	Daemon time.Duration
	// Receiver is the bench process's CPU per request: the in-process
	// OAP receiver, which would run off-node in a cluster.
	Receiver time.Duration
	// Top are the programs with the most run time, most first, then
	// every uprobe program that ran and is not among them.
	Top []ProgCost
	// UprobeRuns is how many times per request a uprobe program ran
	// (TLS capture): each run is a trap into the kernel, whose cost is
	// in Rest, not in BPF.
	UprobeRuns float64
	// Reported marks a scenario with no target (see Scenario.Reported).
	Reported bool
	Err      string
	// Stages splits Daemon by stage, from a CPU profile of the daemon
	// taken during the run (nil if none was taken); StagesErr says why
	// none was.
	Stages    *ProfileSplit
	StagesErr string
}

// Rest is the CPU per request Weir added that none of the other columns
// accounts for: syscall-tracepoint and uprobe dispatch (a uprobe's trap
// and single-step), the kernel's work for the ring buffer, cache effects.
// Negative (noise) is reported as is.
func (c Cost) Rest() time.Duration {
	return c.WeirCPU - c.BaseCPU - c.BPF - c.Daemon - c.Receiver
}

// Bound is the throughput ratio Weir could reach at saturation if nothing
// but its eBPF programs cost CPU: the baseline's CPU per request over the
// baseline's plus the programs'. It is an upper bound: the syscall
// tracepoints' dispatch, the daemon and the exporter only lower it.
func (c Cost) Bound() float64 {
	return ratio(float64(c.BaseCPU), float64(c.BaseCPU+c.BPF))
}

// ProgCost is one eBPF program's share of a Cost.
type ProgCost struct {
	Name       string
	PerReq     time.Duration // run time per request
	NsPerRun   float64
	RunsPerReq float64
	Uprobe     bool
}

// progRun is a program's cumulative stats at one moment.
type progRun struct {
	name    string
	runtime time.Duration
	runs    uint64
	// uprobe: a program of kprobe type, which on this kernel (no
	// kprobes under lockdown) Weir attaches only as a uprobe.
	uprobe bool
}

// ProgramIDs lists the eBPF programs loaded on the machine now, so that a
// later snapshot can leave out those that were there before the daemon.
func ProgramIDs() (map[ebpf.ProgramID]bool, error) {
	ids := map[ebpf.ProgramID]bool{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return ids, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list eBPF programs: %w", err)
		}
		ids[next] = true
		id = next
	}
}

// programRuns snapshots the stats of every program loaded now and not in
// exclude. Programs that go away between listing and opening are skipped.
func programRuns(exclude map[ebpf.ProgramID]bool) (map[ebpf.ProgramID]progRun, error) {
	ids, err := ProgramIDs()
	if err != nil {
		return nil, err
	}
	out := map[ebpf.ProgramID]progRun{}
	for id := range ids {
		if exclude[id] {
			continue
		}
		p, err := ebpf.NewProgramFromID(id)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open eBPF program %d: %w", id, err)
		}
		st, err := p.Stats()
		var name string
		var uprobe bool
		if info, ierr := p.Info(); ierr == nil {
			name, uprobe = info.Name, info.Type == ebpf.Kprobe
		}
		p.Close()
		if err != nil {
			return nil, fmt.Errorf("stats of eBPF program %d: %w", id, err)
		}
		out[id] = progRun{name: name, runtime: st.Runtime, runs: st.RunCount, uprobe: uprobe}
	}
	return out, nil
}

// bpfDelta is the run time programs accumulated between two snapshots per
// request, the top n of them by run time per request followed by every
// other uprobe program that ran (so TLS capture's share is always shown),
// and the uprobe programs' runs per request.
func bpfDelta(before, after map[ebpf.ProgramID]progRun, reqs float64, n int) (time.Duration, []ProgCost, float64) {
	var total time.Duration
	var uprobeRuns uint64
	var progs []ProgCost
	for id, a := range after {
		b := before[id] // zero for a program loaded during the run
		dt, runs := a.runtime-b.runtime, a.runs-b.runs
		if runs == 0 {
			continue
		}
		total += dt
		if a.uprobe {
			uprobeRuns += runs
		}
		progs = append(progs, ProgCost{Name: a.name, PerReq: time.Duration(float64(dt) / reqs), NsPerRun: float64(dt) / float64(runs),
			RunsPerReq: float64(runs) / reqs, Uprobe: a.uprobe})
	}
	slices.SortFunc(progs, func(x, y ProgCost) int {
		if x.PerReq != y.PerReq {
			return int(y.PerReq - x.PerReq)
		}
		return strings.Compare(x.Name, y.Name)
	})
	if len(progs) > n {
		progs = slices.Concat(progs[:n], slices.DeleteFunc(progs[n:], func(p ProgCost) bool { return !p.Uprobe }))
	}
	return time.Duration(float64(total) / reqs), progs, float64(uprobeRuns) / reqs
}

// userHZ is the unit of /proc/stat's CPU times on Linux (USER_HZ).
const userHZ = 100

// ReadBusyCPU is the machine's busy CPU time so far, all CPUs together.
func ReadBusyCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	return parseBusyCPU(b)
}

// parseBusyCPU reads the aggregate "cpu" line of /proc/stat: user, nice,
// system, irq and softirq are busy time (guest time is already in user);
// idle, iowait and steal (the hypervisor running someone else) are not.
func parseBusyCPU(stat []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("malformed /proc/stat: first line %q", line)
	}
	var busy uint64
	for i, s := range f[1:9] { // user nice system idle iowait irq softirq steal
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat field %d %q: %w", i+2, s, err)
		}
		if i == 3 || i == 4 || i == 7 {
			continue
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / userHZ, nil
}
