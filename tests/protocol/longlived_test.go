package protocol

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

// TestLongLivedConnectionsAreExact runs issue 14's long-lived cases at the
// daemon's default capture settings (capture budget, chunk size): far past
// the per-connection budget, every exchange must still be recorded once,
// with the right path, status and grpc-status, on both pods.
//
// The ring buffer is 64 MiB rather than 8: the HTTP/1.1 case moves 100 MB
// in about a second, and its chunked bodies are copied until each chunk's
// body hint reaches the kernel (the chunk line and the data share a
// syscall); on a CI box shared with other jobs the daemon then falls behind
// an 8 MiB ring. An overflow is a capacity matter, counted as
// ringbuf_full, and the test fails naming it rather than blaming the
// parser.
func TestLongLivedConnectionsAreExact(t *testing.T) {
	harness.RequireRoot(t)
	bins := harness.FindBinaries(t, needBin, needCNI)
	d := harness.StartDaemon(t, bins, harness.DaemonOptions{ExtraArgs: []string{"--bpf.ring-buffer-size", fmt.Sprint(64 << 20)}})
	net := harness.NewNetwork(t, bins, harness.NetworkOptions{
		Weir: &harness.WeirConf{DaemonSocket: d.Socket, SpoolDir: d.SpoolDir, Timeout: "2s"},
	})
	server := net.AddPod(t, harness.PodSpec{Namespace: "longlived", Name: "server"})
	client := net.AddPod(t, harness.PodSpec{Namespace: "longlived", Name: "client"})
	churnAddr := netip.AddrPortFrom(server.IPv4(), 8081)
	grpcAddr := netip.AddrPortFrom(server.IPv4(), 9090)
	peers.Start(t, server, "churn-server", "churn-server", "-listen", churnAddr.String())
	peers.Start(t, server, "grpc-server", "grpc-server", "-listen", grpcAddr.String())

	check := func(t *testing.T, match func(string) bool, want []outcome) {
		t.Helper()
		for _, side := range []struct {
			pod  *harness.Pod
			role string
		}{{server, "server"}, {client, "client"}} {
			got := waitOutcomes(t, d, side.pod, side.role, match, len(want))
			compareOutcomes(t, podKey(side.pod)+" "+side.role, got, want)
		}
	}

	t.Run("gRPC connection carrying 64 MiB", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		var rep peers.GRPCLongReport
		if err := peers.RunJSON(ctx, client, &rep, "grpc-long-client", "-addr", grpcAddr.String(),
			"-bytes", fmt.Sprint(64<<20), "-size", fmt.Sprint(100<<10), "-concurrency", "8"); err != nil {
			t.Fatal(err)
		}
		var want []outcome
		kinds := map[int]int{}
		for _, c := range rep.Calls {
			o := outcome{method: "POST", path: c.Method, status: 200, grpc: max(c.Code, 0), grpcSet: c.Code >= 0}
			want = append(want, o)
			kinds[c.Code]++
		}
		t.Logf("%d calls on one connection (%d bytes received): by code %v (-1: aborted by the client)",
			len(rep.Calls), rep.Conns[0].Recv, kinds)
		if kinds[-1] == 0 || kinds[10] == 0 || rep.Conns[0].Recv < 64<<20 {
			t.Fatalf("workload lacks aborted or trailers-only calls, or is short: %v, %d bytes", kinds, rep.Conns[0].Recv)
		}
		check(t, func(p string) bool { return strings.HasPrefix(p, "/grpc.testing.TestService/") }, want)
	})

	t.Run("h2c connection with 2000 requests churning HPACK", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		paths := []string{"/h2churn/bytes/65536?c=h2churn", "/h2churn/status/404?c=h2churn",
			"/h2churn/chunked/70000?c=h2churn", "/h2churn/status/503?c=h2churn", "/h2churn/bytes/10?c=h2churn"}
		// The client announces a 1 KiB HPACK table: the server's encoder
		// must send a size update, and both tables churn (changing values,
		// headers larger than the table).
		var rep peers.ChurnReport
		if err := peers.RunJSON(ctx, client, &rep, "churn-client", "-url", "http://"+churnAddr.String(), "-h2c",
			"-n", "2000", "-concurrency", "8", "-churn", "-decoder-table", "1024", "-post-every", "4", "-post-body", fmt.Sprint(64<<10),
			"-paths", strings.Join(paths, ",")); err != nil {
			t.Fatal(err)
		}
		check(t, caseMarker("h2churn"), outcomesOf(rep.Results))
	})

	t.Run("HTTP/1.1 keep-alive carrying 100 MB of bodies, then small requests", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		var paths []string
		for i := range 10 {
			if i%2 == 0 {
				paths = append(paths, "/h1big/bytes/10485760?c=h1big")
			} else {
				// 4 MiB chunks: each chunk's hint lands while the rest
				// of it is still being read. (A body of small chunks is
				// copied whole: exact, but it fills the ring buffer.)
				paths = append(paths, "/h1big/chunked/10485760?chunk=4194304&c=h1big")
			}
		}
		for i := range 30 {
			paths = append(paths, []string{"/h1big/bytes/10?c=h1big", "/h1big/status/204?c=h1big", "/h1big/chunked/100?c=h1big"}[i%3])
		}
		var rep peers.ChurnReport
		if err := peers.RunJSON(ctx, client, &rep, "churn-client", "-url", "http://"+churnAddr.String(),
			"-n", fmt.Sprint(len(paths)), "-post-every", "7", "-post-body", fmt.Sprint(64<<10),
			"-paths", strings.Join(paths, ",")); err != nil {
			t.Fatal(err)
		}
		if rep.Conns[0].Recv < 100e6 {
			t.Fatalf("the connection carried %d bytes", rep.Conns[0].Recv)
		}
		check(t, caseMarker("h1big"), outcomesOf(rep.Results))
		// HTTP/1.1 records account for every byte of the connection:
		// their wire sizes add up to what the client sent and received.
		recs, err := d.Requests(ctx, podKey(client), recordsLimit)
		if err != nil {
			t.Fatal(err)
		}
		var sent, recv uint64
		for _, r := range recs {
			if r.Role == "client" && caseMarker("h1big")(r.Path) {
				sent += r.ReqBytes
				recv += r.RespBytes
			}
		}
		if int64(sent) != rep.Conns[0].Sent || int64(recv) != rep.Conns[0].Recv {
			t.Errorf("records add up to %d sent and %d received; the connection moved %d and %d",
				sent, recv, rep.Conns[0].Sent, rep.Conns[0].Recv)
		}
	})

	m, err := d.Get(context.Background(), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(m), "\n") {
		if strings.HasPrefix(l, "weir_protocol_") && !strings.HasSuffix(l, " 0") ||
			strings.HasPrefix(l, "weir_bpf_events_lost_total") && !strings.HasSuffix(l, " 0") {
			t.Log(l)
		}
		if strings.HasPrefix(l, `weir_bpf_events_lost_total{reason="ringbuf_full"}`) && !strings.HasSuffix(l, " 0") && t.Failed() {
			t.Log("the ring buffer overflowed: records of the exchanges whose bytes were lost are incomplete")
		}
	}
}

