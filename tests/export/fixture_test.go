package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

func TestMain(m *testing.M) { peers.Main(m) }

const (
	// cluster is the daemon's --cluster: the node info carries it and
	// service names are prefixed with it.
	cluster = "weir-test"
	// apiPort and outPort are the servers' ports in the api pod and in
	// the unenrolled outsider pod.
	apiPort = 8080
	outPort = 8081
	// waitTimeout bounds every wait for exported data.
	waitTimeout = 30 * time.Second
	// settle is how long the suite keeps receiving after what it waits
	// for arrived, so that a duplicate sent late is caught.
	settle = time.Second
)

var (
	needBin = []string{"weir-daemon"}
	needCNI = []string{"bridge", "host-local", "weir"}
)

// fixture is one daemon exporting to one receiver, the client pod shop/web,
// the server pod data/api, and a server in a pod the daemon does not
// monitor. truth accumulates every request and connection the client pod
// made, for the Prometheus checks.
type fixture struct {
	bins     harness.Binaries
	recv     *receiver
	daemon   *harness.Daemon
	web, api *harness.Pod
	outsider *harness.Pod
	apiAddr  netip.AddrPort
	outAddr  netip.AddrPort

	mu    sync.Mutex
	truth truth
}

// truth is the client pod's own account of its traffic.
type truth struct {
	conns          int            // connections opened
	sent, recv     int64          // bytes written and read over them
	statusClass    map[string]int // requests by status class ("2xx"...)
	apiStatusClass map[string]int // of those, to the api pod
	apiConns       int            // connections to the api pod
	connList       []peers.ConnReport
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	harness.RequireRoot(t)
	f := &fixture{bins: harness.FindBinaries(t, needBin, needCNI)}
	f.truth.statusClass, f.truth.apiStatusClass = map[string]int{}, map[string]int{}
	f.recv = newReceiver(t)
	f.daemon = harness.StartDaemon(t, f.bins, harness.DaemonOptions{ExtraArgs: []string{
		"--oap", f.recv.addr, "--oap-insecure", "--oap-flush-period", "200ms",
		"--cluster", cluster, "--cri-socket", "",
	}})
	chain := harness.NewNetwork(t, f.bins, harness.NetworkOptions{
		Weir: &harness.WeirConf{DaemonSocket: f.daemon.Socket, SpoolDir: f.daemon.SpoolDir, Timeout: "2s"},
	})
	f.web = chain.AddPod(t, harness.PodSpec{Namespace: "shop", Name: "web"})
	f.api = chain.AddPod(t, harness.PodSpec{Namespace: "data", Name: "api"})
	// A pod on a network without the weir plugin: never enrolled, so the
	// daemon knows it by its IP address only.
	plain := harness.NewNetwork(t, f.bins, harness.NetworkOptions{})
	f.outsider = plain.AddPod(t, harness.PodSpec{Namespace: "elsewhere", Name: "outsider"})

	f.apiAddr = netip.AddrPortFrom(f.api.IPv4(), apiPort)
	f.outAddr = netip.AddrPortFrom(f.outsider.IPv4(), outPort)
	peers.Start(t, f.api, "api http-server", "http-server", "-listen", f.apiAddr.String(), "-name", "api")
	peers.Start(t, f.outsider, "outsider http-server", "http-server", "-listen", f.outAddr.String(), "-name", "outsider")
	return f
}

