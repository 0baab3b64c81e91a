package bench

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/bpf/floor"
	"github.com/weirnet/weir/tests/harness"
)

// measureFloor is one round of the floor measurement (see FloorRun): the
// load without anything attached, then with the daemon (d, stopped on
// entry and on return) and the floor programs gated on both pods.
func measureFloor(t *testing.T, d *harness.Daemon, pods []*harness.Pod, load func() (LoadResult, error)) (FloorRun, error) {
	t.Helper()
	reqs := func(l LoadResult) float64 { return float64(max(l.Requests+l.Errors, 1)) }
	busy0, err := ReadBusyCPU()
	if err != nil {
		return FloorRun{}, err
	}
	base, err := load()
	if err != nil {
		return FloorRun{}, fmt.Errorf("baseline: %w", err)
	}
	busy1, err := ReadBusyCPU()
	if err != nil {
		return FloorRun{}, err
	}
	baseCPU := time.Duration(float64(busy1-busy0) / reqs(base))

	foreign, err := ProgramIDs()
	if err != nil {
		return FloorRun{}, err
	}
	startDaemon(t, d)
	defer stopDaemon(t, d)
	var netns []uint64
	for _, p := range pods {
		netns = append(netns, p.NS.Inode)
	}
	fs, err := floor.Load(netns)
	if err != nil {
		return FloorRun{}, err
	}
	defer fs.Close()
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return FloorRun{}, fmt.Errorf("enable bpf_stats: %w", err)
	}
	defer stats.Close()
	runs0, err := programRuns(foreign)
	if err != nil {
		return FloorRun{}, err
	}
	w, err := load()
	if err != nil {
		return FloorRun{}, fmt.Errorf("with Weir and the floor: %w", err)
	}
	runs1, err := programRuns(foreign)
	if err != nil {
		return FloorRun{}, err
	}
	r := floorSplit(runs0, runs1, fs.Roles(), reqs(w))
	// Weir's programs one by one, for the log: where its extra goes.
	weirOnly := maps.Clone(runs1)
	maps.DeleteFunc(weirOnly, func(id ebpf.ProgramID, _ progRun) bool { _, ok := fs.Roles()[id]; return ok })
	_, top, _ := bpfDelta(runs0, weirOnly, reqs(w), 12)
	for _, p := range top {
		t.Logf("  weir %-16s %7.0f ns per run, %5.2f runs per request, %v per request", p.Name, p.NsPerRun, p.RunsPerReq, p.PerReq)
	}
	r.BaseCPU = baseCPU
	if r.Lost, err = fs.Lost(); err != nil {
		return FloorRun{}, err
	}
	// Give the reader one poll to take the last records.
	time.Sleep(20 * time.Millisecond)
	r.Records = fs.Records()
	if err := fs.Close(); err != nil {
		return FloorRun{}, err
	}
	if r.FloorRuns == 0 {
		return r, fmt.Errorf("the floor programs never ran: the pods' namespaces %v are not in its gate", netns)
	}
	return r, nil
}

// TestFloorSplitSortsProgramsByRole pins how the floor measurement reads
// bpf_stats: the floor's programs are told from Weir's by id, Weir's socket
// ops by name, and every figure is per request or per run.
func TestFloorSplitSortsProgramsByRole(t *testing.T) {
	before := map[ebpf.ProgramID]progRun{
		1:  {name: "on_sock_send", runtime: 1000, runs: 10},
		2:  {name: "on_sock_recv"},
		3:  {name: "on_dev_queue"},
		10: {name: "floor_send"},
	}
	after := map[ebpf.ProgramID]progRun{
		1:  {name: "on_sock_send", runtime: 1000 + 800*200, runs: 10 + 200},
		2:  {name: "on_sock_recv", runtime: 600 * 200, runs: 200},
		3:  {name: "on_dev_queue", runtime: 100 * 400, runs: 400},
		4:  {name: "on_idle", runtime: 0, runs: 0},
		10: {name: "floor_send", runtime: 300 * 200, runs: 200},
		11: {name: "floor_recv", runtime: 200 * 200, runs: 200},
		12: {name: "empty_send", runtime: 40 * 200, runs: 200},
		13: {name: "empty_dev_queue", runtime: 30 * 400, runs: 400},
	}
	roles := map[ebpf.ProgramID]floor.Role{10: floor.Capture, 11: floor.Capture, 12: floor.EmptySock, 13: floor.EmptyPacket}
	got := floorSplit(before, after, roles, 100)
	want := FloorRun{
		Weir: time.Duration((800*200 + 600*200 + 100*400) / 100), WeirRuns: 8,
		WeirSock: time.Duration((800*200 + 600*200) / 100), WeirSockNs: 700,
		Floor: time.Duration((300*200 + 200*200) / 100), FloorRuns: 4, FloorNs: 250,
		EmptySockNs: 40, EmptyPacketNs: 30, Requests: 100,
	}
	if got != want {
		t.Errorf("floorSplit:\n got %+v\nwant %+v", got, want)
	}
	// The floor for Weir's hooks: the capture floor plus the dispatch of
	// Weir's runs beyond the floor's (8 - 4 runs of 30 ns).
	if hs := got.HookSetFloor(); hs != got.Floor+120 {
		t.Errorf("HookSetFloor %v, want %v", hs, got.Floor+120)
	}
}

// TestFloorReportJudgesBothFloorsAgainstTheTarget pins the floor section:
// the capture floor and the floor for Weir's hooks are judged against the
// 0.15 target from ratios to the same round's baseline, whether or not
// the run had capture scenarios (part "floor" alone has none).
func TestFloorReportJudgesBothFloorsAgainstTheTarget(t *testing.T) {
	run := FloorRun{BaseCPU: 20 * time.Microsecond, Weir: 6 * time.Microsecond, WeirRuns: 31,
		Floor: 1500 * time.Nanosecond, FloorRuns: 4, FloorNs: 370, WeirSockNs: 740, EmptyPacketNs: 52, EmptySockNs: 52}
	r := &Report{Duration: 5 * time.Second, Floor: []FloorResult{{Scenario: "HTTP/1.1", Runs: []FloorRun{run}}}}
	md := r.Markdown()
	// 1.5/20 = 0.075 (within); (1.5 + 27 × 0.052)/20 = 0.145 (within).
	mdHas(t, md, md, "| HTTP/1.1 | 20.00 µs | 6.00 µs | 0.300 × | ", "| 0.075 × | 0.145 × | ≤ 0.15 | yes | yes |", "| 2.000 × |")
	run.EmptyPacketNs = 60 // (1.5 + 27 × 0.060)/20 = 0.156
	r.Floor[0].Runs[0] = run
	if md := r.Markdown(); !strings.Contains(md, "| 0.075 × | 0.156 × | ≤ 0.15 | yes | **no** |") {
		t.Errorf("hook-set floor over the target not judged so:\n%s", md)
	}
}
