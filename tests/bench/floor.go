package bench

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/weirnet/weir/bpf/floor"
)

// TargetBPFPerRequest is issue #15's bound on eBPF run time per captured
// request, as a share of the same run's baseline CPU per request.
const TargetBPFPerRequest = 0.15

// FloorRun is one round of the floor measurement (part "floor"): a load
// without anything attached (the baseline CPU per request), then the same
// load with weir-daemon capturing both pods and the capture floor
// (package bpf/floor) attached beside it with both pods' namespaces in its
// gate, kernel.bpf_stats on. Both kinds of program run on the same socket
// ops of the same run, so their run times compare directly.
type FloorRun struct {
	BaseCPU time.Duration // busy CPU per request, nothing attached
	// Weir is every weir-daemon program's run time per request; WeirSock
	// that of its two socket ops (on_sock_send, on_sock_recv).
	Weir, WeirSock time.Duration
	WeirSockNs     float64 // ns per run of the socket ops
	// WeirRuns is how many times per request any of Weir's programs ran
	// (socket ops, per-packet hooks, TCX): times EmptyPacketNs, what
	// dispatch and bpf_stats' own accounting alone cost it.
	WeirRuns float64
	// Floor is floor_send + floor_recv per request, FloorRuns their runs
	// per request, FloorNs ns per run.
	Floor     time.Duration
	FloorRuns float64
	FloorNs   float64
	// EmptySockNs and EmptyPacketNs are ns per run of the empty programs
	// on the socket hooks and on net_dev_queue/netif_receive_skb.
	EmptySockNs, EmptyPacketNs float64
	// Records is what the floor's reader drained, Lost what the ring had
	// no room for (must be 0: a failed reservation is cheaper than a copy).
	Records, Lost uint64
	Requests      float64
}

// FloorResult is the floor measurement of one load scenario.
type FloorResult struct {
	Scenario string
	Runs     []FloorRun
	Err      string
}

// HookSetFloor is the least a capture with Weir's hooks could be charged
// per request: the capture floor plus, for every other run of Weir's
// programs, what an empty program costs per run.
func (r FloorRun) HookSetFloor() time.Duration {
	extra := max(r.WeirRuns-r.FloorRuns, 0) * r.EmptyPacketNs
	return r.Floor + time.Duration(extra)
}

// floorSplit sorts each program's delta of bpf_stats between two snapshots
// into a FloorRun: the floor's programs by role, the rest as Weir's.
func floorSplit(before, after map[ebpf.ProgramID]progRun, roles map[ebpf.ProgramID]floor.Role, reqs float64) FloorRun {
	var r FloorRun
	var weir, weirSock, fl time.Duration
	var weirRuns, sockRuns, flRuns, esRuns, epRuns uint64
	var esTime, epTime time.Duration
	for id, a := range after {
		b := before[id]
		dt, runs := a.runtime-b.runtime, a.runs-b.runs
		if runs == 0 {
			continue
		}
		role, isFloor := roles[id]
		switch {
		case !isFloor:
			weir += dt
			weirRuns += runs
			if a.name == "on_sock_send" || a.name == "on_sock_recv" {
				weirSock += dt
				sockRuns += runs
			}
		case role == floor.Capture:
			fl += dt
			flRuns += runs
		case role == floor.EmptySock:
			esTime += dt
			esRuns += runs
		case role == floor.EmptyPacket:
			epTime += dt
			epRuns += runs
		}
	}
	per := func(d time.Duration) time.Duration { return time.Duration(float64(d) / reqs) }
	perRun := func(d time.Duration, n uint64) float64 { return ratio(float64(d), float64(n)) }
	r.Weir, r.WeirSock, r.Floor = per(weir), per(weirSock), per(fl)
	r.WeirSockNs, r.FloorNs = perRun(weirSock, sockRuns), perRun(fl, flRuns)
	r.FloorRuns, r.WeirRuns = float64(flRuns)/reqs, float64(weirRuns)/reqs
	r.EmptySockNs, r.EmptyPacketNs = perRun(esTime, esRuns), perRun(epTime, epRuns)
	r.Requests = reqs
	return r
}

