package bpf

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/weirnet/weir/bpf/event"
	"golang.org/x/sys/unix"
)

// countingSink counts what the reader delivers and keeps nothing, so a
// measurement's reader costs what decoding costs, not a growing slice.
type countingSink struct{ n atomic.Uint64 }

func (s *countingSink) ConnOpen(event.ConnOpen)     { s.n.Add(1) }
func (s *countingSink) ConnClose(event.ConnClose)   { s.n.Add(1) }
func (s *countingSink) Data(event.Data)             { s.n.Add(1) }
func (s *countingSink) Retransmit(event.Retransmit) { s.n.Add(1) }

// busyCPU is the machine's non-idle CPU time so far (/proc/stat, all CPUs).
func busyCPU(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]) // cpu user nice system idle iowait irq softirq steal
	var busy uint64
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if i != 3 && i != 4 && i < 8 { // not idle, not iowait, not guest
			busy += n
		}
	}
	return time.Duration(busy) * (time.Second / 100) // USER_HZ
}

// TestEnrolledCPUPerRequestPerCaptureTier is a measurement, not an
// assertion: the issue's "eBPF time per captured request against the same
// run's baseline CPU per request", outside make bench. Saturated HTTP/1.1
// (wrk -t1 -c32) or h2c (h2load -c4 -m10, WEIR_BPF_ENROLLED_PROTO=h2c)
// against nginx across a veth pair between two netns; nothing attached
// (the machine's busy CPU per request) against each capture tier with
// both netns enrolled and the reader draining (eBPF run time per request
// from bpf_stats, per program too). Rounds rotate the order; medians.
// Root, real eBPF, nginx and wrk/h2load; runs when WEIR_BPF_ENROLLED_WRK=1.
func TestEnrolledCPUPerRequestPerCaptureTier(t *testing.T) {
	h2c := os.Getenv("WEIR_BPF_ENROLLED_PROTO") == "h2c"
	tool := "wrk"
	if h2c {
		tool = "h2load"
	}
	measurement(t, "WEIR_BPF_ENROLLED_WRK", "nginx", tool)
	const secs = 5
	client, server := newNetns(t), newNetns(t)
	vethPair(t, client, server)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	listen := "10.254.0.2:8080"
	if h2c {
		listen += " http2"
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %s/nginx.pid;
error_log stderr error;
events { worker_connections 1024; }
http {
	access_log off;
	keepalive_requests 1000000;
	server {
		listen %s;
		location / { return 200 "hello world\n"; }
	}
}
`, dir, listen)), 0o644); err != nil {
		t.Fatal(err)
	}
	var nginx *exec.Cmd
	wait(t, in(server, func() error {
		nginx = exec.Command("nginx", "-c", conf, "-p", dir)
		nginx.Stderr = os.Stderr
		return nginx.Start()
	}), 5*time.Second)
	t.Cleanup(func() { nginx.Process.Kill(); nginx.Wait() })
	time.Sleep(300 * time.Millisecond)

	wrkTotal := regexp.MustCompile(`([0-9]+) requests in`)
	h2Total := regexp.MustCompile(`requests: [0-9]+ total, [0-9]+ started, ([0-9]+) done`)
	run := func() float64 {
		var out []byte
		wait(t, in(client, func() error {
			var err error
			if h2c {
				out, err = exec.Command("h2load", "-c4", "-m10", "-D"+strconv.Itoa(secs), "http://10.254.0.2:8080/").CombinedOutput()
			} else {
				out, err = exec.Command("wrk", "-t1", "-c32", "-d"+strconv.Itoa(secs)+"s", "http://10.254.0.2:8080/").CombinedOutput()
			}
			if err != nil {
				return fmt.Errorf("%s: %v: %s", tool, err, out)
			}
			return nil
		}), time.Duration(secs+30)*time.Second)
		re := wrkTotal
		if h2c {
			re = h2Total
		}
		m := re.FindSubmatch(out)
		if m == nil {
			t.Fatalf("%s output without a request count: %s", tool, out)
		}
		n, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil || n == 0 {
			t.Fatalf("%s request count %q: %v", tool, m[1], err)
		}
		return n
	}
	run() // warm-up
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF run stats: %v", err)
	}
	defer stats.Close()
	progTimes := func(c *Collector) map[string]time.Duration {
		out := map[string]time.Duration{}
		for name, p := range c.coll.Programs {
			st, err := p.Stats()
			if err != nil {
				t.Fatal(err)
			}
			out[name] = st.Runtime
		}
		return out
	}

	type variant struct {
		name string
		tier CaptureTier
		none bool
	}
	variants := []variant{{"nothing attached", 0, true}, {"socket tier", CaptureSocket, false}, {"syscall tier", CaptureSyscall, false}}
	if !kernelHasSocketTier(t) {
		variants = slices.Delete(variants, 1, 2)
	}
	const rounds = 3
	cpuPerReq := make([][]float64, len(variants))
	bpfPerReq := make([][]float64, len(variants))
	progPerReq := make([]map[string][]float64, len(variants))
	for round := range rounds {
		for k := range variants {
			i := (k + round) % len(variants)
			var c *Collector
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			if !variants[i].none {
				var err error
				if c, err = Load(Config{CaptureTier: variants[i].tier}, testLogger(t)); err != nil {
					t.Fatal(err)
				}
				for j, ns := range []*testNetns{client, server} {
					if err := c.Enroll(ns.ino, uint32(j+1)); err != nil {
						t.Fatal(err)
					}
				}
				go func() { done <- c.Run(ctx, &countingSink{}) }()
			}
			var before map[string]time.Duration
			if c != nil {
				before = progTimes(c)
			}
			busy0 := busyCPU(t)
			reqs := run()
			cpuPerReq[i] = append(cpuPerReq[i], float64(busyCPU(t)-busy0)/reqs)
			if c == nil {
				cancel()
				bpfPerReq[i] = append(bpfPerReq[i], 0)
				continue
			}
			var sum time.Duration
			if progPerReq[i] == nil {
				progPerReq[i] = map[string][]float64{}
			}
			for name, d := range progTimes(c) {
				d -= before[name]
				sum += d
				if d > 0 {
					progPerReq[i][name] = append(progPerReq[i][name], float64(d)/reqs)
				}
			}
			bpfPerReq[i] = append(bpfPerReq[i], float64(sum)/reqs)
			cancel()
			<-done
			c.Close()
		}
	}
	med := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	base := med(cpuPerReq[0])
	proto := "HTTP/1.1"
	if h2c {
		proto = "h2c"
	}
	for i, v := range variants {
		t.Logf("%s, %s: machine CPU %.2f us per request (%v), eBPF %.2f us per request (%v): %.3f of nothing attached's CPU per request",
			proto, v.name, med(cpuPerReq[i])/1e3, cpuPerReq[i], med(bpfPerReq[i])/1e3, bpfPerReq[i], med(bpfPerReq[i])/base)
		names := make([]string, 0, len(progPerReq[i]))
		for name := range progPerReq[i] {
			names = append(names, name)
		}
		slices.SortFunc(names, func(a, b string) int { return int(med(progPerReq[i][b]) - med(progPerReq[i][a])) })
		for _, name := range names {
			if d := med(progPerReq[i][name]); d >= 10 {
				t.Logf("    %s: %.0f ns per request", name, d)
			}
		}
	}
}
