package bench

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

func TestStageOfChargesTheLeafMostWeirFrameAndGCWherever(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stack []string // leaf first
		want  Stage
	}{
		{"parser under the ring reader", []string{"runtime.memmove", "github.com/weirnet/weir/daemon/protocol/http1.(*Parser).Data",
			"github.com/weirnet/weir/daemon/monitor.(*connState).data", "github.com/weirnet/weir/daemon/capture.(*Table).Data",
			"github.com/weirnet/weir/bpf.(*decoder).decode", "github.com/weirnet/weir/bpf.(*Collector).Run"}, StagePipeline},
		{"exporter called by the pipeline", []string{"github.com/weirnet/weir/daemon/export/skywalking.appendHTTPLog",
			"github.com/weirnet/weir/daemon/export/skywalking.(*Exporter).Exchange", "github.com/weirnet/weir/daemon/monitor.(*connState).complete",
			"github.com/weirnet/weir/bpf.(*decoder).decode"}, StageExport},
		{"gRPC's writer goroutine", []string{"internal/runtime/syscall/linux.Syscall6", "syscall.Write", "internal/poll.(*FD).Write", "net.(*conn).Write",
			"google.golang.org/grpc/internal/transport.(*bufWriter).Flush", "google.golang.org/grpc/internal/transport.(*loopyWriter).run"}, StageExport},
		{"aggregation", []string{"github.com/weirnet/weir/daemon/metrics.(*Aggregator).Exchange", "github.com/weirnet/weir/daemon/monitor.(*pipeline).complete"}, StageAggregation},
		{"ring read", []string{"internal/runtime/syscall/linux.Syscall6", "github.com/cilium/ebpf/internal/epoll.(*Poller).Wait",
			"github.com/cilium/ebpf/ringbuf.(*Reader).ReadInto", "github.com/weirnet/weir/bpf.(*Collector).Run"}, StageRing},
		{"an allocation's GC assist in the parser", []string{"runtime.scanobject", "runtime.gcDrainN", "runtime.gcAssistAlloc",
			"runtime.mallocgc", "github.com/weirnet/weir/daemon/protocol/http1.(*Parser).Data"}, StageGC},
		{"background marking", []string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, StageGC},
		{"scheduler", []string{"runtime.futex", "runtime.futexsleep", "runtime.findRunnable", "runtime.schedule", "runtime.park_m", "runtime.mcall"}, StageRuntime},
		{"a /metrics scrape", []string{"github.com/prometheus/client_golang/prometheus.(*Registry).Gather", "net/http.(*conn).serve"}, StageOther},
	} {
		if got := StageOf(tc.stack); got != tc.want {
			t.Errorf("%s: StageOf = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSplitProfileSumsCPUByStage builds a CPU profile the way the Go
// runtime writes one (an inlined frame listed before the function it was
// inlined into) and reads it back through its encoding.
func TestSplitProfileSumsCPUByStage(t *testing.T) {
	fn := map[string]*profile.Function{}
	var funcs []*profile.Function
	f := func(name string) *profile.Function {
		if fn[name] == nil {
			fn[name] = &profile.Function{ID: uint64(len(fn) + 1), Name: name}
			funcs = append(funcs, fn[name])
		}
		return fn[name]
	}
	var locs []*profile.Location
	loc := func(names ...string) *profile.Location {
		l := &profile.Location{ID: uint64(len(locs) + 1)}
		for _, n := range names {
			l.Line = append(l.Line, profile.Line{Function: f(n)})
		}
		locs = append(locs, l)
		return l
	}
	parse := loc("github.com/weirnet/weir/daemon/protocol/http1.(*fields).scanHead", "github.com/weirnet/weir/daemon/protocol/http1.(*Parser).header")
	decode := loc("github.com/weirnet/weir/bpf.(*decoder).decode")
	sendMsg := loc("google.golang.org/grpc.(*clientStream).SendMsg")
	mark := loc("runtime.gcBgMarkWorker")
	ms := int64(time.Millisecond)
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		PeriodType: &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:     10 * ms,
		Sample: []*profile.Sample{
			{Location: []*profile.Location{parse, decode}, Value: []int64{6, 60 * ms}},
			{Location: []*profile.Location{decode}, Value: []int64{1, 10 * ms}},
			{Location: []*profile.Location{sendMsg}, Value: []int64{2, 20 * ms}},
			{Location: []*profile.Location{mark}, Value: []int64{1, 10 * ms}},
		},
		Location: locs,
		Function: funcs,
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	read, err := profile.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	s, err := SplitProfile(read)
	if err != nil {
		t.Fatal(err)
	}
	want := map[Stage]int64{StagePipeline: 60 * ms, StageRing: 10 * ms, StageExport: 20 * ms, StageGC: 10 * ms}
	for st := range numStages {
		if s.CPU[st] != want[st] {
			t.Errorf("%v: %d ns, want %d", st, s.CPU[st], want[st])
		}
	}
	if got := s.Share(StagePipeline); !near(got, 0.6) {
		t.Errorf("pipeline share = %.3f, want 0.600", got)
	}

	p.SampleType = p.SampleType[:1]
	for _, sm := range p.Sample {
		sm.Value = sm.Value[:1]
	}
	if _, err := SplitProfile(p); err == nil || !strings.Contains(err.Error(), "cpu/nanoseconds") {
		t.Errorf("a profile without CPU time: err = %v, want one naming the missing cpu/nanoseconds sample type", err)
	}
}

func TestCostSectionSplitsTheDaemonsCPUByStage(t *testing.T) {
	var split ProfileSplit
	split.CPU[StagePipeline] = 50
	split.CPU[StageExport] = 25
	split.CPU[StageGC] = 25
	split.ProcessCPU = 125
	r := &Report{CPUs: 2, Duration: 10 * time.Second, Costs: []Cost{
		{Scenario: "HTTP/1.1", BaseCPU: 10 * time.Microsecond, WeirCPU: 30 * time.Microsecond, Daemon: 8 * time.Microsecond, Stages: &split},
		{Scenario: "HTTP/2", BaseCPU: 10 * time.Microsecond, WeirCPU: 30 * time.Microsecond, Daemon: 6 * time.Microsecond, StagesErr: "CPU profile: 404 Not Found"},
	}}
	r.Scenarios = []*Scenario{{Weir: []WeirRun{{Capturer: true}}}}
	var b strings.Builder
	r.costMarkdown(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) })
	md := b.String()
	mdHas(t, md, md,
		"| scenario | weir-daemon | ring read + decode | reassembly + parsing | aggregation | SkyWalking export | GC | Go scheduler | other | samples / daemon CPU while profiled |",
		"| HTTP/1.1 | 8.00 µs | 0.00 µs (0%) | 4.00 µs (50%) | 0.00 µs (0%) | 2.00 µs (25%) | 2.00 µs (25%) | 0.00 µs (0%) | 0.00 µs (0%) | 0.00 of 0.00 CPU-s (80%) |",
		"| HTTP/2 | 6.00 µs | no profile: CPU profile: 404 Not Found |",
	)
}
