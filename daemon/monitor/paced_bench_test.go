package monitor

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/bpf/event"
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
	_, in, out := startChild(b, appEnv)
	a := &appProc{in: in, out: out}
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

// pacedSetting is one way of running the daemon's drains.
type pacedSetting struct {
	name  string
	idle  bool // no drains: the application alone
	procs int  // GOMAXPROCS, 0: the process's
	nice  int  // nice value of every daemon thread
	slice int  // requests per slice of a drain, 0: the drain at once
}

// pacedSettings are the settings BenchmarkPacedDrain rotates through.
var pacedSettings = []pacedSetting{
	{name: "idle", idle: true},
	{name: "drain"},
	{name: "procs1", procs: 1},
	{name: "nice10", nice: 10},
	{name: "nice19", nice: 19},
	{name: "procs1-nice19", procs: 1, nice: 19},
	{name: "sliced", slice: 25},
}

// pacedPhase is how many polls each setting runs for in a round.
const pacedPhase = 50

// BenchmarkPacedDrain is the paced application's wakeup delay while the
// daemon's work runs as the ring reader hands it over: every pacedPoll, the
// records of pacedPoll of requests at pacedRate are decoded into the
// pipeline, the Aggregator and the SkyWalking exporter, which sends to the
// bench's receiver in a process of its own. One op is a round: pacedPhase
// polls under each of pacedSettings in turn:
//
//   - idle: the application alone (the daemon's process sleeps);
//   - drain: the daemon's work at the process's GOMAXPROCS;
//   - procs1: with GOMAXPROCS 1 (config maxProcs);
//   - nice10, nice19: every thread of the daemon at that nice value, so
//     that a waking application thread preempts it;
//   - procs1-nice19: both;
//   - sliced: each drain in slices of 25 requests with pacedSliceGap
//     between them (a paced drain).
//
// Rotating every half second puts every setting under the same noise from
// the rest of the machine, which on a shared VM moves the delays more than
// the settings do. Metrics, for each setting, medians over the rounds:
// <setting>-p99-us and -p50-us (wakeup delay percentiles of the phase), and
// for the drains <setting>-p99-x, the phase's p99 over that of the round's
// idle phase, and <setting>-cpu-ns/req, the daemon's process CPU per
// request (the receiver's excluded). Changing the nice value back is
// privileged (CI is root).
func BenchmarkPacedDrain(b *testing.B) {
	r := startReceiverProc(b)
	// The bench's receiver stands for an OAP on another node: at nice 19
	// it takes no core the application wants, and the delays measured
	// are the daemon's.
	reniceProc(b, r.pid, 19)
	e := runExporter(b, r.addr)
	m := benchPipeline(b, e)
	app := startApp(b)
	d := newDrainer(b, m)
	perDrain := int(pacedRate * pacedPoll / time.Second)
	tick := time.NewTicker(pacedPoll)
	defer tick.Stop()
	procs := runtime.GOMAXPROCS(0)
	type phase struct{ p50, p99, cpu float64 }
	got := make(map[string][]phase)
	var ratios = make(map[string][]float64)
	b.ReportAllocs()
	for b.Loop() {
		var idle float64
		for _, st := range pacedSettings {
			runtime.GOMAXPROCS(cmp.Or(st.procs, procs))
			setNiceAll(b, st.nice)
			<-tick.C
			app.ask(b, "reset")
			cpu := processCPU(b)
			for range pacedPhase {
				if !st.idle {
					d.drain(perDrain, st.slice)
				}
				<-tick.C
			}
			used := processCPU(b) - cpu
			v := app.ask(b, "report")
			if len(v) != 4 || v[0] == 0 {
				b.Fatalf("paced app reported %v", v)
			}
			ph := phase{p50: float64(v[1]) / 1e3, p99: float64(v[2]) / 1e3}
			if st.idle {
				idle = ph.p99
			} else {
				ph.cpu = float64(used) / float64(pacedPhase*perDrain)
				ratios[st.name] = append(ratios[st.name], ph.p99/idle)
			}
			got[st.name] = append(got[st.name], ph)
		}
	}
	b.StopTimer()
	runtime.GOMAXPROCS(procs)
	setNiceAll(b, 0)
	med := func(v []float64) float64 {
		slices.Sort(v)
		return v[len(v)/2]
	}
	for _, st := range pacedSettings {
		var p50, p99, cpu []float64
		for _, ph := range got[st.name] {
			p50, p99, cpu = append(p50, ph.p50), append(p99, ph.p99), append(cpu, ph.cpu)
		}
		b.ReportMetric(med(p50), st.name+"-p50-us")
		b.ReportMetric(med(p99), st.name+"-p99-us")
		if !st.idle {
			b.ReportMetric(med(ratios[st.name]), st.name+"-p99-x")
			b.ReportMetric(med(cpu), st.name+"-cpu-ns/req")
		}
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
	reniceProc(b, os.Getpid(), nice)
}

// drainer feeds runBenchConns' HTTP/1.1 requests into a Monitor's table a
// drain at a time, as the ring reader does after a poll.
type drainer struct {
	ring      *benchRing
	conns     []*benchConn
	req, resp []byte
	ts        event.Timestamp
	n         int // requests made
}

// newDrainer opens benchConns connections from the client pod to the
// server pod.
func newDrainer(b *testing.B, m *Monitor) *drainer {
	d := &drainer{
		ring: &benchRing{b: b, sink: m.table}, conns: make([]*benchConn, benchConns),
		req: []byte(benchRequest), resp: []byte(benchResponse), ts: 1_000_000,
	}
	for i := range d.conns {
		port := uint16(40000 + i)
		c := &benchConn{
			client: connGen{id: event.ConnID(2*i + 1), proc: proc(2)},
			server: connGen{id: event.ConnID(2*i + 2), proc: proc(1)},
		}
		cli := netip.AddrPortFrom(netip.MustParseAddr("10.0.0.3"), port).String()
		m.table.ConnOpen(c.client.open(event.RoleClient, cli, "10.0.0.2:80", 1000))
		m.table.ConnOpen(c.server.open(event.RoleServer, "10.0.0.2:80", cli, 1100))
		d.conns[i] = c
	}
	return d
}

// drain makes n requests on the connections in turn; with slice > 0 it
// sleeps pacedSliceGap after every slice requests.
func (d *drainer) drain(n, slice int) {
	for k := range n {
		if slice > 0 && k > 0 && k%slice == 0 {
			time.Sleep(pacedSliceGap)
		}
		c := d.conns[d.n%len(d.conns)]
		d.n++
		ts := d.ts
		d.ring.syscall(&c.client, event.SysWrite, event.Egress, d.req, ts, ts+5_000)
		d.ring.syscall(&c.server, event.SysRead, event.Ingress, d.req, ts+20_000, ts+22_000)
		d.ring.syscall(&c.server, event.SysWritev, event.Egress, d.resp, ts+40_000, ts+48_000)
		d.ring.syscall(&c.client, event.SysRead, event.Ingress, d.resp, ts+60_000, ts+62_000)
		d.ts += 100_000
	}
}
