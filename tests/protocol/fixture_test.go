package protocol

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

func TestMain(m *testing.M) { peers.Main(m) }

const (
	// waitTimeout bounds every wait for the daemon's records.
	waitTimeout = 20 * time.Second
	// recordsLimit is the limit asked of GET /api/v1/requests: above the
	// total exchanges the whole suite makes per pod.
	recordsLimit = 10000
	// settle is how long the suite keeps looking after the expected number
	// of records appeared, so a duplicate or invented record is caught.
	settle = 500 * time.Millisecond
)

// Ports of the servers in the server pod.
const (
	nginxPort    = 80
	nginxH2CPort = 81
	goPort       = 8080
	grpcPort     = 9090
)

var (
	needBin = []string{"weir-daemon"}
	needCNI = []string{"bridge", "host-local", "weir"}
)

type fixture struct {
	bins     harness.Binaries
	daemon   *harness.Daemon
	net      *harness.Network
	server   *harness.Pod
	client   *harness.Pod
	nginx    *peers.Nginx
	goLog    string // the Go http-server's request log
	nginx1   netip.AddrPort
	nginxH2C netip.AddrPort
	goSrv    netip.AddrPort
	grpcSrv  netip.AddrPort
}

// files served by nginx under /files/: distinct sizes so that a response
// paired with the wrong request cannot match.
var nginxFiles = map[string]int{
	"s100": 100, "s200": 200, "s300": 300, "s4000": 4000, "big": 10 << 20,
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	harness.RequireRoot(t)
	f := &fixture{bins: harness.FindBinaries(t, needBin, needCNI)}
	f.daemon = harness.StartDaemon(t, f.bins, harness.DaemonOptions{})
	f.net = harness.NewNetwork(t, f.bins, harness.NetworkOptions{
		Weir: &harness.WeirConf{DaemonSocket: f.daemon.Socket, SpoolDir: f.daemon.SpoolDir, Timeout: "2s"},
	})
	f.server = f.net.AddPod(t, harness.PodSpec{Namespace: "protocol", Name: "server"})
	f.client = f.net.AddPod(t, harness.PodSpec{Namespace: "protocol", Name: "client"})
	ip := f.server.IPv4()
	f.nginx1 = netip.AddrPortFrom(ip, nginxPort)
	f.nginxH2C = netip.AddrPortFrom(ip, nginxH2CPort)
	f.goSrv = netip.AddrPortFrom(ip, goPort)
	f.grpcSrv = netip.AddrPortFrom(ip, grpcPort)
	f.nginx = peers.StartNginx(t, f.server, peers.NginxOptions{
		Listen: f.nginx1.String(), ListenH2C: f.nginxH2C.String(), Files: nginxFiles,
	})
	f.goLog = t.TempDir() + "/go-server.log"
	peers.Start(t, f.server, "go http-server", "http-server", "-listen", f.goSrv.String(), "-h2c", "-log", f.goLog, "-name", "go")
	peers.Start(t, f.server, "grpc-server", "grpc-server", "-listen", f.grpcSrv.String())
	return f
}

func podKey(p *harness.Pod) string { return p.Namespace + "/" + p.Name }

func runCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// exchange is one HTTP exchange of the ground truth. ReqBytes and
// RespBytes are wire sizes, header plus body, as the API reports them; -1
// when the source does not define them. GRPCStatus -1 means not gRPC.
type exchange struct {
	Method     string
	Path       string
	Status     int
	ReqBytes   int64
	RespBytes  int64
	GRPCStatus int
}

func (e exchange) String() string {
	s := fmt.Sprintf("%s %s → %d req=%d resp=%d", e.Method, e.Path, e.Status, e.ReqBytes, e.RespBytes)
	if e.GRPCStatus >= 0 {
		s += fmt.Sprintf(" grpc-status=%d", e.GRPCStatus)
	}
	return s
}

// fromRecord projects a daemon record onto the fields want defines, so the
// comparison ignores exactly what the ground truth does not know.
func fromRecord(r harness.Request, want exchange) exchange {
	e := exchange{Method: r.Method, Path: r.Path, Status: r.Status, ReqBytes: -1, RespBytes: -1, GRPCStatus: -1}
	if want.ReqBytes >= 0 {
		e.ReqBytes = int64(r.ReqBytes)
	}
	if want.RespBytes >= 0 {
		e.RespBytes = int64(r.RespBytes)
	}
	if want.GRPCStatus >= 0 && r.GRPCStatus != nil {
		e.GRPCStatus = *r.GRPCStatus
	}
	return e
}

// expect describes which records of a pod belong to a case.
type expect struct {
	pod      *harness.Pod
	role     string // "client" or "server"
	peer     *harness.Pod
	protocol string // "HTTP/1.1" or "HTTP/2"
	match    func(path string) bool
}

// caseMarker returns a matcher for paths carrying the case's query marker.
func caseMarker(name string) func(string) bool {
	return func(p string) bool { return strings.Contains(p, "c="+name) }
}

