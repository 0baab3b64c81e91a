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
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/daemon/export/skywalking"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/identity"
	aggregate "github.com/weirnet/weir/daemon/metrics"
	"github.com/weirnet/weir/tests/bench"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"
)

// benchResolver names pods the way the daemon's identity.Resolver does: it
// has a generation and names containers, so the pipeline takes the same
// paths as in production.
type benchResolver struct {
	identity.Owner
	gen atomic.Uint64
}

func (r *benchResolver) Generation() uint64 { return r.gen.Load() }

func (r *benchResolver) ContainerName(sandboxID, containerID string) string { return "app" }

// What wrk sends and nginx answers in the daemon's load benchmark: small
// keep-alive exchanges, the response headers and body in one writev.
const (
	benchRequest  = "GET / HTTP/1.1\r\nHost: 10.0.0.2:80\r\n\r\n"
	benchResponse = "HTTP/1.1 200 OK\r\nServer: nginx/1.27.3\r\nDate: Wed, 25 Nov 2026 04:00:00 GMT\r\n" +
		"Content-Type: text/html\r\nContent-Length: 12\r\nLast-Modified: Tue, 26 Nov 2024 16:05:55 GMT\r\n" +
		"Connection: keep-alive\r\nETag: \"6745f1a3-c\"\r\nAccept-Ranges: bytes\r\n\r\nhello world\n"
)

// benchConns is how many keep-alive connections the benchmark's client
// keeps open, like wrk -c 32.
const benchConns = 32

