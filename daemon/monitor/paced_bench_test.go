package monitor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/export/skywalking"
)

// What the daemon's burstiness costs the pods next to it (issue 16): the
// ring is drained every poll interval, all at once, and the records of a
// paced load arrive as one burst of pipeline and export work. On a node with
// few cores the burst takes a core that an application thread would have
// woken onto. BenchmarkPacedDrain measures that as the wakeup delay of an
// application in another process (appEnv): threads that sleep until a
// deadline, note how late they woke, and do a little work, as a paced
// client or a server's worker does. Delay of a wakeup is what the
// application's latency percentiles gain from the daemon; the kernel adds
// it, so it can only be measured with real threads on real cores, and the
// figures are comparable only within one run (interleave settings).

// appEnv makes the test binary the paced application of BenchmarkPacedDrain.
const appEnv = "WEIR_MONITOR_BENCH_APP"

// The paced application: appThreads threads, each waking every appPeriod
// and then busy for appBusy (together 0.6 of a core), like h2load and nginx
// at a paced 10k requests/s on the bench's 2-core VM.
const (
	appThreads = 2
	appPeriod  = 250 * time.Microsecond
	appBusy    = 75 * time.Microsecond
)

func init() {
	// The application runs before any test, in a process of its own, so
	// that the daemon's GOMAXPROCS and priority are not its own.
	if os.Getenv(appEnv) == "" {
		return
	}
	if err := serveApp(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "paced app:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// appThread is one thread of the paced application and the wakeup delays
// it measured since the last reset.
type appThread struct {
	mu    sync.Mutex
	delay []time.Duration
}

// serveApp runs the paced application until in ends. Each line of in is a
// command: "reset" forgets the delays so far, "report" writes the count and
// the 50th, 99th and 99.9th percentiles of the delays (ns) as one line.
func serveApp(in io.Reader, out io.Writer) error {
	threads := make([]*appThread, appThreads)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range threads {
		t := &appThread{delay: make([]time.Duration, 0, 1<<16)}
		threads[i] = t
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.run(stop)
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	if _, err := fmt.Fprintln(out, "ready"); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var all []time.Duration
		for _, t := range threads {
			t.mu.Lock()
			if sc.Text() == "reset" {
				t.delay = t.delay[:0]
			} else {
				all = append(all, t.delay...)
			}
			t.mu.Unlock()
		}
		slices.Sort(all)
		q := func(p float64) int64 {
			if len(all) == 0 {
				return 0
			}
			return int64(all[min(len(all)-1, int(p*float64(len(all))))])
		}
		if _, err := fmt.Fprintln(out, len(all), q(0.50), q(0.99), q(0.999)); err != nil {
			return err
		}
	}
	return sc.Err()
}

// run wakes at every period's deadline with an absolute clock_nanosleep on
// a thread of its own, so that the delay is the kernel's (timer and run
// queue) and not the Go scheduler's.
func (t *appThread) run(stop <-chan struct{}) {
	runtime.LockOSThread()
	// Without it a sleep ends up to 50 µs late by design (the default
	// timer slack): the delays would be mostly the slack.
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	var now unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
	next := now.Nano()
	for {
		select {
		case <-stop:
			return
		default:
		}
		next += int64(appPeriod)
		ts := unix.NsecToTimespec(next)
		for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil) == unix.EINTR {
		}
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
		woke := now.Nano()
		t.mu.Lock()
		if len(t.delay) < cap(t.delay) {
			t.delay = append(t.delay, time.Duration(woke-next))
		}
		t.mu.Unlock()
		for now.Nano() < woke+int64(appBusy) {
			_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
		}
		if now.Nano() > next+int64(appPeriod) {
			next = now.Nano() // late by more than a period: no catching up
		}
	}
}

type appProc struct {
	in  io.WriteCloser
	out *bufio.Reader
}

func startApp(b *testing.B) *appProc {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), appEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	a := &appProc{in: in, out: bufio.NewReader(out)}
	if line, err := a.out.ReadString('\n'); err != nil || strings.TrimSpace(line) != "ready" {
		b.Fatalf("paced app: %q, %v", line, err)
	}
	return a
}

// ask sends cmd and returns the reply's count and percentiles (ns).
func (a *appProc) ask(b *testing.B, cmd string) []int64 {
	if _, err := io.WriteString(a.in, cmd+"\n"); err != nil {
		b.Fatal(err)
	}
	line, err := a.out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	var v []int64
	for f := range strings.FieldsSeq(line) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatalf("paced app said %q", line)
		}
		v = append(v, n)
	}
	return v
}

// pacedPoll and pacedRate are the daemon's default poll interval and the
// paced rate of make bench: each drain is 100 requests, 400 records.
const (
	pacedPoll = 10 * time.Millisecond
	pacedRate = 10_000
	// pacedSliceGap is the pause between slices of a paced drain.
	pacedSliceGap = 200 * time.Microsecond
)