// floorMarkdown renders the floor measurements (see FloorRun).
func (r *Report) floorMarkdown(p func(format string, a ...any)) {
	if len(r.Floor) == 0 {
		return
	}
	us := func(v float64) string { return fmt.Sprintf("%.2f µs", v/1e3) }
	x := func(v float64) string { return fmt.Sprintf("%.3f ×", v) }
	ns := func(v float64) string { return fmt.Sprintf("%.0f ns", v) }
	p("\n## The capture floor: what any payload capture at the socket costs here\n\n")
	p("Issue #15 asks for eBPF run time per captured request ≤ %.2f× of the baseline CPU per request. ", TargetBPFPerRequest)
	p("Per round: a load run with nothing attached (baseline CPU per request, `/proc/stat`), then the same load with weir-daemon capturing both pods ")
	p("and, in the same run, the *capture floor* (`bpf/c/floor.bpf.c`) attached beside it with both pods' namespaces in its gate, `kernel.bpf_stats` on: ")
	p("on `tp_btf/sock_{send,recv}_length` it does only what any payload capture must (exact netns gate, user buffer from the syscall's registers, ")
	p("payload read with `bpf_probe_read_user` straight into a ring record reserved in place, submit), a reader draining the ring. ")
	p("Empty programs on the same hooks and on `net_dev_queue`/`netif_receive_skb` give the dispatch floor: what bpf_stats charges a run that does nothing ")
	p("(its own two clock reads). Medians over %d rounds of %s, ranges in brackets; every ratio is to the same round's baseline. ", len(r.Floor[0].Runs), r.Duration)
	p("The baseline is the whole machine's busy time per request: on a machine shared with other work it is inflated, and every ratio to it ")
	p("deflated (check the load averages above); Weir ÷ floor per run, below, does not depend on it.\n\n")
	p("| scenario | baseline CPU per request | Weir's eBPF per request | ratio | of which socket ops | floor per request | floor ratio | floor + dispatch of Weir's other runs, ratio | target | floor within target? | floor for Weir's hooks within target? |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range r.Floor {
		if f.Err != "" {
			p("| %s | failed: %s | — | — | — | — | — | — | ≤ %.2f | — | — |\n", f.Scenario, oneLine(f.Err), TargetBPFPerRequest)
			continue
		}
		med := func(g func(FloorRun) float64) (float64, []float64) {
			all := collect(f.Runs, g)
			return Median(all), all
		}
		base, baseAll := med(func(r FloorRun) float64 { return float64(r.BaseCPU) })
		weir, weirAll := med(func(r FloorRun) float64 { return float64(r.Weir) })
		wr, wrAll := med(func(r FloorRun) float64 { return ratio(float64(r.Weir), float64(r.BaseCPU)) })
		sock, sockAll := med(func(r FloorRun) float64 { return float64(r.WeirSock) })
		fl, flAll := med(func(r FloorRun) float64 { return float64(r.Floor) })
		fr, frAll := med(func(r FloorRun) float64 { return ratio(float64(r.Floor), float64(r.BaseCPU)) })
		hr, hrAll := med(func(r FloorRun) float64 { return ratio(float64(r.HookSetFloor()), float64(r.BaseCPU)) })
		p("| %s | %s | %s | %s | %s | %s | %s | %s | ≤ %.2f | %s | %s |\n", f.Scenario, spread(base, baseAll, us), spread(weir, weirAll, us),
			spread(wr, wrAll, x), spread(sock, sockAll, us), spread(fl, flAll, us), spread(fr, frAll, x), spread(hr, hrAll, x),
			TargetBPFPerRequest, met(fr <= TargetBPFPerRequest), met(hr <= TargetBPFPerRequest))
	}
	p("\n| scenario | Weir socket op, ns per run | floor socket op, ns per run | Weir ÷ floor per run | floor runs per request | empty program on a socket hook | empty program on a packet hook | Weir's program runs per request | their dispatch floor (runs × empty) | floor records drained / lost |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, f := range r.Floor {
		if f.Err != "" {
			continue
		}
		med := func(g func(FloorRun) float64) string {
			all := collect(f.Runs, g)
			return spread(Median(all), all, ns)
		}
		var recs, lost uint64
		for _, run := range f.Runs {
			recs += run.Records
			lost += run.Lost
		}
		perRun := collect(f.Runs, func(r FloorRun) float64 { return ratio(r.WeirSockNs, r.FloorNs) })
		dispatch := collect(f.Runs, func(r FloorRun) float64 { return r.WeirRuns * r.EmptyPacketNs })
		p("| %s | %s | %s | %s | %.2f | %s | %s | %.1f | %s | %d / %d |\n", f.Scenario, med(func(r FloorRun) float64 { return r.WeirSockNs }),
			med(func(r FloorRun) float64 { return r.FloorNs }), spread(Median(perRun), perRun, x),
			Median(collect(f.Runs, func(r FloorRun) float64 { return r.FloorRuns })),
			med(func(r FloorRun) float64 { return r.EmptySockNs }), med(func(r FloorRun) float64 { return r.EmptyPacketNs }),
			Median(collect(f.Runs, func(r FloorRun) float64 { return r.WeirRuns })), spread(Median(dispatch), dispatch, us), recs, lost)
	}
	p("\nWeir's eBPF per request less the floor's is what Weir's own work costs: connection state, per-operation kernel metrics (op windows, ")
	p("the per-packet hooks), the protocol walk. A floor ratio above the target means the target is out of reach for any capture of these ")
	p("operations on this machine, whatever it leaves out. The dispatch floor is what Weir's program runs would cost if each returned at once ")
	p("(dispatch plus bpf_stats' two clock reads per run): with the capture floor, the least a design with Weir's hooks can be charged here. ")
	p("Weir ÷ floor per run compares programs that ran on the same operations of the same run, so it moves far less with the machine's load than ")
	p("either figure alone: it is the figure to compare builds by.\n")
}