// benchPipeline returns a Monitor built like the daemon's (the metrics
// Aggregator as its consumer, a resolver with generations and container
// names) over a fake collector, with a server pod and a client pod enrolled.
// Its table is the sink the eBPF reader would feed.
func benchPipeline(b *testing.B, more ...flow.Consumer) *Monitor {
	b.Helper()
	daemonGC(b)
	agg, err := aggregate.New(aggregate.Options{})
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(Options{
		Config: config.Default(), Collector: newFakeCollector(), Consumers: append([]flow.Consumer{agg}, more...),
		Services: &benchResolver{}, BootTime: testBoot, Clock: func() event.Timestamp { return 0 },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	// The daemon runs the Aggregator as a component: it keeps the
	// current time step.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agg.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	m.PodEnrolled(serverPod)
	m.PodEnrolled(clientPod)
	return m
}

// daemonGC gives the benchmark the garbage collector settings weir-daemon
// runs with (config.GC: GOGC and the soft memory limit), so that cpu-ns/op
// counts the collection the daemon pays. GOGC or GOMEMLIMIT in the
// environment win, as they do for the daemon (for comparing settings).
func daemonGC(b *testing.B) {
	_, envGC := os.LookupEnv("GOGC")
	_, envLimit := os.LookupEnv("GOMEMLIMIT")
	percent, limit := config.Default().GC(envGC, envLimit)
	if percent > 0 {
		old := debug.SetGCPercent(percent)
		b.Cleanup(func() { debug.SetGCPercent(old) })
	}
	if limit > 0 {
		old := debug.SetMemoryLimit(limit)
		b.Cleanup(func() { debug.SetMemoryLimit(old) })
	}
}

// processCPU returns the CPU time the process used so far, garbage
// collection included. Per op it is the figure the daemon's budget is
// about, and unlike ns/op it does not grow when other processes take the
// machine's cores.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchConn is one TCP connection as both of its captured ends see it: the
// client's socket in the wrk pod and the server's in the nginx pod.
type benchConn struct {
	client, server connGen
	requests       int // made so far
}

// benchRing stands for the ring buffer between the kernel side and the
// reader: each syscall's chunk is written as the kernel side writes its
// record (bpf.AppendDataRecord), then decoded by the reader's decoder
// (bpf.Decoder) into the sink, so an op includes the decode of its records
// and the allocations the decode makes.
type benchRing struct {
	b    *testing.B
	sink event.Sink
	dec  bpf.Decoder
	buf  []byte
	send event.SendMetrics
	recv event.RecvMetrics
}

// syscall has the reader decode the one chunk of a syscall moving p on g,
// with the kernel's metrics of the syscall, which ride on its last chunk.
func (r *benchRing) syscall(g *connGen, sys event.Syscall, dir event.Direction, p []byte, start, end event.Timestamp) {
	e := event.Data{
		Conn: g.id, Proc: g.proc, FD: 5, Direction: dir, Syscall: sys, Seq: g.seq[dir], StreamOffset: g.off[dir],
		Size: uint32(len(p)), Payload: p, Start: start, End: end, Last: true,
	}
	if dir == event.Egress {
		r.send = event.SendMetrics{Measured: event.MetricPackets | event.MetricRetransmits, Packets: 1, PacketBytes: uint64(len(p)) + 66}
		e.Send = &r.send
	} else {
		r.recv = event.RecvMetrics{Measured: event.MetricPackets, Packets: 1, PacketBytes: uint64(len(p)) + 66}
		e.Recv = &r.recv
	}
	g.seq[dir]++
	g.off[dir] += uint64(len(p))
	r.buf = bpf.AppendDataRecord(r.buf[:0], e)
	if err := r.dec.Decode(r.buf, r.sink); err != nil {
		r.b.Fatal(err)
	}
}

// BenchmarkPipelineHTTP1KeepAlive is the daemon's user-space cost of one
// captured HTTP/1.1 request when both ends are monitored pods: what the
// eBPF reader hands to the pipeline for it, through the connection table,
// the HTTP/1.1 parser, the requests ring and the metrics Aggregator, as in
// the wrk-against-nginx load benchmark (32 keep-alive connections, small
// responses). One op is one request: the client's write, the server's
// read, the server's writev and the client's read, each one chunk carrying
// the syscall's kernel metrics, on connections taken in turn. Each chunk
// is decoded from the record the kernel side writes for it, by the
// reader's decoder (see benchRing); reading the ring buffer itself is not
// included.
//
// cpu-ns/op is the CPU time of the whole process per request, garbage
// collection on other cores included: the figure to hold against the
// daemon's CPU budget (0.2 cores at 10k requests/s is 20000 cpu-ns/op).
func BenchmarkPipelineHTTP1KeepAlive(b *testing.B) {
	req, resp := []byte(benchRequest), []byte(benchResponse)
	benchmarkPipeline(b, nil, nil, func(int) ([]byte, []byte) { return req, resp })
}

// h2cBench returns the start bytes of each side of an h2c connection and
// the generator of its streams, as h2load makes them.
func h2cBench() (clientStart, serverStart []byte, next func(stream int) ([]byte, []byte)) {
	settings := h2Frame(0x4, 0, 0, nil)
	clientStart = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), settings...)
	serverStart = append(slices.Clip(settings), h2Frame(0x4, 0x1, 0, nil)...) // SETTINGS, ACK
	// HPACK from the static table: GET, http, /, then :authority as a
	// literal; :status 200, then content-type and content-length.
	reqBlock := append([]byte{0x82, 0x86, 0x84, 0x01, 11}, "10.0.0.2:80"...)
	respBlock := append([]byte{0x88, 0x0f, 0x10, 9}, "text/html"...)
	respBlock = append(respBlock, 0x0f, 0x0d, 2, '1', '2')
	const endStream, endHeaders = 0x1, 0x4
	var req, resp []byte
	next = func(stream int) ([]byte, []byte) {
		id := uint32(2*stream + 1)
		req = h2AppendFrame(req[:0], 0x1, endStream|endHeaders, id, reqBlock)
		resp = h2AppendFrame(resp[:0], 0x1, endHeaders, id, respBlock)
		resp = h2AppendFrame(resp, 0x0, endStream, id, []byte("hello world\n"))
		return req, resp
	}
	return clientStart, serverStart, next
}

// BenchmarkPipelineHTTP2KeepAlive is BenchmarkPipelineHTTP1KeepAlive over
// h2c (prior knowledge, as h2load makes it): one op is one stream, a
// HEADERS frame from the client and a response HEADERS and DATA frame
// written together by the server.
func BenchmarkPipelineHTTP2KeepAlive(b *testing.B) {
	cs, ss, next := h2cBench()
	benchmarkPipeline(b, cs, ss, next)
}

// h2Frame returns an HTTP/2 frame.
func h2Frame(typ, flags byte, stream uint32, payload []byte) []byte {
	return h2AppendFrame(nil, typ, flags, stream, payload)
}

func h2AppendFrame(b []byte, typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	b = append(b, byte(n>>16), byte(n>>8), byte(n), typ, flags,
		byte(stream>>24), byte(stream>>16), byte(stream>>8), byte(stream))
	return append(b, payload...)
}

