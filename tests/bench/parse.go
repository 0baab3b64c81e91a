package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// LoadResult is what one load-generator run measured, from the client's side.
type LoadResult struct {
	Requests   int64         // requests completed successfully
	Errors     int64         // failed, errored, timed out, or non-2xx/3xx
	Duration   time.Duration // wall time the generator reports
	Throughput float64       // requests per second
	P50, P99   time.Duration // request latency percentiles
}

var (
	wrkTotal   = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m)`)
	wrkRate    = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.0+)?%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSockErr = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// ParseWrk reads the output of `wrk --latency`.
func ParseWrk(out string) (LoadResult, error) {
	var r LoadResult
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no %q line:\n%s", "N requests in", out)
	}
	total, _ := strconv.ParseInt(m[1], 10, 64)
	d, err := parseUnitDuration(m[2], m[3])
	if err != nil {
		return r, fmt.Errorf("wrk duration: %w", err)
	}
	r.Duration = d
	m = wrkRate.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output has no Requests/sec line:\n%s", out)
	}
	r.Throughput, _ = strconv.ParseFloat(m[1], 64)
	for _, pm := range wrkPct.FindAllStringSubmatch(out, -1) {
		d, err := parseUnitDuration(pm[2], pm[3])
		if err != nil {
			return r, fmt.Errorf("wrk %s%% latency: %w", pm[1], err)
		}
		if pm[1] == "50" {
			r.P50 = d
		} else {
			r.P99 = d
		}
	}
	if r.P50 == 0 || r.P99 == 0 {
		return r, fmt.Errorf("wrk output has no 50%%/99%% latency (was --latency given?):\n%s", out)
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.Errors += n
	}
	if m := wrkSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += n
		}
	}
	r.Requests = total - r.Errors
	return r, nil
}

func parseUnitDuration(num, unit string) (time.Duration, error) {
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q: %w", num, err)
	}
	scale := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9}[unit]
	if scale == 0 {
		return 0, fmt.Errorf("unknown unit %q", unit)
	}
	return time.Duration(v * scale), nil
}

var (
	h2Finished = regexp.MustCompile(`(?m)^finished in ([0-9.]+)(us|ms|s|m), ([0-9.]+) req/s`)
	h2Requests = regexp.MustCompile(`(?m)^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
)

// ParseH2load reads h2load's summary. Its latency statistics have no
// percentiles, so those come from the per-request log (ParseH2loadLog).
// H2loadTLS returns the TLS version and the ALPN protocol h2load reports
// having negotiated ("TLS Protocol:", "Application protocol:"), "" for
// each it does not report (a cleartext run reports neither).
func H2loadTLS(out string) (proto, alpn string) {
	if m := h2TLSProto.FindStringSubmatch(out); m != nil {
		proto = m[1]
	}
	if m := h2ALPN.FindStringSubmatch(out); m != nil {
		alpn = m[1]
	}
	return proto, alpn
}

var (
	h2TLSProto = regexp.MustCompile(`(?m)^TLS Protocol: (\S+)`)
	h2ALPN     = regexp.MustCompile(`(?m)^Application protocol: (\S+)`)
)

func ParseH2load(out string) (LoadResult, error) {
	var r LoadResult
	m := h2Finished.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("h2load output has no %q line:\n%s", "finished in", out)
	}
	d, err := parseUnitDuration(m[1], m[2])
	if err != nil {
		return r, fmt.Errorf("h2load duration: %w", err)
	}
	r.Duration = d
	r.Throughput, _ = strconv.ParseFloat(m[3], 64)
	m = h2Requests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("h2load output has no %q line:\n%s", "requests:", out)
	}
	r.Requests, _ = strconv.ParseInt(m[4], 10, 64)
	for _, s := range m[5:] {
		n, _ := strconv.ParseInt(s, 10, 64)
		r.Errors += n
	}
	return r, nil
}

// maxLogLines bounds how many request lines ParseH2loadLog keeps; a 10 s
// run on this class of machine stays far below it.
const maxLogLines = 5_000_000

// ParseH2loadLog computes latency percentiles from h2load --log-file output:
// tab-separated start time (µs since epoch), status, duration (µs).
func ParseH2loadLog(r io.Reader) (p50, p99 time.Duration, err error) {
	var lat []int64
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 3 {
			continue
		}
		us, err := strconv.ParseInt(strings.TrimSpace(f[2]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("h2load log line %q: %w", sc.Text(), err)
		}
		if len(lat) == maxLogLines {
			return 0, 0, fmt.Errorf("h2load log longer than %d lines", maxLogLines)
		}
		lat = append(lat, us)
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read h2load log: %w", err)
	}
	if len(lat) == 0 {
		return 0, 0, errors.New("h2load log is empty")
	}
	slices.Sort(lat)
	return time.Duration(percentile(lat, 50)) * time.Microsecond,
		time.Duration(percentile(lat, 99)) * time.Microsecond, nil
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []int64, p float64) int64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture Weir builds for.
const clockTicks = 100

