package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/pprof/profile"
	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

// Helper modes of the test binary (see conns.go).
const (
	helperEnv   = "WEIR_BENCH_HELPER"
	helperAddr  = "WEIR_BENCH_ADDR"
	helperCount = "WEIR_BENCH_N"
	helperLife  = "WEIR_BENCH_LIFE"
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		peers.Main(m) // harness.Main, or a peer command (the gRPC scenario's client and server)
	case "conns-server":
		n, _ := strconv.Atoi(os.Getenv(helperCount))
		life, _ := time.ParseDuration(os.Getenv(helperLife))
		if err := ServeConns(os.Getenv(helperAddr), n, life); err != nil {
			fmt.Fprintln(os.Stderr, "conns-server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "conns-client":
		n, _ := strconv.Atoi(os.Getenv(helperCount))
		life, _ := time.ParseDuration(os.Getenv(helperLife))
		if err := HoldConns(os.Getenv(helperAddr), n, 64, life); err != nil {
			fmt.Fprintln(os.Stderr, "conns-client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// benchConfig is read from the environment so that run.sh (and a developer
// in a hurry) can shorten or extend the run without editing code.
type benchConfig struct {
	Rounds     int           // WEIR_BENCH_ROUNDS, default 3
	Duration   time.Duration // WEIR_BENCH_DURATION, default 10s
	Conns      int           // WEIR_BENCH_CONNS, default 10000 (0 skips)
	DaemonArgs []string      // WEIR_BENCH_DAEMON_ARGS, extra weir-daemon flags
	Report     string        // WEIR_BENCH_REPORT, default tests/bench/REPORT.md
	ProfileDir string        // WEIR_BENCH_PROFILE_DIR: where the cost runs' daemon CPU profiles are kept ("": not kept)
	ParserOut  string        // WEIR_BENCH_PARSER_OUT: saved `go test -bench` output
	// PipelineOut is WEIR_BENCH_PIPELINE_OUT: saved output of the daemon
	// pipeline benchmarks (./daemon/monitor).
	PipelineOut string
	Paced       bool // WEIR_BENCH_PACED, default 1
	GRPC        bool // WEIR_BENCH_GRPC, default 1: the long-lived gRPC scenario
	// OAPFlag is the weir-daemon flag taking a SkyWalking OAP address
	// (WEIR_BENCH_OAP_FLAG, default "oap"; empty disables export).
	OAPFlag string
	// Only is WEIR_BENCH_ONLY, the parts to run (benchParts), comma
	// separated; nil runs them all. A developer proving one scenario
	// works runs it alone instead of the whole bench.
	Only map[string]bool
}

// benchParts are the names WEIR_BENCH_ONLY accepts: the load scenarios
// (http1, h2c, https) and the other measurements.
var benchParts = []string{"http1", "h2c", "https", "unrelated", "paced", "conns", "grpc", "floor"}

// parseOnly reads WEIR_BENCH_ONLY: "" selects everything (nil).
func parseOnly(v string) (map[string]bool, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	only := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(benchParts, f) {
			return nil, fmt.Errorf("unknown part %q: want a comma-separated list of %s", f, strings.Join(benchParts, ", "))
		}
		only[f] = true
	}
	return only, nil
}

// runs says whether the part is selected.
func (c benchConfig) runs(part string) bool { return c.Only == nil || c.Only[part] }

func loadConfig(t *testing.T, repo string) benchConfig {
	t.Helper()
	c := benchConfig{Rounds: 3, Duration: 10 * time.Second, Conns: 10_000, Paced: true, GRPC: true,
		Report: filepath.Join(repo, "tests", "bench", "REPORT.md")}
	if v := os.Getenv("WEIR_BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 20 {
			t.Fatalf("WEIR_BENCH_ROUNDS=%q: want an integer in 1..20", v)
		}
		c.Rounds = n
	}
	if v := os.Getenv("WEIR_BENCH_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 60*time.Second {
			t.Fatalf("WEIR_BENCH_DURATION=%q: want a duration in 1s..60s", v)
		}
		c.Duration = d
	}
	if v := os.Getenv("WEIR_BENCH_CONNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 20_000 {
			t.Fatalf("WEIR_BENCH_CONNS=%q: want an integer in 0..20000", v)
		}
		c.Conns = n
	}
	if v := os.Getenv("WEIR_BENCH_GRPC"); v == "0" {
		c.GRPC = false
	}
	if v := os.Getenv("WEIR_BENCH_PACED"); v == "0" {
		c.Paced = false
	}
	c.DaemonArgs = strings.Fields(os.Getenv("WEIR_BENCH_DAEMON_ARGS"))
	c.OAPFlag = "oap"
	if v, ok := os.LookupEnv("WEIR_BENCH_OAP_FLAG"); ok {
		c.OAPFlag = strings.TrimLeft(v, "-")
	}
	c.ProfileDir = os.Getenv("WEIR_BENCH_PROFILE_DIR")
	if v := os.Getenv("WEIR_BENCH_REPORT"); v != "" {
		c.Report = v
	}
	only, err := parseOnly(os.Getenv("WEIR_BENCH_ONLY"))
	if err != nil {
		t.Fatalf("WEIR_BENCH_ONLY: %v", err)
	}
	c.Only = only
	c.ParserOut = os.Getenv("WEIR_BENCH_PARSER_OUT")
	c.PipelineOut = os.Getenv("WEIR_BENCH_PIPELINE_OUT")
	return c
}

const (
	httpPort  = 8080 // nginx HTTP/1.1
	h2cPort   = 8081 // nginx h2c (prior knowledge)
	httpsPort = 8443 // nginx HTTPS: TLS 1.3, ALPN h2 and http/1.1
	connsPort = 9090 // the many-connections helper server
	// slack added to a load run's duration for its hard timeout.
	runSlack = 30 * time.Second
	// connsLife bounds the whole many-connections scenario.
	connsLife = 60 * time.Second
)

// TestBench is `make bench`: it measures Weir's overhead and writes the
// report. It asserts that the measurements were taken (every run produced
// parseable, error-free results); it deliberately does not assert the
// targets, which are judged in the report as ratios against the baseline.
func TestBench(t *testing.T) {
	if os.Getenv("WEIR_BENCH") != "1" {
		t.Skip("benchmark, not a test: set WEIR_BENCH=1 (make bench runs it)")
	}
	harness.RequireRoot(t)
	bins := harness.FindBinaries(t, []string{"weir-daemon"}, []string{"bridge", "host-local", "weir"})
	cfg := loadConfig(t, bins.Repo)
	for _, tool := range []string{"wrk", "h2load", "nginx"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found on PATH: install it (Debian: wrk, nghttp2-client, nginx-light)", tool)
		}
	}

	rep := &Report{Started: time.Now(), Kernel: kernelRelease(), CPUs: runtime.NumCPU(),
		Rounds: cfg.Rounds, Duration: cfg.Duration, LoadBefore: loadAvg()}

	// The daemon's flags without export, for the paced attribution's
	// "daemon, no export" leg.
	noExportArgs := slices.Clone(cfg.DaemonArgs)
	var oap *Receiver
	if flag := oapFlag(t, bins.Path("weir-daemon"), cfg.OAPFlag); flag != "" {
		var err error
		if oap, err = StartReceiver(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(oap.Stop)
		// The in-process receiver speaks plaintext gRPC, like an OAP on
		// its default port; the exporter uses TLS unless told otherwise.
		cfg.DaemonArgs = append(cfg.DaemonArgs, flag, oap.Addr(), "--oap-insecure")
		rep.OAP = true
	} else {
		rep.Notes = append(rep.Notes, fmt.Sprintf("weir-daemon has no --%s flag: export to SkyWalking is not part of this run.", cfg.OAPFlag))
	}
	d := harness.NewDaemon(t, bins, harness.DaemonOptions{ExtraArgs: cfg.DaemonArgs})
	rep.DaemonArgs = cfg.DaemonArgs
	startDaemon(t, d)
	netw := harness.NewNetwork(t, bins, harness.NetworkOptions{
		Weir: &harness.WeirConf{DaemonSocket: d.Socket, SpoolDir: d.SpoolDir, Timeout: "5s"},
	})
	srv := netw.AddPod(t, harness.PodSpec{Namespace: "bench", Name: "server"})
	cli := netw.AddPod(t, harness.PodSpec{Namespace: "bench", Name: "client"})
	// enrolled are the two pods as the daemon registered them (ids, netns,
	// host veths), for the paced attribution's eBPF-only leg.
	var enrolled []harness.PodRecord
	{
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		recs, err := d.WaitPods(ctx, func(p []harness.PodRecord) bool {
			_, a := harness.FindPod(p, srv.ContainerID)
			_, b := harness.FindPod(p, cli.ContainerID)
			return a && b
		})
		cancel()
		if err != nil {
			t.Fatalf("pods not enrolled: %v", err)
		}
		for _, id := range []string{srv.ContainerID, cli.ContainerID} {
			rec, _ := harness.FindPod(recs, id)
			enrolled = append(enrolled, rec)
		}
	}
	ip := srv.IPv4().String()
	startNginx(t, srv, cli, ip)

	// The "with Weir" side of a TLS scenario is the same daemon with
	// TLS plaintext capture on (--bpf.tls, off by default); the other
	// scenarios never run with it, so their figures stay comparable.
	tlsArgs := append(slices.Clone(cfg.DaemonArgs), "--bpf.tls")
	hasTLS := daemonHasFlag(t, bins.Path("weir-daemon"), "bpf.tls")
	var scenarios []*Scenario
	var runners []func(t *testing.T) (LoadResult, error)
	if cfg.runs("http1") {
		scenarios = append(scenarios, &Scenario{Name: fmt.Sprintf("HTTP/1.1 (wrk -t1 -c32 -d%s)", secs(cfg.Duration)), Short: "HTTP/1.1"})
		runners = append(runners, func(t *testing.T) (LoadResult, error) { return runWrk(t, cli, ip, cfg.Duration) })
	}
	if cfg.runs("h2c") {
		scenarios = append(scenarios, &Scenario{Name: fmt.Sprintf("HTTP/2 h2c (h2load -c16 -m10 -D %s)", secs(cfg.Duration)), Short: "HTTP/2"})
		runners = append(runners, func(t *testing.T) (LoadResult, error) {
			return runH2load(t, cli, fmt.Sprintf("http://%s:%d/", ip, h2cPort), cfg.Duration, 0)
		})
	}
	if cfg.runs("https") {
		if hasTLS {
			scenarios = append(scenarios, &Scenario{Name: fmt.Sprintf("HTTPS h2 over TLS 1.3 (h2load -c16 -m10 -D %s)", secs(cfg.Duration)),
				Short: "HTTPS", TLS: true, Reported: true})
			runners = append(runners, func(t *testing.T) (LoadResult, error) {
				return runH2load(t, cli, fmt.Sprintf("https://%s:%d/", ip, httpsPort), cfg.Duration, 0)
			})
			rep.TLSArgs = tlsArgs
		} else {
			rep.Notes = append(rep.Notes, "weir-daemon has no --bpf.tls flag: the HTTPS scenario is not part of this run.")
		}
	}
	rep.Scenarios = scenarios

	// Warm up nginx, the bridge and the neighbour tables once, unmeasured.
	if _, err := runWrkArgs(t, cli, ip, 2*time.Second); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	stopDaemon(t, d)

	// The kernel-metrics-only variant: the same daemon with payload
	// capture off (no HTTP parsing), for issue #4's overhead target.
	kernelArgs := append(slices.Clone(cfg.DaemonArgs), "--bpf.payload=false")
	plain := slices.ContainsFunc(scenarios, func(s *Scenario) bool { return !s.TLS })
	variants := []variant{baseline}
	if plain {
		variants = append(variants, withWeir)
	}
	if !plain {
		// Nothing for the kernel-metrics-only variant to measure.
	} else if daemonHasFlag(t, bins.Path("weir-daemon"), "bpf.payload") {
		variants = append(variants, kernelOnly)
		rep.KernelOnly = true
		rep.KernelArgs = kernelArgs
	} else {
		rep.Notes = append(rep.Notes, "weir-daemon has no --bpf.payload flag: the kernel-metrics-only variant is not part of this run.")
	}
	// The floor: a second daemon with the same hooks attached but its own
	// (empty) registry, so no pod is enrolled and every program returns at
	// the netns filter. What remains is the cost of having syscall
	// tracepoints attached at all, which any design hooking syscalls pays.
	var idle, idleSyscall *harness.Daemon
	if plain || cfg.runs("unrelated") {
		idle = harness.NewDaemon(t, bins, harness.DaemonOptions{})
		variants = append(variants, hooksOnly)
		// The same with the syscall capture tier, the design of tools that
		// hook syscalls, so the report shows what the socket tier bought.
		if daemonHasFlag(t, bins.Path("weir-daemon"), "bpf.capture-tier") {
			idleSyscall = harness.NewDaemon(t, bins, harness.DaemonOptions{ExtraArgs: []string{"--bpf.capture-tier=syscall"}})
			variants = append(variants, hooksOnlySyscall)
		} else {
			rep.Notes = append(rep.Notes, "weir-daemon has no --bpf.capture-tier flag: the syscall-tier variant is not part of this run.")
		}
	}
	if slices.ContainsFunc(scenarios, func(s *Scenario) bool { return s.TLS }) {
		variants = append(variants, withWeirTLS)
	}
	// Work unrelated to Weir (dd, getppid) in the variants where no pod
	// is watched: baseline, then each idle daemon.
	unrelated := map[variant]*UnrelatedResult{}
	if cfg.runs("unrelated") {
		unrelated = map[variant]*UnrelatedResult{
			baseline: {Variant: "baseline"}, hooksOnly: {Variant: "default capture tier"}, hooksOnlySyscall: {Variant: "syscall tier"},
		}
	}
	for round := range cfg.Rounds {
		// Each round rotates the order, so no variant always runs first
		// (warmest caches) or last (most accumulated load).
		order := slices.Concat(variants[round%len(variants):], variants[:round%len(variants)])
		for _, v := range order {
			switch v {
			case withWeir:
				d.SetExtraArgs(cfg.DaemonArgs)
				startDaemon(t, d)
			case withWeirTLS:
				d.SetExtraArgs(tlsArgs)
				startDaemon(t, d)
			case kernelOnly:
				d.SetExtraArgs(kernelArgs)
				startDaemon(t, d)
			case hooksOnly:
				startDaemon(t, idle)
			case hooksOnlySyscall:
				startDaemon(t, idleSyscall)
			}
			if u := unrelated[v]; u != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				pid := 0
				switch v {
				case hooksOnly:
					pid = idle.Pid()
				case hooksOnlySyscall:
					pid = idleSyscall.Pid()
				}
				if pid > 0 {
					took, settled, err := WaitSettled(ctx, pid, SettleTimeout)
					if err != nil {
						cancel()
						t.Fatalf("round %d unrelated work, %s: waiting for weir-daemon to settle: %v", round, u.Variant, err)
					}
					t.Logf("round %d unrelated work, %s: weir-daemon settled after %v (settled: %v)", round, u.Variant, took.Round(time.Millisecond), settled)
				}
				run, err := MeasureUnrelated(ctx, pid)
				cancel()
				if err != nil {
					t.Fatalf("round %d unrelated work, %s: %v", round, u.Variant, err)
				}
				u.Runs = append(u.Runs, run)
				daemonCPU := ""
				if run.DaemonCPU >= 0 {
					daemonCPU = fmt.Sprintf(", weir-daemon %.2f%% of a core", 100*run.DaemonCPU)
				}
				t.Logf("round %d unrelated work, %s: dd %v, getppid %.0f ns%s", round, u.Variant, run.DD, run.Getppid, daemonCPU)
			}
			for i, s := range scenarios {
				if !s.runsIn(v) {
					continue
				}
				if v == hooksOnly || v == hooksOnlySyscall {
					res, err := runners[i](t)
					if err != nil {
						t.Fatalf("round %d hooks only %s: %v", round, s.Short, err)
					}
					if v == hooksOnlySyscall {
						s.HooksOnlySyscall = append(s.HooksOnlySyscall, res)
					} else {
						s.HooksOnly = append(s.HooksOnly, res)
					}
					t.Logf("round %d hooks attached, nothing enrolled %s: %.0f req/s p50 %v p99 %v", round, s.Short, res.Throughput, res.P50, res.P99)
					continue
				}
				if v == kernelOnly {
					w, err := measureWeir(t, d, nil, func() (LoadResult, error) { return runners[i](t) })
					if err != nil {
						t.Fatalf("round %d kernel metrics only %s: %v", round, s.Short, err)
					}
					s.KernelOnly = append(s.KernelOnly, w)
					t.Logf("round %d kernel metrics only %s: %.0f req/s p50 %v p99 %v daemon cpu %v",
						round, s.Short, w.Load.Throughput, w.Load.P50, w.Load.P99, w.CPU)
					continue
				}
				if v == baseline {
					rep.ForeignBPF = max(rep.ForeignBPF, tracingPrograms(t))
					res, err := runners[i](t)
					if err != nil {
						t.Fatalf("round %d baseline %s: %v", round, s.Short, err)
					}
					s.Base = append(s.Base, res)
					t.Logf("round %d baseline %s: %.0f req/s p50 %v p99 %v", round, s.Short, res.Throughput, res.P50, res.P99)
					continue
				}
				w, err := measureWeir(t, d, oap, func() (LoadResult, error) { return runners[i](t) })
				if err != nil {
					t.Fatalf("round %d with Weir %s: %v", round, s.Short, err)
				}
				s.Weir = append(s.Weir, w)
				t.Logf("round %d with Weir %s: %.0f req/s p50 %v p99 %v daemon cpu %v hwm %s lost %.0f records %.0f",
					round, s.Short, w.Load.Throughput, w.Load.P50, w.Load.P99, w.CPU, mb(w.HWM), SumLost(w.Lost), w.Records)
			}
			switch v {
			case hooksOnly:
				stopDaemon(t, idle)
			case hooksOnlySyscall:
				stopDaemon(t, idleSyscall)
			case withWeir, kernelOnly, withWeirTLS:
				stopDaemon(t, d)
			}
		}
	}
	d.SetExtraArgs(cfg.DaemonArgs)
	if len(unrelated) > 0 {
		rep.Unrelated = []UnrelatedResult{*unrelated[baseline], *unrelated[hooksOnly]}
		if idleSyscall != nil {
			rep.Unrelated = append(rep.Unrelated, *unrelated[hooksOnlySyscall])
		}
	}

	// Where the CPU goes at saturation, from runs of their own (bpf_stats
	// costs every program run two clock reads, so no other figure may
	// come from a run with it on).
	for i, s := range scenarios {
		args := cfg.DaemonArgs
		if s.TLS {
			args = tlsArgs
		}
		d.SetExtraArgs(append(slices.Clone(args), "--pprof"))
		c := measureCost(t, d, s.Short, cfg.Duration, cfg.ProfileDir, func() (LoadResult, error) { return runners[i](t) })
		c.Reported = s.Reported
		rep.Costs = append(rep.Costs, c)
		d.SetExtraArgs(cfg.DaemonArgs)
	}

	if cfg.runs("floor") {
		// The capture floor beside Weir, HTTP/1.1 and h2c (floor.go).
		loads := []struct {
			name string
			run  func() (LoadResult, error)
		}{
			{"HTTP/1.1", func() (LoadResult, error) { return runWrk(t, cli, ip, cfg.Duration) }},
			{"HTTP/2", func() (LoadResult, error) {
				return runH2load(t, cli, fmt.Sprintf("http://%s:%d/", ip, h2cPort), cfg.Duration, 0)
			}},
		}
		for _, l := range loads {
			f := FloorResult{Scenario: l.name}
			for round := range cfg.Rounds {
				r, err := measureFloor(t, d, []*harness.Pod{srv, cli}, l.run)
				if err != nil {
					f.Err = err.Error()
					t.Errorf("floor %s round %d: %v", l.name, round, err)
					break
				}
				f.Runs = append(f.Runs, r)
				t.Logf("floor %s round %d: baseline %v CPU per request; Weir eBPF %v (%.1f runs; socket ops %v, %.0f ns per run); floor %v (%.0f ns per run, %.2f runs), empty %.0f/%.0f ns per run; %d records, %d lost",
					l.name, round, r.BaseCPU, r.Weir, r.WeirRuns, r.WeirSock, r.WeirSockNs, r.Floor, r.FloorNs, r.FloorRuns, r.EmptySockNs, r.EmptyPacketNs, r.Records, r.Lost)
			}
			rep.Floor = append(rep.Floor, f)
		}
	}

	if cfg.Paced && cfg.runs("paced") {
		// Below saturation the latency target is about the time Weir adds
		// to each request, not about CPU the load generator lacks: each
		// rate runs in rounds without and with the daemon (see PacedRun).
		// At 10k req/s (#16's rate) each round also runs the attribution
		// legs (LegEBPFOnly and the others), which take parts of Weir away.
		maxProcs := daemonHasFlag(t, bins.Path("weir-daemon"), "max-procs")
		for _, rate := range []int{10_000, TargetLossRate} {
			pr := PacedRun{Name: fmt.Sprintf("h2load paced at %dk req/s", rate/1000), Target: float64(rate)}
			url := fmt.Sprintf("http://%s:%d/", ip, h2cPort)
			load := func() (LoadResult, error) { return runH2load(t, cli, url, cfg.Duration, rate/16) }
			steps := []pacedStep{
				{"baseline", func(rd *PacedRound) (err error) { rd.Base, err = load(); return err }},
				{"with Weir", func(rd *PacedRound) (err error) {
					rd.Run, err = pacedDaemon(t, d, cfg.DaemonArgs, oap, load)
					return err
				}},
			}
			if rate == 10_000 {
				leg := func(name string, run func() (WeirRun, error)) pacedStep {
					return pacedStep{name, func(rd *PacedRound) error {
						w, err := run()
						if err == nil {
							rd.Legs = append(rd.Legs, PacedLegRun{Leg: name, Run: w})
						}
						return err
					}}
				}
				steps = append(steps,
					leg(LegEBPFOnly, func() (WeirRun, error) { return measureEBPFOnly(enrolled, load) }),
					leg(LegNoExport, func() (WeirRun, error) { return pacedDaemon(t, d, noExportArgs, nil, load) }))
				if maxProcs {
					args := append(slices.Clone(cfg.DaemonArgs), "--max-procs", "1")
					steps = append(steps, leg(LegMaxProcs1, func() (WeirRun, error) { return pacedDaemon(t, d, args, oap, load) }))
				}
			}
			for round := range cfg.Rounds {
				began := time.Now()
				rd, err := runPacedRound(steps, round)
				if err != nil {
					pr.Err = fmt.Sprintf("round %d: %v", round+1, err)
					t.Errorf("%s: %s", pr.Name, pr.Err)
					break
				}
				pr.Rounds = append(pr.Rounds, rd)
				t.Logf("%s, round %d (%d runs in %v): achieved %.0f req/s, p50 %v p99 %v (baseline %v, %v), daemon cpu %v, lost %.0f",
					pr.Name, round+1, len(steps), time.Since(began).Round(time.Second), rd.Run.Load.Throughput, rd.Run.Load.P50, rd.Run.Load.P99,
					rd.Base.P50, rd.Base.P99, rd.Run.CPU, SumLost(rd.Run.Lost))
				for _, l := range rd.Legs {
					t.Logf("%s, round %d, %s: achieved %.0f req/s, p50 %v p99 %v, cpu %v, records %.0f, lost %.0f%s",
						pr.Name, round+1, l.Leg, l.Run.Load.Throughput, l.Run.Load.P50, l.Run.Load.P99, l.Run.CPU,
						l.Run.Records, SumLost(l.Run.Lost), lossNote(l.Run.Lost))
				}
			}
			rep.Paced = append(rep.Paced, pr)
		}
		d.SetExtraArgs(cfg.DaemonArgs)
	}

	if cfg.Conns > 0 && cfg.runs("conns") {
		startDaemon(t, d) // fresh process: its VmHWM belongs to this scenario alone
		rep.Conns = holdConns(t, d, srv, cli, ip, cfg.Conns)
		stopDaemon(t, d)
	}

	if cfg.GRPC && cfg.runs("grpc") {
		startDaemon(t, d)
		rep.GRPC = longGRPC(t, d, srv, cli, ip)
		stopDaemon(t, d)
	}

	rep.Parser, rep.ParserNote = parserResults(cfg.ParserOut)
	if cfg.PipelineOut != "" {
		rep.Pipeline, rep.PipelineNote = parserResults(cfg.PipelineOut)
	}
	if !rep.capturing() && len(scenarios) > 0 {
		rep.Notes = append(rep.Notes, notCapturingExplanation+".")
	}
	rep.Notes = append(rep.Notes,
		"Load generators, nginx and the daemon share the same cores; on a 2-core machine the daemon's CPU competes directly with the traffic it watches, which is the honest worst case.",
		"Loss counters are every weir_* metric whose name contains \"lost\" or \"drop\", discovered from /metrics; records seen are the increase of weir_protocol_records_total (HTTP exchanges the parsers emitted).")

	rep.LoadAfter = loadAvg()
	md := rep.Markdown()
	if err := os.WriteFile(cfg.Report, []byte(md), 0o644); err != nil {
		t.Fatalf("write report: %v", err)
	}
	t.Logf("report written to %s", cfg.Report)
}