// BenchmarkPacedDrain is the paced application's wakeup delay while the
// daemon's work runs as the ring reader hands it over: every pacedPoll, the
// records of pacedPoll of requests at pacedRate decoded into the pipeline,
// the Aggregator and the SkyWalking exporter, which sends to the bench's
// receiver in a process of its own. One op is one drain. Sub-benchmarks:
//
//   - idle: the application alone (the daemon's process sleeps): the
//     machine's own delay, the baseline of the ratios;
//   - drain: the daemon's work at the process's GOMAXPROCS;
//   - drain-procs1: with GOMAXPROCS 1 (config maxProcs);
//   - drain-nice10: with every thread of the daemon at nice 10, so that a
//     waking application thread preempts it.
//
// Metrics: app-p50-us, app-p99-us, app-p999-us (wakeup delay percentiles),
// cpu-ns/req (the daemon's process CPU per request, receiver excluded).
// Run several times, interleaved: the delays depend on what else the
// machine runs.
func BenchmarkPacedDrain(b *testing.B) {
	for _, c := range []struct {
		name  string
		idle  bool
		procs int
		nice  int
		slice int
	}{
		{name: "idle", idle: true},
		{name: "drain"},
		{name: "drain-procs1", procs: 1},
		{name: "drain-nice10", nice: 10},
		{name: "drain-nice19", nice: 19},
		{name: "drain-procs1-nice19", procs: 1, nice: 19},
		{name: "drain-sliced", slice: 25},
	} {
		b.Run(c.name, func(b *testing.B) {
			if c.procs > 0 {
				old := runtime.GOMAXPROCS(c.procs)
				b.Cleanup(func() { runtime.GOMAXPROCS(old) })
			}
			if c.nice != 0 {
				// Privileged when it lowers the value again (CI is root).
				setNiceAll(b, c.nice)
				b.Cleanup(func() { setNiceAll(b, 0) })
			}
			benchmarkPacedDrain(b, c.idle, c.slice)
		})
	}
}

// reniceProc sets the nice value of every thread of process pid.
func reniceProc(b *testing.B, pid, nice int) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && err != unix.ESRCH {
				b.Fatalf("setpriority(%d, %d): %v", tid, nice, err)
			}
		}
	}
}

// setNiceAll sets the nice value of every thread of the process: on Linux
// it is a thread's, and threads made later inherit their creator's.
func setNiceAll(b *testing.B, nice int) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && err != unix.ESRCH {
			b.Fatalf("setpriority(%d, %d): %v", tid, nice, err)
		}
	}
}

func benchmarkPacedDrain(b *testing.B, idle bool, slice int) {
	r := startReceiverProc(b)
	// The bench's receiver stands for an OAP on another node: at nice 19
	// it takes no core the application wants, and the delays measured
	// are the daemon's. (Privileged, like setNiceAll.)
	reniceProc(b, r.pid, 19)
	e, err := skywalking.New(skywalking.Config{
		OAP: r.addr, Insecure: true, NodeName: "node-a", BootTime: testBoot,
		NetInterfaces: []skywalking.NetInterface{{Name: "lo", Index: 1, MTU: 65536}},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	m := benchPipeline(b, e)
	app := startApp(b)
	perDrain := int(pacedRate * pacedPoll / time.Second)
	tick := time.NewTicker(pacedPoll)
	defer tick.Stop()
	var cpu time.Duration
	n := 0
	if idle {
		app.ask(b, "reset")
		cpu = processCPU(b)
		for b.Loop() {
			<-tick.C
		}
		n = b.N * perDrain
	} else {
		cpu, n = runPaced(b, m, perDrain, slice, tick.C, func() { app.ask(b, "reset") })
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(n), "cpu-ns/req")
	v := app.ask(b, "report")
	if len(v) != 4 || v[0] == 0 {
		b.Fatalf("paced app reported %v", v)
	}
	b.ReportMetric(float64(v[1])/1e3, "app-p50-us")
	b.ReportMetric(float64(v[2])/1e3, "app-p99-us")
	b.ReportMetric(float64(v[3])/1e3, "app-p999-us")
}

// runPaced is runBenchConns' HTTP/1.1 loop a drain at a time: each op
// feeds perDrain requests' records into m's table at once, as the reader
// does after a poll, then waits for the next tick; with slice > 0 it sleeps
// pacedSliceGap after every slice requests of a drain (a paced drain). ready
// is called once the
// connections are open, before the first drain. It returns the process CPU
// time when the drains began and the number of requests made.
func runPaced(b *testing.B, m *Monitor, perDrain, slice int, tick <-chan time.Time, ready func()) (time.Duration, int) {
	req, resp := []byte(benchRequest), []byte(benchResponse)
	sink := m.table
	ring := &benchRing{b: b, sink: sink}
	conns := make([]*benchConn, benchConns)
	ts := event.Timestamp(1_000_000)
	for i := range conns {
		port := uint16(40000 + i)
		c := &benchConn{
			client: connGen{id: event.ConnID(2*i + 1), proc: proc(2)},
			server: connGen{id: event.ConnID(2*i + 2), proc: proc(1)},
		}
		cli := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.3"), port).String()
		sink.ConnOpen(c.client.open(event.RoleClient, cli, "10.0.0.2:80", 1000))
		sink.ConnOpen(c.server.open(event.RoleServer, "10.0.0.2:80", cli, 1100))
		conns[i] = c
	}
	ready()
	<-tick
	i := 0
	b.ReportAllocs()
	cpu := processCPU(b)
	for b.Loop() {
		for k := range perDrain {
			if slice > 0 && k > 0 && k%slice == 0 {
				time.Sleep(pacedSliceGap)
			}
			c := conns[i%len(conns)]
			i++
			ring.syscall(&c.client, event.SysWrite, event.Egress, req, ts, ts+5_000)
			ring.syscall(&c.server, event.SysRead, event.Ingress, req, ts+20_000, ts+22_000)
			ring.syscall(&c.server, event.SysWritev, event.Egress, resp, ts+40_000, ts+48_000)
			ring.syscall(&c.client, event.SysRead, event.Ingress, resp, ts+60_000, ts+62_000)
			ts += 100_000
		}
		<-tick
	}
	return cpu, i
}
