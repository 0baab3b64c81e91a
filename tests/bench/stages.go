package bench

import (
	"fmt"
	"strings"

	"github.com/google/pprof/profile"
)

// Stage is a part of weir-daemon's work per captured request, as a CPU
// profile of the real daemon splits it (#16 asks for the split by ring,
// pipeline, aggregation, export and GC).
type Stage int

const (
	StageRing        Stage = iota // reading the eBPF ring buffer and decoding its records
	StagePipeline                 // reassembly, protocol parsing, matching operations to records
	StageAggregation              // per-service/endpoint metrics (daemon/metrics)
	StageExport                   // SkyWalking encoding, queueing and gRPC
	StageGC                       // the garbage collector (background marking, assists, sweeping)
	StageRuntime                  // Go's scheduler, timers and netpoller with no Weir frame on the stack
	StageOther                    // anything else: the API and /metrics the bench scrapes, enrollment, logging
	numStages
)

// String names the stage as the report's column does.
func (s Stage) String() string {
	switch s {
	case StageRing:
		return "ring read + decode"
	case StagePipeline:
		return "reassembly + parsing"
	case StageAggregation:
		return "aggregation"
	case StageExport:
		return "SkyWalking export"
	case StageGC:
		return "GC"
	case StageRuntime:
		return "Go scheduler"
	case StageOther:
		return "other"
	}
	return fmt.Sprintf("Stage(%d)", int(s))
}

// stagePrefixes map a function's package path to its stage. A stack is
// charged to the stage of its leaf-most frame that matches one: a parser
// called by the pipeline is pipeline work, the exporter called by the
// pipeline is export work, and an allocation is charged to whoever
// allocated.
var stagePrefixes = []struct {
	prefix string
	stage  Stage
}{
	{"github.com/weirnet/weir/daemon/export/", StageExport},
	{"google.golang.org/grpc", StageExport},
	{"golang.org/x/net/http2", StageExport},
	{"google.golang.org/protobuf", StageExport},
	{"github.com/weirnet/weir/daemon/metrics", StageAggregation},
	{"github.com/weirnet/weir/daemon/capture", StagePipeline},
	{"github.com/weirnet/weir/daemon/monitor", StagePipeline},
	{"github.com/weirnet/weir/daemon/protocol", StagePipeline},
	{"github.com/weirnet/weir/daemon/flow", StagePipeline},
	{"github.com/weirnet/weir/bpf", StageRing},
	{"github.com/cilium/ebpf/ringbuf", StageRing},
}

// gcFunctions are the garbage collector's own entry points. A stack with
// one of them is GC work wherever it runs: an allocation's assist is the
// collector's cost, paid by whoever allocated at the time.
var gcFunctions = map[string]bool{
	"runtime.gcBgMarkWorker": true,
	"runtime.gcAssistAlloc":  true,
	"runtime.bgsweep":        true,
	"runtime.bgscavenge":     true,
	"runtime.gcStart":        true,
	"runtime.GC":             true,
}

// runtimePrefixes are the standard library's parts a goroutine runs in
// when it only waits: a stack of these alone is the Go runtime's own work.
var runtimePrefixes = []string{"runtime.", "internal/", "syscall.", "time.", "sync."}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// StageOf returns the stage of a stack given as function names, leaf
// first.
func StageOf(funcs []string) Stage {
	for _, f := range funcs {
		if gcFunctions[f] {
			return StageGC
		}
	}
	runtimeOnly := true
	for _, f := range funcs {
		for _, p := range stagePrefixes {
			if strings.HasPrefix(f, p.prefix) {
				return p.stage
			}
		}
		if !hasAnyPrefix(f, runtimePrefixes) {
			runtimeOnly = false
		}
	}
	if runtimeOnly {
		return StageRuntime
	}
	return StageOther
}

// ProfileSplit is a CPU profile's samples summed by Stage.
type ProfileSplit struct {
	// CPU is each stage's sampled CPU time, in nanoseconds.
	CPU [numStages]int64
	// ProcessCPU is the process's CPU time (utime+stime) while it was
	// profiled, in nanoseconds; 0 if unknown.
	ProcessCPU int64
}

// Coverage is how much of the process's CPU time the samples account
// for (Go's profiler misses some: a signal that lands while the thread
// cannot take it is dropped), 0 if unknown.
func (s ProfileSplit) Coverage() float64 {
	if s.ProcessCPU == 0 {
		return 0
	}
	return float64(s.Total()) / float64(s.ProcessCPU)
}

// Total is the profile's sampled CPU time, in nanoseconds.
func (s ProfileSplit) Total() int64 {
	var t int64
	for _, v := range s.CPU {
		t += v
	}
	return t
}

// Share is stage's part of the total, 0 for an empty profile.
func (s ProfileSplit) Share(stage Stage) float64 {
	t := s.Total()
	if t == 0 {
		return 0
	}
	return float64(s.CPU[stage]) / float64(t)
}

// SplitProfile sums a Go CPU profile's samples by stage.
func SplitProfile(p *profile.Profile) (ProfileSplit, error) {
	var s ProfileSplit
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" && st.Unit == "nanoseconds" {
			idx = i
		}
	}
	if idx < 0 {
		return s, fmt.Errorf("profile has no cpu/nanoseconds sample type (a CPU profile was expected, got %d sample types)", len(p.SampleType))
	}
	var funcs []string
	for _, sm := range p.Sample {
		funcs = funcs[:0]
		for _, loc := range sm.Location {
			// Lines are innermost first: inlined functions before
			// the function they were inlined into.
			for _, ln := range loc.Line {
				if ln.Function != nil {
					funcs = append(funcs, ln.Function.Name)
				}
			}
		}
		s.CPU[StageOf(funcs)] += sm.Value[idx]
	}
	return s, nil
}