func secs(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) + "s" }

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// tracingPrograms counts the tracepoint and tracing eBPF programs loaded on
// the machine (by anyone). With no weir-daemon of ours running, any of them
// belong to other runs on a shared machine, and they tax the baseline's
// syscalls as well: the report states the number so a reader can tell a
// clean baseline from a contaminated one. -1 when bpftool cannot tell.
func tracingPrograms(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "bpftool", "prog", "list", "--json").Output()
	if err != nil {
		t.Logf("bpftool prog list: %v", err)
		return -1
	}
	var progs []struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(out, &progs); err != nil {
		t.Logf("bpftool prog list: decode: %v", err)
		return -1
	}
	n := 0
	for _, p := range progs {
		switch p.Type {
		case "tracepoint", "tracing", "raw_tracepoint", "raw_tracepoint_writable":
			n++
		}
	}
	return n
}

// loadAvg is the 1-minute load average: other work on a shared machine is
// the largest source of noise, so the report states it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

func startDaemon(t *testing.T, d *harness.Daemon) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.DefaultReadyTimeout)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

func stopDaemon(t *testing.T, d *harness.Daemon) {
	t.Helper()
	if err := d.Stop(); err != nil {
		t.Fatalf("stop weir-daemon: %v", err)
	}
}

// pacedStep is one run of a paced round; it fills its part of the round.
type pacedStep struct {
	name string
	run  func(rd *PacedRound) error
}