// benchmarkPipeline opens benchConns connections from the client pod to
// the server pod, has each side send its start bytes (if any) and then
// makes one request per op on the connections in turn; next returns the
// request and response bytes of a connection's n-th request.
func benchmarkPipeline(b *testing.B, clientStart, serverStart []byte, next func(n int) (req, resp []byte)) {
	m := benchPipeline(b)
	cpu, n := runBenchConns(b, m, clientStart, serverStart, next, nil)
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(n), "cpu-ns/op")
}

// runBenchConns feeds the requests of the benchmark's loop into m's table
// and returns the process CPU time when the loop began and the number of
// requests made. The timer is stopped when it returns.
//
// pace, when not nil, is called every 256 requests with the number made so
// far, to hold the loop back to what a consumer keeps up with.
func runBenchConns(b *testing.B, m *Monitor, clientStart, serverStart []byte, next func(n int) (req, resp []byte),
	pace func(n int)) (time.Duration, int) {
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
		if clientStart != nil {
			ring.syscall(&c.client, event.SysWrite, event.Egress, clientStart, ts, ts+5_000)
			ring.syscall(&c.server, event.SysRead, event.Ingress, clientStart, ts+20_000, ts+22_000)
			ring.syscall(&c.server, event.SysWrite, event.Egress, serverStart, ts+40_000, ts+48_000)
			ring.syscall(&c.client, event.SysRead, event.Ingress, serverStart, ts+60_000, ts+62_000)
			ts += 100_000
		}
		conns[i] = c
	}
	before := m.metrics.exchanges.Load()
	i := 0
	b.ReportAllocs()
	cpu := processCPU(b)
	for b.Loop() {
		c := conns[i%len(conns)]
		req, resp := next(c.requests)
		c.requests++
		i++
		ring.syscall(&c.client, event.SysWrite, event.Egress, req, ts, ts+5_000)
		ring.syscall(&c.server, event.SysRead, event.Ingress, req, ts+20_000, ts+22_000)
		ring.syscall(&c.server, event.SysWritev, event.Egress, resp, ts+40_000, ts+48_000)
		ring.syscall(&c.client, event.SysRead, event.Ingress, resp, ts+60_000, ts+62_000)
		ts += 100_000
		if pace != nil && i%256 == 0 {
			pace(i)
		}
	}
	b.StopTimer()
	if got, want := m.metrics.exchanges.Load()-before, uint64(2*i); got != want {
		b.Fatalf("%d exchanges delivered after %d requests, want %d", got, i, want)
	}
	return cpu, i
}

// BenchmarkDaemonHTTP1Export is BenchmarkPipelineHTTP1KeepAlive with what
// the daemon adds when it exports: the SkyWalking exporter as a second
// consumer, sending over real gRPC on loopback to the bench's receiver
// (tests/bench.Receiver, as `make bench` runs it) in a process of its own.
// An op ends when the receiver has every exchange of the loop, so cpu-ns/op
// includes encoding, the queue, the daemon's side of gRPC and the garbage
// collection all of it causes, and not the receiver's: the daemon's cost
// per request after the ring buffer.
func BenchmarkDaemonHTTP1Export(b *testing.B) {
	req, resp := []byte(benchRequest), []byte(benchResponse)
	benchmarkExport(b, nil, nil, func(int) ([]byte, []byte) { return req, resp })
}

// BenchmarkDaemonHTTP2Export is BenchmarkDaemonHTTP1Export over h2c.
func BenchmarkDaemonHTTP2Export(b *testing.B) {
	cs, ss, next := h2cBench()
	benchmarkExport(b, cs, ss, next)
}

// receiverEnv makes the test binary serve the bench's in-process OAP
// receiver (tests/bench.Receiver) for BenchmarkDaemon*Export, in a process
// of its own so that the benchmark's process CPU is the daemon's alone, as
// make bench reports the receiver on its own row.
const receiverEnv = "WEIR_MONITOR_BENCH_RECEIVER"

// serveReceiver runs the receiver: it writes its address as the first line
// of out, then answers each line of in with the HTTP protocol logs received
// so far, its process's CPU time in ns, and the messages, their bytes and
// the streams received so far, and returns at the end of in.
func serveReceiver(in io.Reader, out io.Writer) error {
	r, err := bench.StartReceiver()
	if err != nil {
		return err
	}
	defer r.Stop()
	if path := os.Getenv(receiverEnv + "_CPUPROFILE"); path != "" {
		// The receiver's own profile, to see what the bench's receiver
		// costs (it is test equipment, but it shares the cores).
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if _, err := fmt.Fprintln(out, r.Addr()); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return err
		}
		c := r.Counts()
		if _, err := fmt.Fprintln(out, c.HTTP, ru.Utime.Nano()+ru.Stime.Nano(), c.Messages, c.Bytes, c.Streams); err != nil {
			return err
		}
	}
	return sc.Err()
}

