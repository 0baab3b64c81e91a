package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

func TestBusyCPUCountsWorkButNotIdleIOWaitOrSteal(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	stat := "cpu  100 5 40 9000 7 3 2 50 0 0\ncpu0 50 2 20 4500 3 1 1 25 0 0\n"
	got, err := parseBusyCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 150 * time.Second / userHZ; got != want {
		t.Fatalf("busy = %v, want %v (user+nice+system+irq+softirq)", got, want)
	}
	for _, bad := range []string{"", "intr 1 2 3\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n"} {
		if _, err := parseBusyCPU([]byte(bad)); err == nil {
			t.Errorf("parseBusyCPU(%q) accepted malformed input", bad)
		}
	}
}

func TestBPFDeltaDividesRunTimeByRequestsAndRanksPrograms(t *testing.T) {
	before := map[ebpf.ProgramID]progRun{
		1: {name: "exit_write", runtime: 1000, runs: 10},
		2: {name: "enter_write", runtime: 500, runs: 10},
	}
	after := map[ebpf.ProgramID]progRun{
		1: {name: "exit_write", runtime: 1000 + 4000, runs: 10 + 10},
		2: {name: "enter_write", runtime: 500 + 2000, runs: 10 + 10},
		3: {name: "on_exec", runtime: 0, runs: 0},        // loaded, never ran
		4: {name: "on_tcp_probe", runtime: 600, runs: 6}, // loaded during the run
	}
	total, top, uprobes := bpfDelta(before, after, 100, 2)
	if uprobes != 0 {
		t.Fatalf("uprobe runs = %v per request, want 0 (no uprobe program)", uprobes)
	}
	if total != 66 { // (4000+2000+600) ns / 100 requests
		t.Fatalf("total = %v, want 66ns per request", total)
	}
	if len(top) != 2 || top[0].Name != "exit_write" || top[0].PerReq != 40 || top[0].NsPerRun != 400 || top[1].Name != "enter_write" {
		t.Fatalf("top = %+v, want exit_write (40ns/req, 400ns/run) then enter_write", top)
	}
}

func TestCostSectionStatesTheBoundAgainstTheTarget(t *testing.T) {
	r := &Report{CPUs: 2, Duration: 10 * time.Second, Costs: []Cost{{
		Scenario: "HTTP/1.1", BaseCPU: 10 * time.Microsecond, WeirCPU: 30 * time.Microsecond,
		BPF: 5 * time.Microsecond, Daemon: 8 * time.Microsecond, Receiver: 4 * time.Microsecond,
		Top: []ProgCost{{Name: "exit_writev", PerReq: 900 * time.Nanosecond, NsPerRun: 480}},
	}, {Scenario: "HTTP/2", Err: "wrk: exit 1\nmore"}}}
	r.Scenarios = []*Scenario{{Weir: []WeirRun{{Capturer: true}}}}
	var b strings.Builder
	r.costMarkdown(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) })
	md := b.String()
	mdHas(t, md, md,
		"| HTTP/1.1 | 10.00 µs | 30.00 µs | 5.00 µs | 8.00 µs | 4.00 µs | 3.00 µs | 0.667 | ≥ 0.95 | **no** |",
		"| HTTP/2 | — | failed: wrk: exit 1 more |",
		"| HTTP/1.1 | exit_writev | 0.90 µs | 480 | 0.00 |",
	)
}
