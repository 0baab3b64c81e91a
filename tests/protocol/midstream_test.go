package protocol

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

// TestDaemonStartedWhileRequestTextIsInFlight is issue 14's restart report
// with real peers: both pods and their keep-alive connection exist before
// the daemon runs, and a response body made of "GET /fake HTTP/1.1" lines,
// one write each, is in flight when the daemon starts and enrolls the pods.
// No record may be invented from it (on either side), and the exchanges
// that follow on the same connection, including POSTs whose bodies are
// request text written apart from their heads, are recorded.
func TestDaemonStartedWhileRequestTextIsInFlight(t *testing.T) {
	harness.RequireRoot(t)
	bins := harness.FindBinaries(t, needBin, needCNI)
	d := harness.NewDaemon(t, bins, harness.DaemonOptions{})
	// The daemon is not running: the plugin spools the ADDs, and the
	// daemon replays them when it starts.
	net := harness.NewNetwork(t, bins, harness.NetworkOptions{
		Weir: &harness.WeirConf{DaemonSocket: d.Socket, SpoolDir: d.SpoolDir, Timeout: "1s"},
	})
	server := net.AddPod(t, harness.PodSpec{Namespace: "midstream", Name: "server"})
	client := net.AddPod(t, harness.PodSpec{Namespace: "midstream", Name: "client"})
	addr := netip.AddrPortFrom(server.IPv4(), 8088)
	release := filepath.Join(t.TempDir(), "release")
	peers.Start(t, server, "slow-body-server", "slow-body-server", "-listen", addr.String(), "-release", release)

	const after = 20
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type result struct {
		rep peers.SlowBodyReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = peers.RunJSON(ctx, client, &r.rep, "slow-body-client", "-addr", addr.String(),
			"-pieces", "3000", "-after", fmt.Sprint(after), "-mark", "mid")
		done <- r
	}()
	// Let the slow body start, then start the daemon mid-body.
	time.Sleep(300 * time.Millisecond)
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitPods(ctx, func(p []harness.PodRecord) bool { return len(p) >= 2 }); err != nil {
		t.Fatalf("pods not enrolled from the spool: %v", err)
	}
	// Enrolled: the daemon now sees the rest of the body (a piece every
	// 20 ms) for a while before the server speeds up.
	time.Sleep(1500 * time.Millisecond)
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("slow-body client did not finish")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.rep.SlowBody != int64(3000*len(peers.FakeRequest)) || len(r.rep.Results) != after {
		t.Fatalf("client: slow body %d bytes, %d requests after", r.rep.SlowBody, len(r.rep.Results))
	}
	var want []exchange
	for _, res := range r.rep.Results {
		if res.Status != 200 {
			t.Fatalf("client got %+v", res)
		}
		want = append(want, exchange{Method: res.Method, Path: res.Path, Status: 200, ReqBytes: -1, RespBytes: -1, GRPCStatus: -1})
	}

	for _, pod := range []*harness.Pod{server, client} {
		key := podKey(pod)
		var got []harness.Request
		fetch := func() error {
			all, err := d.Requests(ctx, key, recordsLimit)
			got = all
			return err
		}
		wait, cancelWait := context.WithTimeout(ctx, waitTimeout)
		err := harness.Poll(wait, 100*time.Millisecond, func() (bool, error) {
			if err := fetch(); err != nil {
				return false, err
			}
			n := 0
			for _, g := range got {
				if strings.HasPrefix(g.Path, "/after/") {
					n++
				}
			}
			return n >= after, nil
		})
		cancelWait()
		if err != nil {
			t.Errorf("%s: the exchanges after the body were not all recorded: %v", key, err)
		}
		time.Sleep(settle)
		if err := fetch(); err != nil {
			t.Fatal(err)
		}
		var afterRecs []harness.Request
		for _, g := range got {
			switch {
			case strings.Contains(g.Path, "fake") || g.Method == "" && g.Path == "":
				t.Errorf("%s: invented record %s %q status %d (incomplete %v)", key, g.Method, g.Path, g.Status, g.Incomplete)
			case strings.HasPrefix(g.Path, "/after/"):
				afterRecs = append(afterRecs, g)
			case strings.HasPrefix(g.Path, "/slow"):
				t.Errorf("%s: the slow request was sent before the daemon ran, yet recorded: %+v", key, g)
			}
		}
		compareExchanges(t, key+" records after the body", afterRecs, want)
		for _, g := range afterRecs {
			if g.Incomplete {
				t.Errorf("%s: %s %s incomplete", key, g.Method, g.Path)
			}
		}
		t.Logf("%s: %d records, none invented; %d exchanges after the body recorded", key, len(got), len(afterRecs))
	}
	m, err := d.Get(ctx, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(m), "\n") {
		if strings.HasPrefix(l, "weir_protocol_") {
			t.Log(l)
		}
	}
}