// get makes len(paths) GET requests from the web pod to srv, one per path,
// over one keep-alive connection or a new connection each, fails the test
// on any error, and adds them to the truth.
func (f *fixture) get(ctx context.Context, t *testing.T, srv netip.AddrPort, newConn bool, paths []string) peers.HTTPClientReport {
	t.Helper()
	rep, err := f.tryGet(ctx, srv, newConn, paths)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func (f *fixture) tryGet(ctx context.Context, srv netip.AddrPort, newConn bool, paths []string) (peers.HTTPClientReport, error) {
	args := []string{"http-client", "-url", "http://" + srv.String(), "-n", fmt.Sprint(len(paths)),
		"-paths", strings.Join(paths, ","), "-timeout", "10s"}
	if newConn {
		args = append(args, "-new-conn")
	}
	var rep peers.HTTPClientReport
	err := peers.RunJSON(ctx, f.web, &rep, args...)
	// Account for what happened even when a request failed: its
	// connections were made and counted by the daemon all the same.
	f.mu.Lock()
	defer f.mu.Unlock()
	f.truth.conns += len(rep.Conns)
	if srv == f.apiAddr {
		f.truth.apiConns += len(rep.Conns)
	}
	f.truth.connList = append(f.truth.connList, rep.Conns...)
	for _, c := range rep.Conns {
		f.truth.sent += c.Sent
		f.truth.recv += c.Recv
	}
	for _, r := range rep.Results {
		if r.Status == 0 {
			continue
		}
		class := fmt.Sprintf("%dxx", r.Status/100)
		f.truth.statusClass[class]++
		if srv == f.apiAddr {
			f.truth.apiStatusClass[class]++
		}
	}
	if err != nil {
		return rep, fmt.Errorf("http-client in %s/%s to %s: %w", f.web.Namespace, f.web.Name, srv, err)
	}
	for i, r := range rep.Results {
		if r.Path != paths[i] {
			return rep, fmt.Errorf("http-client result %d is for %s, asked %s", i, r.Path, paths[i])
		}
	}
	return rep, nil
}

func (f *fixture) snapshotTruth() truth {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.truth
	t.connList = slices.Clone(f.truth.connList)
	t.statusClass, t.apiStatusClass = map[string]int{}, map[string]int{}
	for k, v := range f.truth.statusClass {
		t.statusClass[k] = v
	}
	for k, v := range f.truth.apiStatusClass {
		t.apiStatusClass[k] = v
	}
	return t
}

func runCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// receiver is an in-process OAP: the goapi EBPFAccessLogService server on
// a loopback port. It keeps the streams it acknowledged, each with the
// generation of the server that received it (bumped by every restart); a
// stream that broke before the client closed it is discarded, as the real
// OAP would not have acknowledged it either.
type receiver struct {
	alv3.UnimplementedEBPFAccessLogServiceServer

	t    *testing.T
	addr string

	mu         sync.Mutex
	srv        *grpc.Server
	generation int
	acked      []stream
}

// stream is one acknowledged Collect stream.
type stream struct {
	generation int
	msgs       []*alv3.EBPFAccessLogMessage
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{t: t}
	r.start("127.0.0.1:0")
	t.Cleanup(r.stop)
	return r
}

// start serves on addr; restarting on the port just served may race the
// old socket's teardown, so binding is retried for up to a second.
func (r *receiver) start(addr string) {
	r.t.Helper()
	var lis net.Listener
	var err error
	for range 50 {
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("receiver listen %s: %v", addr, err)
	}
	srv := grpc.NewServer()
	alv3.RegisterEBPFAccessLogServiceServer(srv, r)
	r.mu.Lock()
	r.srv, r.addr = srv, lis.Addr().String()
	r.generation++
	r.mu.Unlock()
	go srv.Serve(lis) //nolint:errcheck // returns when stopped
}

// stop closes the listener and every open stream at once, like an OAP
// that goes away.
func (r *receiver) stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Collect implements alv3.EBPFAccessLogServiceServer.
func (r *receiver) Collect(st alv3.EBPFAccessLogService_CollectServer) error {
	r.mu.Lock()
	gen := r.generation
	r.mu.Unlock()
	var msgs []*alv3.EBPFAccessLogMessage
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	// Recorded before acknowledging: once the client has the
	// acknowledgement, the test may look for the data.
	r.mu.Lock()
	i := len(r.acked)
	r.acked = append(r.acked, stream{generation: gen, msgs: msgs})
	r.mu.Unlock()
	if err := st.SendAndClose(&alv3.EBPFAccessLogDownstream{}); err != nil {
		r.mu.Lock()
		r.acked[i].msgs = nil // not acknowledged after all
		r.mu.Unlock()
		return err
	}
	return nil
}

// streams returns the acknowledged streams so far.
func (r *receiver) streams() []stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]stream, 0, len(r.acked))
	for _, s := range r.acked {
		if s.msgs != nil {
			out = append(out, s)
		}
	}
	return out
}