// receiverProc is the receiver in its own process.
type receiverProc struct {
	pid  int
	addr string
	in   io.WriteCloser
	out  *bufio.Reader
}

func startReceiverProc(b *testing.B) *receiverProc {
	pid, in, out := startChild(b, receiverEnv)
	r := &receiverProc{pid: pid, in: in, out: out}
	line, err := r.out.ReadString('\n')
	if err != nil {
		b.Fatalf("receiver process: %v", err)
	}
	r.addr = strings.TrimSpace(line)
	return r
}

// runExporter runs a SkyWalking exporter sending to the receiver at addr
// until the benchmark ends.
func runExporter(b *testing.B, addr string) *skywalking.Exporter {
	e, err := skywalking.New(skywalking.Config{
		OAP: addr, Insecure: true, NodeName: "node-a", BootTime: testBoot,
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
	return e
}

// startChild runs this test binary again as a child with env set to 1 (the
// child's TestMain looks for it), its stdin and stdout piped to the
// caller, and stops it when the benchmark ends.
func startChild(b *testing.B, env string) (pid int, in io.WriteCloser, out *bufio.Reader) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), env+"=1")
	cmd.Stderr = os.Stderr
	in, err = cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	return cmd.Process.Pid, in, bufio.NewReader(outPipe)
}

// http returns the HTTP protocol logs the receiver has so far. The pacing
// loop asks often: it reads the first figure of the line only.
func (r *receiverProc) http(b *testing.B) int64 {
	line := r.ask(b)
	f, _, _ := strings.Cut(line, " ")
	n, err := strconv.ParseInt(f, 10, 64)
	if err != nil {
		b.Fatalf("receiver process said %q: %v", line, err)
	}
	return n
}

// ask asks the receiver process for its state line.
func (r *receiverProc) ask(b *testing.B) string {
	if _, err := io.WriteString(r.in, "\n"); err != nil {
		b.Fatal(err)
	}
	line, err := r.out.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimSpace(line)
}

// receiverState is what the receiver process reports.
type receiverState struct {
	http     int64         // HTTP protocol logs received
	cpu      time.Duration // the receiver process's CPU time
	messages int64         // messages received
	bytes    int64         // their bytes
	streams  int64         // streams (the exporter's batches) received
}

// state returns what the receiver has received so far and the CPU time its
// process used.
func (r *receiverProc) state(b *testing.B) receiverState {
	line := r.ask(b)
	var s receiverState
	var cpu int64
	if _, err := fmt.Sscan(line, &s.http, &cpu, &s.messages, &s.bytes, &s.streams); err != nil {
		b.Fatalf("receiver process said %q: %v", line, err)
	}
	s.cpu = time.Duration(cpu)
	return s
}