// outcome is what a record must say about one exchange.
type outcome struct {
	method, path string
	status       int
	grpc         int
	grpcSet      bool
}

func (o outcome) String() string {
	s := fmt.Sprintf("%s %s %d", o.method, o.path, o.status)
	if o.grpcSet {
		s += fmt.Sprintf(" grpc-status=%d", o.grpc)
	}
	return s
}

func outcomesOf(rs []peers.HTTPResult) []outcome {
	out := make([]outcome, len(rs))
	for i, r := range rs {
		out[i] = outcome{method: r.Method, path: r.Path, status: r.Status}
	}
	return out
}

// waitOutcomes waits until the daemon holds at least n records of pod in
// role matching match, lets them settle, and returns them; an incomplete
// record fails the test.
func waitOutcomes(t *testing.T, d *harness.Daemon, pod *harness.Pod, role string, match func(string) bool, n int) []outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var got []harness.Request
	fetch := func() error {
		all, err := d.Requests(ctx, podKey(pod), recordsLimit)
		got = got[:0]
		for _, r := range all {
			if r.Role == role && match(r.Path) {
				got = append(got, r)
			}
		}
		return err
	}
	if err := harness.Poll(ctx, 200*time.Millisecond, func() (bool, error) { return len(got) >= n, fetch() }); err != nil {
		t.Errorf("%s %s: %d of %d records: %v", podKey(pod), role, len(got), n, err)
	}
	time.Sleep(settle)
	if err := fetch(); err != nil {
		t.Fatal(err)
	}
	out := make([]outcome, 0, len(got))
	incomplete := 0
	for _, r := range got {
		o := outcome{method: r.Method, path: r.Path, status: r.Status}
		if r.GRPCStatus != nil {
			o.grpc, o.grpcSet = *r.GRPCStatus, true
		}
		if r.Incomplete {
			incomplete++
		}
		out = append(out, o)
	}
	if incomplete > 0 {
		t.Errorf("%s %s: %d incomplete records", podKey(pod), role, incomplete)
	}
	return out
}

// compareOutcomes asserts got and want are the same multiset.
func compareOutcomes(t *testing.T, what string, got, want []outcome) {
	t.Helper()
	count := map[outcome]int{}
	for _, w := range want {
		count[w]++
	}
	var extra, missing []string
	for _, g := range got {
		if count[g] > 0 {
			count[g]--
			continue
		}
		extra = append(extra, g.String())
	}
	for o, n := range count {
		for range n {
			missing = append(missing, o.String())
		}
	}
	if len(extra)+len(missing) > 0 {
		sort.Strings(extra)
		sort.Strings(missing)
		t.Errorf("%s: %d records for %d exchanges\n  missing: %s\n  unexpected: %s", what, len(got), len(want), head(missing), head(extra))
		return
	}
	t.Logf("%s: %d records, exactly the %d exchanges made", what, len(got), len(want))
}