// checkRecords waits for the daemon's records of e to reach len(want), lets
// them settle, and asserts they are exactly want, one for one, complete,
// with the right protocol, role and peer pod.
func (f *fixture) checkRecords(t *testing.T, e expect, want []exchange) []harness.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var got []harness.Request
	fetch := func() error {
		all, err := f.daemon.Requests(ctx, podKey(e.pod), recordsLimit)
		if err != nil {
			return err
		}
		got = slices.DeleteFunc(all, func(r harness.Request) bool { return r.Role != e.role || !e.match(r.Path) })
		return nil
	}
	err := harness.Poll(ctx, 100*time.Millisecond, func() (bool, error) {
		return len(got) >= len(want), fetch()
	})
	if err != nil {
		t.Errorf("%s %s: %d of %d records: %v", podKey(e.pod), e.role, len(got), len(want), err)
	} else {
		time.Sleep(settle)
		if err := fetch(); err != nil {
			t.Fatal(err)
		}
	}
	compareExchanges(t, fmt.Sprintf("%s %s records", podKey(e.pod), e.role), got, want)
	t.Logf("%s %s: %d records checked against %d exchanges of the ground truth", podKey(e.pod), e.role, len(got), len(want))
	bad := 0
	for _, r := range got {
		var problems []string
		if r.Incomplete {
			problems = append(problems, "incomplete")
		}
		if r.Protocol != e.protocol {
			problems = append(problems, fmt.Sprintf("protocol %q, want %q", r.Protocol, e.protocol))
		}
		if e.peer != nil && r.PeerPod != podKey(e.peer) {
			problems = append(problems, fmt.Sprintf("peer pod %q, want %q", r.PeerPod, podKey(e.peer)))
		}
		if len(problems) > 0 {
			if bad++; bad <= 5 {
				t.Errorf("%s %s record %s %s: %s", podKey(e.pod), e.role, r.Method, r.Path, strings.Join(problems, ", "))
			}
		}
	}
	if bad > 5 {
		t.Errorf("... and %d more records with problems", bad-5)
	}
	return got
}

// compareExchanges asserts got and want are the same multiset and lists the
// differences.
func compareExchanges(t *testing.T, what string, got []harness.Request, want []exchange) {
	t.Helper()
	count := map[exchange]int{}
	for _, w := range want {
		count[w]++
	}
	var extra []string
	for _, r := range got {
		// Project with the first wanted exchange of the same method and
		// path, so the defined-ness of sizes follows the ground truth.
		ref := exchange{ReqBytes: -1, RespBytes: -1, GRPCStatus: -1}
		for _, w := range want {
			if w.Method == r.Method && w.Path == r.Path {
				ref = w
				break
			}
		}
		e := fromRecord(r, ref)
		if count[e] > 0 {
			count[e]--
			continue
		}
		extra = append(extra, e.String())
	}
	var missing []string
	for e, n := range count {
		for range n {
			missing = append(missing, e.String())
		}
	}
	if len(extra) == 0 && len(missing) == 0 {
		return
	}
	sort.Strings(extra)
	sort.Strings(missing)
	t.Errorf("%s differ from the ground truth (%d records, %d expected):\n  missing: %s\n  unexpected: %s",
		what, len(got), len(want), head(missing), head(extra))
}

func head(s []string) string {
	if len(s) > 10 {
		return strings.Join(s[:10], "; ") + fmt.Sprintf("; ... (%d more)", len(s)-10)
	}
	return strings.Join(s, "; ")
}

// nginxLog waits until nginx logged at least atLeast requests of a case and
// returns them.
func (f *fixture) nginxLog(t *testing.T, match func(string) bool, atLeast int) []peers.NginxLogEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var out []peers.NginxLogEntry
	err := harness.Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		log, err := f.nginx.Log()
		if err != nil {
			return false, err
		}
		out = out[:0]
		for _, l := range log {
			if match(l.URI) {
				out = append(out, l)
			}
		}
		return len(out) >= atLeast, nil
	})
	if err != nil {
		t.Fatalf("nginx logged %d requests of the case, want at least %d: %v", len(out), atLeast, err)
	}
	return out
}

// nginxTruth turns access log entries into exchanges. For HTTP/1.1 nginx's
// $request_length and $bytes_sent are the request's and response's wire
// sizes (header plus body), exactly what Weir reports; for HTTP/2 nginx
// counts differently (no frame headers, its own header accounting), so
// sizes are left undefined there.
func nginxTruth(entries []peers.NginxLogEntry) []exchange {
	out := make([]exchange, 0, len(entries))
	for _, l := range entries {
		e := exchange{Method: l.Method, Path: l.URI, Status: l.Status, ReqBytes: -1, RespBytes: -1, GRPCStatus: -1}
		if l.Protocol == "HTTP/1.1" {
			e.ReqBytes, e.RespBytes = l.RequestLength, l.BytesSent
		}
		out = append(out, e)
	}
	return out
}

// goTruth reads the Go http-server's log entries of a case.
func (f *fixture) goTruth(t *testing.T, match func(string) bool, want int) []exchange {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var out []exchange
	err := harness.Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		entries, err := peers.ReadServerLog(f.goLog)
		if err != nil {
			return false, err
		}
		out = out[:0]
		for _, e := range entries {
			if match(e.Path) {
				// The server knows its body sizes but not the header wire
				// sizes, so sizes are not defined by this log.
				out = append(out, exchange{Method: e.Method, Path: e.Path, Status: e.Status, ReqBytes: -1, RespBytes: -1, GRPCStatus: -1})
			}
		}
		return len(out) >= want, nil
	})
	if err != nil || len(out) != want {
		t.Fatalf("Go server logged %d requests of the case, the client made %d: %v", len(out), want, err)
	}
	return out
}