// runPacedRound runs the steps once each, starting at step round mod
// len(steps), so that the order rotates between rounds and no step always
// runs first (warmest caches) or last.
func runPacedRound(steps []pacedStep, round int) (PacedRound, error) {
	var rd PacedRound
	k := round % len(steps)
	for _, s := range slices.Concat(steps[k:], steps[:k]) {
		if err := s.run(&rd); err != nil {
			return rd, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return rd, nil
}

// pacedDaemon runs load with weir-daemon up with the given flags (oap nil:
// the daemon does not export), and stops it.
func pacedDaemon(t *testing.T, d *harness.Daemon, args []string, oap *Receiver, load func() (LoadResult, error)) (WeirRun, error) {
	t.Helper()
	d.SetExtraArgs(args)
	startDaemon(t, d)
	defer stopDaemon(t, d)
	return measureWeir(t, d, oap, load)
}

// measureWeir runs load with the daemon up and records what it cost the
// daemon: CPU time, peak RSS, and how its loss and record counters moved.
func measureWeir(t *testing.T, d *harness.Daemon, oap *Receiver, load func() (LoadResult, error)) (WeirRun, error) {
	t.Helper()
	var w WeirRun
	pid := d.Pid()
	if pid == 0 {
		return w, fmt.Errorf("weir-daemon is not running")
	}
	before, err := scrape(d)
	if err != nil {
		return w, err
	}
	p0, err := ReadProcStats(pid)
	if err != nil {
		return w, err
	}
	var o0 ReceiverCounts
	var self0 ProcStats
	if oap != nil {
		o0 = oap.Counts()
		// The receiver runs in this process: its CPU, taken from the
		// same cores as the traffic, is what an off-node OAP would spend.
		if self0, err = ReadProcStats(os.Getpid()); err != nil {
			return w, err
		}
	}
	w.Load, err = load()
	if err != nil {
		return w, err
	}
	// Let the daemon drain what the last requests produced before counting:
	// poll until its record counters stop moving, bounded by drainLimit.
	after, err := settle(d, drainLimit)
	if err != nil {
		return w, err
	}
	p1, err := ReadProcStats(pid)
	if err != nil {
		return w, fmt.Errorf("weir-daemon died during the run? %w", err)
	}
	w.CPU = p1.CPU - p0.CPU
	w.HWM = p1.HWM
	w.Lost = Delta(before, after, after.LossNames())
	if rc := after.RecordCounter(); rc != "" {
		w.Records = after[rc] - before[rc]
	}
	w.Capturer = after.HasCapture()
	if oap != nil {
		w.Exported = waitExported(oap, o0, w.Records, drainLimit)
		self1, err := ReadProcStats(os.Getpid())
		if err != nil {
			return w, err
		}
		w.ReceiverCPU = self1.CPU - self0.CPU
	}
	return w, nil
}

// waitExported waits (bounded by limit) until the receiver has seen as many
// HTTP logs since from as the daemon produced records, and returns how many
// it saw: export is asynchronous and batched.
func waitExported(oap *Receiver, from ReceiverCounts, records float64, limit time.Duration) float64 {
	deadline := time.Now().Add(limit)
	for {
		got := float64(oap.Counts().HTTP - from.HTTP)
		if got >= records || time.Now().After(deadline) {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// oapFlag returns "--<name>" when weir-daemon's usage lists that flag, so
// the benchmark includes export as soon as the daemon supports it.
// variant is what runs next to the load: nothing, the daemon as
// configured, or the daemon with payload capture off.
type variant int

const (
	baseline variant = iota
	withWeir
	kernelOnly
	hooksOnly        // a daemon with every hook attached and no pod enrolled
	hooksOnlySyscall // the same, forced to the syscall capture tier
	withWeirTLS      // the daemon as configured plus --bpf.tls (TLS scenarios only)
)

// runsIn says whether the scenario runs in the variant: a TLS scenario
// against no daemon and the daemon with --bpf.tls, every other one in
// every variant but that.
func (s *Scenario) runsIn(v variant) bool {
	switch v {
	case baseline:
		return true
	case withWeirTLS:
		return s.TLS
	default:
		return !s.TLS
	}
}

// daemonHasFlag says whether the weir-daemon binary has --name.
func daemonHasFlag(t *testing.T, daemon, name string) bool {
	t.Helper()
	return oapFlag(t, daemon, name) != ""
}

func oapFlag(t *testing.T, daemon, name string) string {
	t.Helper()
	if name == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, daemon, "--help").CombinedOutput()
	if strings.Contains(string(out), "-"+name+" ") || strings.Contains(string(out), "-"+name+"\n") {
		return "--" + name
	}
	return ""
}

// drainLimit bounds how long settle waits for the daemon to go quiet.
const drainLimit = 5 * time.Second

// settle scrapes /metrics every 250 ms until two scrapes in a row show the
// same record count (the pipeline has drained) or limit passes.
func settle(d *harness.Daemon, limit time.Duration) (Metrics, error) {
	deadline := time.Now().Add(limit)
	prev, err := scrape(d)
	if err != nil {
		return nil, err
	}
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		cur, err := scrape(d)
		if err != nil {
			return nil, err
		}
		if rc := cur.RecordCounter(); rc == "" || cur[rc] == prev[rc] {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

func scrape(d *harness.Daemon) (Metrics, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", "-sf", "--max-time", "5", d.URL("/metrics")).Output()
	if err != nil {
		// A daemon without a /metrics endpoint exposes no counters: an
		// empty set, not an error — the report then says capture is off.
		return Metrics{}, nil
	}
	m, err := ParseMetrics(strings.NewReader(string(out)))
	if err != nil {
		return nil, fmt.Errorf("parse weir-daemon /metrics: %w", err)
	}
	return m, nil
}

const nginxConf = `worker_processes 1;
daemon off;
master_process on;
pid {{DIR}}/nginx.pid;
error_log {{DIR}}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path {{DIR}}/body;
  proxy_temp_path {{DIR}}/proxy;
  fastcgi_temp_path {{DIR}}/fastcgi;
  uwsgi_temp_path {{DIR}}/uwsgi;
  scgi_temp_path {{DIR}}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  default_type text/plain;
  server {
    listen {{HTTP}};
    location / { return 200 "hello from the weir benchmark\n"; }
  }
  server {
    listen {{H2C}} http2;
    location / { return 200 "hello from the weir benchmark\n"; }
  }
  # HTTPS: TLS 1.3 only, ALPN offers h2 and http/1.1 (listen ... http2).
  # One handshake per keep-alive connection, so no session cache.
  server {
    listen {{HTTPS}} ssl http2;
    ssl_protocols TLSv1.3;
    ssl_certificate {{CERT}};
    ssl_certificate_key {{KEY}};
    location / { return 200 "hello from the weir benchmark\n"; }
  }
}
`

// nginxConfig is nginxConf for an nginx whose prefix (pid, logs, temp
// files) is dir, serving HTTPS with the certificate and key files given.
func nginxConfig(dir, cert, key string) string {
	return strings.NewReplacer("{{DIR}}", dir, "{{HTTP}}", strconv.Itoa(httpPort), "{{H2C}}", strconv.Itoa(h2cPort),
		"{{HTTPS}}", strconv.Itoa(httpsPort), "{{CERT}}", cert, "{{KEY}}", key).Replace(nginxConf)
}

// startNginx runs nginx in pod srv and waits until every port answers from
// pod cli (HTTPS over both ALPN protocols, TLS 1.3).
func startNginx(t *testing.T, srv, cli *harness.Pod, ip string) {
	t.Helper()
	dir := t.TempDir()
	cert, key := peers.SelfSignedCert(t, dir)
	conf := nginxConfig(dir, cert, key)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatalf("write nginx.conf: %v", err)
	}
	proc := srv.Start(t, "nginx", "nginx", "-e", "stderr", "-p", dir, "-c", path)
	deadline := time.Now().Add(10 * time.Second)
	for _, probe := range [][]string{
		{"curl", "-sf", "--max-time", "2", fmt.Sprintf("http://%s:%d/", ip, httpPort)},
		{"curl", "-sf", "--max-time", "2", "--http2-prior-knowledge", fmt.Sprintf("http://%s:%d/", ip, h2cPort)},
		// -k: self-signed. -w proves the protocol each ALPN choice got.
		{"curl", "-skf", "--max-time", "2", "--tlsv1.3", "--http2", "-w", "HTTP/%{http_version}", fmt.Sprintf("https://%s:%d/", ip, httpsPort)},
		{"curl", "-skf", "--max-time", "2", "--tlsv1.3", "--http1.1", "-w", "HTTP/%{http_version}", fmt.Sprintf("https://%s:%d/", ip, httpsPort)},
	} {
		want := ""
		if slices.Contains(probe, "--http2") {
			want = "HTTP/2"
		} else if slices.Contains(probe, "--http1.1") {
			want = "HTTP/1.1"
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			out, err := cli.Exec(ctx, probe...)
			cancel()
			if err == nil && strings.Contains(string(out), "weir benchmark") && strings.HasSuffix(string(out), want) {
				break
			}
			if exited, werr := proc.Exited(); exited {
				t.Fatalf("nginx exited (%v): %s", werr, proc.Output())
			}
			if time.Now().After(deadline) {
				t.Fatalf("nginx not answering %v: %v: %s", probe, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func runWrkArgs(t *testing.T, cli *harness.Pod, ip string, d time.Duration) (LoadResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+runSlack)
	defer cancel()
	out, err := cli.Exec(ctx, "wrk", "-t1", "-c32", "-d"+secs(d), "--latency", fmt.Sprintf("http://%s:%d/", ip, httpPort))
	if err != nil {
		return LoadResult{}, fmt.Errorf("wrk: %w", err)
	}
	return ParseWrk(string(out))
}

func runWrk(t *testing.T, cli *harness.Pod, ip string, d time.Duration) (LoadResult, error) {
	t.Helper()
	r, err := runWrkArgs(t, cli, ip, d)
	if err != nil {
		return r, err
	}
	if r.Errors > 0 {
		return r, fmt.Errorf("wrk saw %d errors or non-2xx responses", r.Errors)
	}
	return r, nil
}

// runH2load runs h2load against url for d; rpsPerClient > 0 paces each of
// the 16 clients. Percentiles come from h2load's per-request log. Over
// https it checks that TLS 1.3 and ALPN h2 were negotiated.
func runH2load(t *testing.T, cli *harness.Pod, url string, d time.Duration, rpsPerClient int) (LoadResult, error) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "h2load.log")
	args := []string{"h2load", "-c16", "-m10", "-D", strconv.Itoa(int(d.Seconds())), "--log-file=" + logPath}
	if rpsPerClient > 0 {
		args = append(args, "--rps="+strconv.Itoa(rpsPerClient))
	}
	args = append(args, url)
	ctx, cancel := context.WithTimeout(context.Background(), d+runSlack)
	defer cancel()
	out, err := cli.Exec(ctx, args...)
	if err != nil {
		return LoadResult{}, fmt.Errorf("h2load: %w", err)
	}
	r, err := ParseH2load(string(out))
	if err != nil {
		return r, err
	}
	if r.Errors > 0 {
		return r, fmt.Errorf("h2load saw %d failed requests:\n%s", r.Errors, out)
	}
	if strings.HasPrefix(url, "https:") {
		if proto, alpn := H2loadTLS(string(out)); proto != "TLSv1.3" || alpn != "h2" {
			return r, fmt.Errorf("h2load negotiated %q with ALPN %q, want TLSv1.3 and h2:\n%s", proto, alpn, out)
		}
	}
	f, err := os.Open(logPath)
	if err != nil {
		return r, fmt.Errorf("open h2load log: %w", err)
	}
	defer f.Close()
	r.P50, r.P99, err = ParseH2loadLog(f)
	return r, err
}

// holdConns opens n idle keep-alive connections from cli to a Go server in
// srv with the daemon up, and reports the daemon's memory.
func holdConns(t *testing.T, d *harness.Daemon, srv, cli *harness.Pod, ip string, n int) *ConnsResult {
	t.Helper()
	res := &ConnsResult{N: n}
	pid := d.Pid()
	self, err := os.Executable()
	if err != nil {
		t.Fatalf("locate test binary: %v", err)
	}
	helper := func(p *harness.Pod, mode, addr string) *harness.Process {
		cmd := p.Command(context.Background(), self)
		cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperAddr+"="+addr,
			helperCount+"="+strconv.Itoa(n), helperLife+"="+connsLife.String())
		return harness.StartProcess(t, mode, cmd)
	}
	before, err := scrape(d)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ReadProcStats(pid)
	if err != nil {
		t.Fatal(err)
	}
	res.RSSBefore = st.RSS

	sp := helper(srv, "conns-server", fmt.Sprintf(":%d", connsPort))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = sp.WaitOutput(ctx, ServerReadyLine)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cp := helper(cli, "conns-client", fmt.Sprintf("%s:%d", ip, connsPort))
	ctx, cancel = context.WithTimeout(context.Background(), connsLife)
	err = cp.WaitOutput(ctx, HeldLine)
	cancel()
	if err != nil {
		res.Err = err.Error()
		t.Errorf("%d connections: %v", n, err)
		return res
	}
	res.OpenedIn = time.Since(start)
	// Let the daemon process the opens (and any periodic work) while they
	// are all held.
	time.Sleep(2 * time.Second)
	st, err = ReadProcStats(pid)
	if err != nil {
		t.Fatal(err)
	}
	res.RSSHeld, res.HWM = st.RSS, st.HWM
	after, err := scrape(d)
	if err != nil {
		t.Fatal(err)
	}
	res.LostDeltas = Delta(before, after, after.LossNames())
	if err := cp.Stop(); err != nil {
		t.Logf("stop conns client: %v", err)
	}
	if err := sp.Stop(); err != nil {
		t.Logf("stop conns server: %v", err)
	}
	t.Logf("%d connections: daemon RSS %s before, %s held, peak %s (opened in %v)",
		n, mb(res.RSSBefore), mb(res.RSSHeld), mb(res.HWM), res.OpenedIn)
	return res
}

func parserResults(path string) ([]GoBench, string) {
	if path == "" {
		return nil, "WEIR_BENCH_PARSER_OUT not set (run.sh runs the parser benchmarks and sets it)."
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Sprintf("read %s: %v", path, err)
	}
	res := ParseGoBench(string(b))
	if len(res) == 0 {
		return nil, "no benchmark lines in the parser benchmark output:\n" + string(b)
	}
	return res, ""
}

type profileResult struct {
	split ProfileSplit
	err   error
}

// cpuProfile takes a CPU profile of the daemon for d (its --pprof
// endpoint) and splits it by stage.
func cpuProfile(dm *harness.Daemon, d time.Duration, profileDir, scenario string) profileResult {
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	url := dm.URL(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Round(time.Second).Seconds())))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return profileResult{err: err}
	}
	st0, err := ReadProcStats(dm.Pid())
	if err != nil {
		return profileResult{err: err}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return profileResult{err: fmt.Errorf("CPU profile: %w", err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return profileResult{err: fmt.Errorf("CPU profile: %s: %s", resp.Status, b)}
	}
	// The handler writes the profile once it has stopped: the body
	// arrives after the profiled span.
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return profileResult{err: fmt.Errorf("CPU profile: %w", err)}
	}
	st1, err := ReadProcStats(dm.Pid())
	if err != nil {
		return profileResult{err: err}
	}
	if profileDir != "" {
		name := "weir-daemon-" + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, scenario) + ".pprof"
		if err := os.WriteFile(filepath.Join(profileDir, name), b, 0o644); err != nil {
			return profileResult{err: fmt.Errorf("keep CPU profile: %w", err)}
		}
	}
	p, err := profile.ParseData(b)
	if err != nil {
		return profileResult{err: fmt.Errorf("CPU profile: %w", err)}
	}
	split, err := SplitProfile(p)
	split.ProcessCPU = int64(st1.CPU - st0.CPU)
	return profileResult{split: split, err: err}
}

// measureCost runs load once without and once with the daemon (d, stopped
// on entry and on return) to account for where the CPU goes: see Cost.
// bpf_stats is on only during the second run, which no other figure uses,
// since the accounting itself costs every program run two clock reads.
//
// The daemon runs with --pprof: a CPU profile taken during the second run
// for most of its length (loadFor) splits the daemon's CPU by stage.
func measureCost(t *testing.T, d *harness.Daemon, scenario string, loadFor time.Duration, profileDir string, load func() (LoadResult, error)) Cost {
	t.Helper()
	c := Cost{Scenario: scenario}
	fail := func(err error) Cost { c.Err = err.Error(); t.Errorf("cost of %s: %v", scenario, err); return c }
	perReq := func(d time.Duration, l LoadResult) time.Duration {
		return time.Duration(float64(d) / float64(max(l.Requests+l.Errors, 1)))
	}

	busy0, err := ReadBusyCPU()
	if err != nil {
		return fail(err)
	}
	base, err := load()
	if err != nil {
		return fail(fmt.Errorf("baseline: %w", err))
	}
	busy1, err := ReadBusyCPU()
	if err != nil {
		return fail(err)
	}
	c.BaseCPU = perReq(busy1-busy0, base)

	foreign, err := ProgramIDs()
	if err != nil {
		return fail(err)
	}
	startDaemon(t, d)
	defer stopDaemon(t, d)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fail(fmt.Errorf("enable bpf_stats: %w", err))
	}
	defer stats.Close()
	runs0, err := programRuns(foreign)
	if err != nil {
		return fail(err)
	}
	d0, err := ReadProcStats(d.Pid())
	if err != nil {
		return fail(err)
	}
	self0, err := ReadProcStats(os.Getpid())
	if err != nil {
		return fail(err)
	}
	if busy0, err = ReadBusyCPU(); err != nil {
		return fail(err)
	}
	prof := make(chan profileResult, 1)
	go func() { prof <- cpuProfile(d, max(loadFor-time.Second, time.Second), profileDir, scenario) }()
	w, err := load()
	if err != nil {
		return fail(fmt.Errorf("with Weir: %w", err))
	}
	if pr := <-prof; pr.err != nil {
		c.StagesErr = pr.err.Error()
		t.Logf("cost of %s: no stage split: %v", scenario, pr.err)
	} else {
		c.Stages = &pr.split
	}
	// The daemon's work for the last requests belongs to them too.
	if _, err := settle(d, drainLimit); err != nil {
		return fail(err)
	}
	if busy1, err = ReadBusyCPU(); err != nil {
		return fail(err)
	}
	runs1, err := programRuns(foreign)
	if err != nil {
		return fail(err)
	}
	d1, err := ReadProcStats(d.Pid())
	if err != nil {
		return fail(err)
	}
	self1, err := ReadProcStats(os.Getpid())
	if err != nil {
		return fail(err)
	}
	c.WeirCPU = perReq(busy1-busy0, w)
	c.Daemon = perReq(d1.CPU-d0.CPU, w)
	c.Receiver = perReq(self1.CPU-self0.CPU, w)
	c.BPF, c.Top, c.UprobeRuns = bpfDelta(runs0, runs1, float64(max(w.Requests+w.Errors, 1)), 5)
	t.Logf("cost of %s: %v CPU per request without Weir, %v with (eBPF %v, daemon %v, receiver %v, rest %v; %.2f uprobe runs per request); bound %.3f",
		scenario, c.BaseCPU, c.WeirCPU, c.BPF, c.Daemon, c.Receiver, c.Rest(), c.UprobeRuns, c.Bound())
	return c
}