// ProcStats is a process's CPU time and memory, from /proc.
type ProcStats struct {
	CPU   time.Duration // utime + stime
	RSS   int64         // VmRSS, bytes
	HWM   int64         // VmHWM (peak RSS), bytes
	Valid bool
}

// ReadProcStats reads /proc/<pid>/stat and /proc/<pid>/status.
func ReadProcStats(pid int) (ProcStats, error) {
	var s ProcStats
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	if s.CPU, err = parseStatCPU(stat); err != nil {
		return s, fmt.Errorf("pid %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	s.RSS = statusKB(status, "VmRSS:") * 1024
	s.HWM = statusKB(status, "VmHWM:") * 1024
	s.Valid = true
	return s, nil
}

// parseStatCPU returns utime+stime (fields 14 and 15) of a /proc/<pid>/stat
// line. The command name (field 2) may hold spaces and parentheses, so
// fields are counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat: no ')'")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime is field 14 → f[11], stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after comm", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("malformed /proc stat utime/stime: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

func statusKB(status []byte, key string) int64 {
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// Metrics is a Prometheus text exposition reduced to one number per metric
// name: the sum over every label set. That is what the benchmark needs
// (total events lost, total records produced) whatever labels the daemon
// splits them by.
type Metrics map[string]float64

// ParseMetrics reads Prometheus text format (version 0.0.4).
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			// Label values may contain spaces or '}' only inside quotes.
			j := closingBrace(rest)
			if j < 0 {
				return nil, fmt.Errorf("metric line with unterminated labels: %q", line)
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("metric line without a value: %q", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: value: %w", line, err)
		}
		m[name] += v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return m, nil
}

func closingBrace(s string) int {
	inQuote, esc := false, false
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case c == '\\':
			esc = true
		case c == '"':
			inQuote = !inQuote
		case c == '}' && !inQuote:
			return i
		}
	}
	return -1
}

// LossNames are the metrics that count data Weir failed to deliver: every
// counter whose name says "lost" or "dropped". They are discovered rather
// than hard-coded so that a counter added by a later component is included
// without touching the benchmark.
func (m Metrics) LossNames() []string {
	var out []string
	for name := range m {
		l := strings.ToLower(name)
		if !strings.HasPrefix(l, "weir_") {
			continue
		}
		if strings.Contains(l, "lost") || strings.Contains(l, "dropped") || strings.Contains(l, "drop") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// recordCounters name the daemon's count of HTTP exchanges it parsed, most
// specific first. Only one is used: the pipeline counts the same exchange at
// several stages, and summing them would count it several times.
var recordCounters = []string{
	"weir_protocol_records_total",   // records the HTTP parsers emitted
	"weir_pipeline_exchanges_total", // exchanges handed to consumers
}

// RecordCounter returns the name of the metric counting HTTP records, or ""
// when the daemon exposes none.
func (m Metrics) RecordCounter() string {
	for _, n := range recordCounters {
		if _, ok := m[n]; ok {
			return n
		}
	}
	return ""
}

// Delta returns after-before for the named metrics, per name.
func Delta(before, after Metrics, names []string) map[string]float64 {
	d := make(map[string]float64, len(names))
	for _, n := range names {
		d[n] = after[n] - before[n]
	}
	return d
}

// HasCapture reports whether the daemon exposes the capture pipeline's
// metrics, i.e. whether this weir-daemon build captures at all.
func (m Metrics) HasCapture() bool {
	for name := range m {
		if strings.HasPrefix(name, "weir_capture_") || strings.HasPrefix(name, "weir_bpf_") {
			return true
		}
	}
	return false
}

// Median of a non-empty sample; 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// GoBench is one line of `go test -bench -benchmem` output.
type GoBench struct {
	Name        string
	NsPerOp     float64
	MBPerSec    float64 // 0 when the benchmark does not SetBytes
	BytesPerOp  float64
	AllocsPerOp float64
	Extra       map[string]float64 // custom b.ReportMetric units
}

var goBenchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// ParseGoBench reads the benchmark lines of `go test -bench` output.
func ParseGoBench(out string) []GoBench {
	var res []GoBench
	for line := range strings.SplitSeq(out, "\n") {
		m := goBenchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		b := GoBench{Name: m[1], Extra: map[string]float64{}}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			switch f[i+1] {
			case "ns/op":
				b.NsPerOp = v
			case "MB/s":
				b.MBPerSec = v
			case "B/op":
				b.BytesPerOp = v
			case "allocs/op":
				b.AllocsPerOp = v
			default:
				b.Extra[f[i+1]] = v
			}
		}
		res = append(res, b)
	}
	return res
}