func benchmarkExport(b *testing.B, clientStart, serverStart []byte, next func(n int) (req, resp []byte)) {
	r := startReceiverProc(b)
	e := runExporter(b, r.addr)
	m := benchPipeline(b, e)
	start := r.state(b)
	before := start.http
	// The loop makes requests faster than the exporter's default queue
	// drains them at this rate; it waits for the receiver whenever it is
	// more than a queue's worth ahead, so nothing is evicted and the cost
	// of every exchange's export is measured.
	pace := func(n int) {
		for int64(2*n)-(r.http(b)-before) > skywalking.DefaultQueueSize/4 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	cpu, n := runBenchConns(b, m, clientStart, serverStart, next, pace)
	deadline := time.Now().Add(30 * time.Second)
	for r.http(b)-before < int64(2*n) {
		if time.Now().After(deadline) {
			b.Fatalf("the receiver has %d of %d exchanges after 30 s", r.http(b)-before, 2*n)
		}
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(n), "cpu-ns/op")
	end := r.state(b)
	// The receiver's CPU from its start of the loop (it idles otherwise):
	// what the bench's receiver costs per request, on its own.
	b.ReportMetric(float64(end.cpu-start.cpu)/float64(n), "receiver-cpu-ns/op")
	// Messages per request and their size: what BenchmarkExportGRPCFloor's
	// payloads should look like.
	if msgs := end.messages - start.messages; msgs > 0 {
		b.ReportMetric(float64(msgs)/float64(n), "msgs/op")
		b.ReportMetric(float64(end.bytes-start.bytes)/float64(msgs), "bytes/msg")
		if streams := end.streams - start.streams; streams > 0 {
			b.ReportMetric(float64(msgs)/float64(streams), "msgs/stream")
		}
	}
}

// BenchmarkExportGRPCFloor is gRPC's own least cost per message on this
// machine, against which the export's cost per request is judged: the
// sender's side of grpc-go (SendMsg, its transport goroutine, the loopback
// writes) sending pre-encoded EBPFAccessLogMessages on one client stream
// to the bench's receiver in a process of its own, as
// BenchmarkDaemonHTTP1Export's exporter does, with nothing of Weir's
// around it: no encoding, no queue, no batches. cpu-ns/op is the
// benchmark process's CPU per message (garbage collection included);
// BenchmarkDaemonHTTP1Export reports its own msgs/op and bytes/msg to
// set the sizes beside it.
func BenchmarkExportGRPCFloor(b *testing.B) {
	for _, size := range []int{128, 384, 1024} {
		b.Run(fmt.Sprintf("bytes=%d", size), func(b *testing.B) { benchmarkGRPCFloor(b, size) })
	}
}

// floorCodec sends a message's bytes as they are, as the exporter's
// rawCodec does; the reply is not read.
type floorCodec struct{}

func (floorCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}
func (floorCodec) Unmarshal(mem.BufferSlice, any) error { return nil }

// Name is empty, as the exporter's, so the content-type stays
// "application/grpc".
func (floorCodec) Name() string { return "" }

// floorMessage returns the wire form of an EBPFAccessLogMessage of size
// bytes: two kernel logs and an HTTP protocol log whose path pads it.
func floorMessage(b *testing.B, size int) []byte {
	m := &alv3.EBPFAccessLogMessage{
		KernelLogs: []*alv3.AccessLogKernelLog{
			{Operation: &alv3.AccessLogKernelLog_Read{Read: &alv3.AccessLogKernelReadOperation{Syscall: 1, StartTime: &alv3.EBPFTimestamp{}}}},
			{Operation: &alv3.AccessLogKernelLog_Write{Write: &alv3.AccessLogKernelWriteOperation{Syscall: 1, EndTime: &alv3.EBPFTimestamp{}}}},
		},
		ProtocolLog: &alv3.AccessLogProtocolLogs{Protocol: &alv3.AccessLogProtocolLogs_Http{Http: &alv3.AccessLogHTTPProtocol{
			Request: &alv3.AccessLogHTTPProtocolRequest{Path: "/"},
		}}},
	}
	enc, err := proto.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	if pad := size - len(enc); pad > 0 {
		// The path's length prefixes grow with it: shrink until it fits.
		m.ProtocolLog.GetHttp().Request.Path = "/" + strings.Repeat("a", pad)
		for {
			if enc, err = proto.Marshal(m); err != nil {
				b.Fatal(err)
			}
			if len(enc) <= size {
				break
			}
			p := &m.ProtocolLog.GetHttp().Request.Path
			*p = (*p)[:len(*p)-1]
		}
	}
	return enc
}

func benchmarkGRPCFloor(b *testing.B, size int) {
	r := startReceiverProc(b)
	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	msg := floorMessage(b, size)
	desc := &grpc.StreamDesc{StreamName: "collect", ClientStreams: true}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// A first stream connects, so that the loop measures messages only.
	warm := func(n int) {
		s, err := conn.NewStream(ctx, desc, "/skywalking.v3.EBPFAccessLogService/collect", grpc.ForceCodecV2(floorCodec{}))
		if err != nil {
			b.Fatal(err)
		}
		for range n {
			if err := s.SendMsg(&msg); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.CloseSend(); err != nil {
			b.Fatal(err)
		}
		var reply []byte
		if err := s.RecvMsg(&reply); err != nil {
			b.Fatal(err)
		}
	}
	warm(10)
	start := r.state(b)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU(b)
	warm(b.N)
	used := processCPU(b) - cpu
	b.StopTimer()
	end := r.state(b)
	if got := end.messages - start.messages; got != int64(b.N) {
		b.Fatalf("the receiver has %d of %d messages", got, b.N)
	}
	b.ReportMetric(float64(used)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(end.bytes-start.bytes)/float64(b.N), "bytes/msg")
	b.ReportMetric(float64(end.cpu-start.cpu)/float64(b.N), "receiver-cpu-ns/op")
}
