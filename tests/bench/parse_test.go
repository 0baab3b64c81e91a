package bench

import (
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testdata/wrk-latency.txt and h2load*.txt are real outputs of Debian's wrk
// 4.1 and h2load 1.52 against nginx on loopback.

func TestParseWrkReadsRateCountAndPercentiles(t *testing.T) {
	r, err := ParseWrk(readTestdata(t, "wrk-latency.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := LoadResult{
		Requests: 14376, Duration: 1050 * time.Millisecond, Throughput: 13732.64,
		P50: 162 * time.Microsecond, P99: 22440 * time.Microsecond,
	}
	if r != want {
		t.Fatalf("ParseWrk = %+v, want %+v", r, want)
	}
}

func TestParseWrkCountsErrorsAsNotCompleted(t *testing.T) {
	out := strings.Replace(readTestdata(t, "wrk-latency.txt"), "Requests/sec:",
		"  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 5\nRequests/sec:", 1)
	r, err := ParseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 8 || r.Requests != 14376-8 {
		t.Fatalf("errors %d requests %d, want 8 and %d", r.Errors, r.Requests, 14376-8)
	}
}

func TestParseWrkRejectsOutputWithoutLatencyDistribution(t *testing.T) {
	out := readTestdata(t, "wrk-latency.txt")
	i := strings.Index(out, "  Latency Distribution")
	j := strings.Index(out, "  14376 requests")
	if _, err := ParseWrk(out[:i] + out[j:]); err == nil || !strings.Contains(err.Error(), "--latency") {
		t.Fatalf("err = %v, want one naming --latency", err)
	}
}

func TestParseH2loadReadsRateAndSuccesses(t *testing.T) {
	r, err := ParseH2load(readTestdata(t, "h2load.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 200 || r.Errors != 0 || r.Throughput != 9958.18 || r.Duration != 20080*time.Microsecond {
		t.Fatalf("ParseH2load = %+v", r)
	}
}

func TestParseH2loadCountsFailedErroredAndTimedOut(t *testing.T) {
	out := strings.Replace(readTestdata(t, "h2load.txt"),
		"200 succeeded, 0 failed, 0 errored, 0 timeout", "190 succeeded, 4 failed, 5 errored, 1 timeout", 1)
	r, err := ParseH2load(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 190 || r.Errors != 10 {
		t.Fatalf("requests %d errors %d, want 190 and 10", r.Requests, r.Errors)
	}
}

func TestParseH2loadLogTakesNearestRankPercentiles(t *testing.T) {
	// The log's third column is the request's duration in µs.
	var lines []string
	for i := 100; i >= 1; i-- { // unsorted on purpose
		lines = append(lines, "1795571017235761\t200\t"+strconv.Itoa(i))
	}
	p50, p99, err := ParseH2loadLog(strings.NewReader(strings.Join(lines, "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p50 != 50*time.Microsecond || p99 != 99*time.Microsecond {
		t.Fatalf("p50 %v p99 %v, want 50µs and 99µs", p50, p99)
	}
	f, err := os.Open("testdata/h2load-log.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p50, p99, err = ParseH2loadLog(f)
	if err != nil || p50 <= 0 || p99 < p50 {
		t.Fatalf("real log: p50 %v p99 %v err %v", p50, p99, err)
	}
}

func TestParseH2loadLogRejectsEmptyAndMalformed(t *testing.T) {
	if _, _, err := ParseH2loadLog(strings.NewReader("")); err == nil {
		t.Fatal("empty log accepted")
	}
	if _, _, err := ParseH2loadLog(strings.NewReader("1\t200\tfast\n")); err == nil || !strings.Contains(err.Error(), "fast") {
		t.Fatalf("err = %v, want one quoting the bad line", err)
	}
}

func TestParseStatCPUCountsFromTheLastParenthesis(t *testing.T) {
	// A command name with spaces and ')' must not shift the fields:
	// utime=250 stime=50 ticks → 3 s.
	stat := "42 (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 123 45"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if got != 3*time.Second {
		t.Fatalf("cpu = %v, want 3s", got)
	}
	if _, err := parseStatCPU([]byte("42 (x) S 1")); err == nil {
		t.Fatal("truncated stat accepted")
	}
}

func TestReadProcStatsOfThisProcess(t *testing.T) {
	s, err := ReadProcStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !s.Valid || s.RSS <= 0 || s.HWM < s.RSS {
		t.Fatalf("stats %+v: want RSS > 0 and VmHWM ≥ VmRSS", s)
	}
}

func TestParseMetricsSumsLabelSetsAndDiscoversLossCounters(t *testing.T) {
	text := `# HELP weir_bpf_events_lost_total Events the kernel could not queue.
# TYPE weir_bpf_events_lost_total counter
weir_bpf_events_lost_total{reason="ringbuf_full",cpu="0"} 3
weir_bpf_events_lost_total{reason="ringbuf_full",cpu="1"} 4
weir_capture_bytes_dropped_total{reason="a \"quoted\" } brace"} 1.5e1
weir_protocol_records_total{protocol="http1"} 100
weir_protocol_records_total{protocol="http2"} 50
weir_export_requests_errors_total 9
promhttp_metric_handler_requests_total{code="200"} 7
go_goroutines 12
`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m["weir_bpf_events_lost_total"] != 7 || m["weir_capture_bytes_dropped_total"] != 15 || m["weir_protocol_records_total"] != 150 {
		t.Fatalf("sums wrong: %v", m)
	}
	if got, want := m.LossNames(), []string{"weir_bpf_events_lost_total", "weir_capture_bytes_dropped_total"}; !slices.Equal(got, want) {
		t.Fatalf("LossNames = %v, want %v", got, want)
	}
	if got := m.RecordCounter(); got != "weir_protocol_records_total" {
		t.Fatalf("RecordCounter = %q, want weir_protocol_records_total", got)
	}
	if got := (Metrics{"weir_bpf_records_total": 9}).RecordCounter(); got != "" {
		t.Fatalf("RecordCounter took ring-buffer records %q for HTTP records", got)
	}
	if !m.HasCapture() {
		t.Fatal("HasCapture false with weir_bpf_* present")
	}
	if (Metrics{"go_goroutines": 1}).HasCapture() {
		t.Fatal("HasCapture true without capture metrics")
	}
}

func TestParseMetricsRejectsLineWithoutValue(t *testing.T) {
	if _, err := ParseMetrics(strings.NewReader("weir_x{a=\"b\"}\n")); err == nil {
		t.Fatal("line without value accepted")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestParseGoBenchReadsStandardAndCustomUnits(t *testing.T) {
	out := `goos: linux
BenchmarkHTTP1-2               	   82375	     14502 ns/op	9607.10 MB/s	    965372 records/s	   12152 B/op	     105 allocs/op
BenchmarkHTTP2XNetBaseline-2   	    9640	    141968 ns/op	1225.76 MB/s	   51206 B/op	     723 allocs/op
PASS
`
	got := ParseGoBench(out)
	if len(got) != 2 {
		t.Fatalf("got %d benchmarks, want 2: %+v", len(got), got)
	}
	h1 := got[0]
	if h1.Name != "BenchmarkHTTP1" || h1.MBPerSec != 9607.10 || h1.AllocsPerOp != 105 || h1.BytesPerOp != 12152 || h1.Extra["records/s"] != 965372 {
		t.Fatalf("HTTP1 = %+v", h1)
	}
	if got[1].Name != "BenchmarkHTTP2XNetBaseline" || got[1].AllocsPerOp != 723 {
		t.Fatalf("baseline = %+v", got[1])
	}
}

func TestReportJudgesCaptureTargetsOnlyWhenCapturing(t *testing.T) {
	load := LoadResult{Requests: 100_000, Duration: 10 * time.Second, Throughput: 10_000, P50: time.Millisecond, P99: 2 * time.Millisecond}
	mk := func(capturing bool) string {
		r := &Report{Rounds: 1, Duration: 10 * time.Second, Scenarios: []*Scenario{{
			Name: "HTTP/1.1", Short: "HTTP/1.1", Base: []LoadResult{load},
			Weir: []WeirRun{{Load: load, CPU: time.Second, HWM: 20 << 20, Records: 200_000, Capturer: capturing}},
		}}}
		return r.Markdown()
	}
	on := mk(true)
	// 1 CPU-s for 100k requests = 0.1 CPU-s per 10k: within 0.2.
	for _, want := range []string{"| 1.000 | ≥ 0.95", "0.100 CPU-s", "200000 / 200000 | 1.000 | 1.000 | yes"} {
		if !strings.Contains(on, want) {
			t.Errorf("capturing report lacks %q:\n%s", want, on)
		}
	}
	off := mk(false)
	if !strings.Contains(off, "— (no capture)") || !strings.Contains(off, "does not capture yet") {
		t.Errorf("non-capturing report does not say so:\n%s", off)
	}
}

func TestSpreadShowsMedianAndRangeInOneUnit(t *testing.T) {
	rps := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) + " req/s" }
	if got, want := spread(20, []float64{10, 20, 30}, rps), "20 [10–30] req/s"; got != want {
		t.Fatalf("spread = %q, want %q", got, want)
	}
	if got, want := spread(20, []float64{20}, rps), "20 req/s"; got != want {
		t.Fatalf("single round: spread = %q, want %q", got, want)
	}
}

func TestReportShowsTheLongLivedGRPCRows(t *testing.T) {
	load := LoadResult{Requests: 100_000, Duration: 10 * time.Second, Throughput: 10_000}
	r := &Report{Rounds: 1, Duration: 10 * time.Second, Scenarios: []*Scenario{{
		Name: "HTTP/1.1", Short: "HTTP/1.1", Base: []LoadResult{load},
		Weir: []WeirRun{{Load: load, CPU: time.Second, Records: 200_000, Capturer: true}},
	}}, GRPC: &GRPCResult{RPCs: 700, Conns: 1, ConnBytes: 70 << 20, MessageBytes: 100 << 10,
		Records: 1400, PayloadBytes: 2_800_000, Lost: map[string]float64{}}}
	md := r.Markdown()
	mdHas(t, md, md,
		"long-lived gRPC (700 calls, 100 KiB messages",
		"records seen / (2 × calls made) | — | 1400 / 1400 | 1.000 | 1.000 | yes",
		"payload bytes copied out of the kernel per call | 209715 carried ×2 | 4000 | 0.019",
	)
}

func TestUnrelatedRowsCompareMediansWithTheBaselineAndJudgeDD(t *testing.T) {
	s := time.Second
	rows := UnrelatedRows([]UnrelatedResult{
		{Variant: "baseline", Runs: []UnrelatedRun{{DD: s, Getppid: 170}, {DD: 3 * s, Getppid: 999}, {DD: 2 * s, Getppid: 160}}},
		{Variant: "socket tier", Runs: []UnrelatedRun{{DD: 2 * s, Getppid: 170, DaemonCPU: 0.01}, {DD: 2050 * time.Millisecond, Getppid: 175, DaemonCPU: 0.02}}},
		{Variant: "syscall tier", Runs: []UnrelatedRun{{DD: 4 * s, Getppid: 230, DaemonCPU: -1}}},
		{Variant: "not run"},
	})
	want := [][]string{
		{"dd bs=1 count=1000000 wall time, Weir running, nothing enrolled, socket tier", "2.000 s", "2.025 s", "1.012", "≤ 1.05", "yes"},
		{"getppid (hooked by nothing), Weir running, nothing enrolled, socket tier", "170 ns", "172 ns", "1.015", "—", ""},
		{"weir-daemon CPU while they ran, nothing enrolled, socket tier", "—", "1.50% of a core", "—", "—", ""},
		{"dd bs=1 count=1000000 wall time, Weir running, nothing enrolled, syscall tier", "2.000 s", "4.000 s", "2.000", "≤ 1.05", "**no**"},
		{"getppid (hooked by nothing), Weir running, nothing enrolled, syscall tier", "170 ns", "230 ns", "1.353", "—", ""},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("rows\n%q\nwant\n%q", rows, want)
	}
	if UnrelatedRows(nil) != nil || UnrelatedRows([]UnrelatedResult{{Variant: "baseline"}}) != nil {
		t.Fatal("rows without a baseline measurement")
	}
}
