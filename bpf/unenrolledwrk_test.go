package bpf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestUnenrolledThroughputPerCaptureTier is a measurement, not an
// assertion: saturated HTTP/1.1 throughput (wrk -t1 -c32 against nginx)
// between two network namespaces joined by a veth pair, neither enrolled,
// with nothing attached and with the collection loaded under each capture
// tier, with nothing enrolled and with another (idle) netns enrolled, the
// order rotating each round; it logs the medians, the ratios against
// nothing attached and the collection's eBPF time per request. It is what
// Weir, and the per-packet hooks' gates, cost traffic Weir does not watch. Root, real eBPF, nginx and wrk; runs when
// WEIR_BPF_UNENROLLED_WRK=1 (WEIR_BPF_UNENROLLED_WRK_SECONDS, default 5).
func TestUnenrolledThroughputPerCaptureTier(t *testing.T) {
	measurement(t, "WEIR_BPF_UNENROLLED_WRK", "nginx", "wrk")
	secs := 5
	if v := os.Getenv("WEIR_BPF_UNENROLLED_WRK_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 60 {
			t.Fatalf("WEIR_BPF_UNENROLLED_WRK_SECONDS=%q: want 1..60", v)
		}
		secs = n
	}
	client, server := newNetns(t), newNetns(t)
	vethPair(t, client, server)

	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %s/nginx.pid;
error_log stderr error;
events { worker_connections 1024; }
http {
	access_log off;
	server {
		listen 10.254.0.2:8080;
		location / { return 200 "hello world\n"; }
	}
}
`, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	var nginx *exec.Cmd
	// Started from a thread in the server netns: the child inherits it.
	wait(t, in(server, func() error {
		nginx = exec.Command("nginx", "-c", conf, "-p", dir)
		nginx.Stderr = os.Stderr
		return nginx.Start()
	}), 5*time.Second)
	t.Cleanup(func() { nginx.Process.Kill(); nginx.Wait() })
	time.Sleep(300 * time.Millisecond)

	rate := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	total := regexp.MustCompile(`([0-9]+) requests in`)
	run := func() (float64, float64) {
		var out []byte
		wait(t, in(client, func() error {
			var err error
			out, err = exec.Command("wrk", "-t1", "-c32", "-d"+strconv.Itoa(secs)+"s", "http://10.254.0.2:8080/").CombinedOutput()
			if err != nil {
				return fmt.Errorf("wrk: %v: %s", err, out)
			}
			return nil
		}), time.Duration(secs+30)*time.Second)
		m := rate.FindSubmatch(out)
		if m == nil {
			t.Fatalf("wrk output without a rate: %s", out)
		}
		r, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			t.Fatal(err)
		}
		n := total.FindSubmatch(out)
		if n == nil {
			t.Fatalf("wrk output without a request count: %s", out)
		}
		reqs, err := strconv.ParseFloat(string(n[1]), 64)
		if err != nil {
			t.Fatal(err)
		}
		return r, reqs
	}
	run() // warm-up
	// bpf_stats adds two clock reads per program run, to every loaded
	// variant alike; the eBPF time per request it gives is what the
	// gates cost this traffic.
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF run stats: %v", err)
	}
	defer stats.Close()
	runtime := func(c *Collector) time.Duration {
		var sum time.Duration
		for _, p := range c.coll.Programs {
			st, err := p.Stats()
			if err != nil {
				t.Fatal(err)
			}
			sum += st.Runtime
		}
		return sum
	}

	// "another netns enrolled": a third netns, with no traffic, is
	// enrolled, so the per-packet hooks are attached and the measured
	// traffic runs their gates.
	type variant struct {
		name   string
		tier   CaptureTier
		none   bool
		enroll bool
	}
	variants := []variant{{"nothing attached", 0, true, false},
		{"socket tier, nothing enrolled", CaptureSocket, false, false},
		{"socket tier, another netns enrolled", CaptureSocket, false, true},
		{"syscall tier, nothing enrolled", CaptureSyscall, false, false},
		{"syscall tier, another netns enrolled", CaptureSyscall, false, true}}
	if !kernelHasSocketTier(t) {
		variants = slices.Delete(variants, 1, 3)
	}
	bystander := newNetns(t)
	const rounds = 3
	rates := make([][]float64, len(variants))
	bpfNs := make([][]float64, len(variants))
	for round := range rounds {
		for k := range variants {
			i := (k + round) % len(variants)
			var c *Collector
			if !variants[i].none {
				var err error
				if c, err = Load(Config{CaptureTier: variants[i].tier}, testLogger(t)); err != nil {
					t.Fatal(err)
				}
				if variants[i].enroll {
					if err := c.Enroll(bystander.ino, 1); err != nil {
						t.Fatal(err)
					}
				}
			}
			var before time.Duration
			if c != nil {
				before = runtime(c)
			}
			r, reqs := run()
			rates[i] = append(rates[i], r)
			if c != nil {
				bpfNs[i] = append(bpfNs[i], float64(runtime(c)-before)/reqs)
				c.Close()
			} else {
				bpfNs[i] = append(bpfNs[i], 0)
			}
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[len(s)/2]
	}
	base := median(rates[0])
	for i, v := range variants {
		t.Logf("%s: %.0f req/s median of %v (%.3f of nothing attached); eBPF %.0f ns per request (median of %v)",
			v.name, median(rates[i]), rates[i], median(rates[i])/base, median(bpfNs[i]), bpfNs[i])
	}
}
