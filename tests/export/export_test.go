package export

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/tests/harness"
)

// features is the part of GET /api/v1/features the suite reads.
type features struct {
	Capture bool   `json:"capture"`
	Tier    string `json:"tier"`
	Metrics []struct {
		Name      string `json:"name"`
		Available bool   `json:"available"`
	} `json:"metrics"`
}

// TestExportOfRealTraffic runs every check against one daemon and one
// receiver, in order: SkyWalking content, Prometheus values and lint (over
// all traffic so far), then the receiver outage.
func TestExportOfRealTraffic(t *testing.T) {
	f := newFixture(t)
	var feat features
	if err := f.daemon.GetJSON(runCtx(t, 5*time.Second), "/api/v1/features", &feat); err != nil {
		t.Fatal(err)
	}
	if !feat.Capture {
		t.Fatalf("capture is off on this node: %+v", feat)
	}
	t.Run("SkyWalking access logs of real traffic", func(t *testing.T) { f.testSkyWalking(t, feat) })
	t.Run("Prometheus metrics of known traffic", f.testPrometheus)
	t.Run("receiver outage of 10s", f.testOutage)
	t.Run("ClusterIP peers, plain TCP and endpoint paths as the OAP resolves them", f.testWhatTheOAPResolves)
}

// swRequest is one request of the SkyWalking case with its known status.
type swRequest struct {
	path    string
	status  int
	newConn bool
}

func swRequests() []swRequest {
	var out []swRequest
	for i := range 20 {
		r := swRequest{path: fmt.Sprintf("/sw/%d/bytes/%d", i, 100*i+1), status: 200, newConn: i >= 10}
		switch i % 5 {
		case 3:
			r.path, r.status = fmt.Sprintf("/sw/%d/status/404", i), 404
		case 4:
			r.path, r.status = fmt.Sprintf("/sw/%d/status/500", i), 500
		}
		out = append(out, r)
	}
	return out
}

// testSkyWalking makes 20 requests of known path and status from shop/web
// to data/api (10 on one keep-alive connection, 10 on a connection each)
// and 3 to the unmonitored outsider, and checks what the receiver got
// against them: framing, addresses, roles, connection operations, one
// HTTP protocol log per request per side and the kernel metrics this node
// measures on the reads and writes inside them.
func (f *fixture) testSkyWalking(t *testing.T, feat features) {
	reqs := swRequests()
	ctx := runCtx(t, 60*time.Second)
	var keep, fresh []string
	for _, r := range reqs {
		if r.newConn {
			fresh = append(fresh, r.path)
		} else {
			keep = append(keep, r.path)
		}
	}
	rep := f.get(ctx, t, f.apiAddr, false, keep)
	rep2 := f.get(ctx, t, f.apiAddr, true, fresh)
	apiConns := len(rep.Conns) + len(rep2.Conns)
	for i, res := range append(rep.Results, rep2.Results...) {
		want := reqs[slices.IndexFunc(reqs, func(r swRequest) bool { return r.path == res.Path })]
		if res.Status != want.status {
			t.Fatalf("request %d %s: client got status %d, want %d (the peer does not behave as the test expects)", i, res.Path, res.Status, want.status)
		}
	}
	outPaths := []string{"/out/0", "/out/1", "/out/2"}
	rep3 := f.get(ctx, t, f.outAddr, false, outPaths)

	// Wait for one protocol log per request on each side and for the
	// connections' kernel operations, then keep receiving a little to
	// catch duplicates.
	var items []item
	ready := func() bool {
		items, _ = flatten(f.daemon.NodeName, f.recv.streams())
		ex := exchanges(items)
		for _, r := range reqs {
			if len(ex[exchangeKey{"web", "client", r.path}]) == 0 || len(ex[exchangeKey{"api", "server", r.path}]) == 0 {
				return false
			}
		}
		for _, p := range outPaths {
			if len(ex[exchangeKey{"web", "client", p}]) == 0 {
				return false
			}
		}
		c, s := kernelOps(items, "web", "client"), kernelOps(items, "api", "server")
		return c.connect >= apiConns+len(rep3.Conns) && s.accept >= apiConns && s.close >= apiConns
	}
	err := harness.Poll(runCtx(t, waitTimeout), 100*time.Millisecond, func() (bool, error) { return ready(), nil })
	if err != nil {
		t.Errorf("the receiver did not get every protocol log and connection operation in %s: %v", waitTimeout, err)
	}
	time.Sleep(settle)
	items = mustFlatten(t, f.daemon.NodeName, f.recv.streams())
	ex := exchanges(items)
	t.Logf("%d acknowledged streams, %d log messages", len(f.recv.streams()), len(items))

	measures := map[string]bool{}
	for _, m := range feat.Metrics {
		measures[m.Name] = m.Available
	}
	webSvc, apiSvc := cluster+"::web.shop", cluster+"::api.data"
	sums := metricSums{}
	for _, r := range reqs {
		for _, side := range []struct{ pod, role string }{{"web", "client"}, {"api", "server"}} {
			got := ex[exchangeKey{side.pod, side.role, r.path}]
			if len(got) != 1 {
				t.Errorf("%s %s: %d HTTP protocol logs for %s, want exactly 1", side.pod, side.role, len(got), r.path)
				continue
			}
			it := got[0]
			h := it.http
			if h.GetRequest().GetMethod() != alv3.AccessLogHTTPProtocolRequestMethod_Get ||
				int(h.GetResponse().GetStatusCode()) != r.status || h.GetVersion() != alv3.AccessLogHTTPProtocolVersion_HTTP1 {
				t.Errorf("%s %s %s: method %v status %d version %v, want Get %d HTTP1", side.pod, side.role, r.path,
					h.GetRequest().GetMethod(), h.GetResponse().GetStatusCode(), h.GetVersion(), r.status)
			}
			if err := checkSpan("protocol log", h.GetStartTime(), h.GetEndTime()); err != nil {
				t.Errorf("%s %s %s: %v", side.pod, side.role, r.path, err)
			}
			c := it.conn
			if c.GetProtocol() != alv3.AccessLogProtocolType_HTTP_1 {
				t.Errorf("%s %s %s: connection protocol %v, want HTTP_1", side.pod, side.role, r.path, c.GetProtocol())
			}
			var errs []error
			if side.role == "client" {
				errs = append(errs, k8sAddr("local", c.GetLocal(), "web", webSvc, 0), k8sAddr("remote", c.GetRemote(), "api", apiSvc, apiPort))
			} else {
				errs = append(errs, k8sAddr("local", c.GetLocal(), "api", apiSvc, apiPort), k8sAddr("remote", c.GetRemote(), "web", webSvc, 0))
			}
			for _, err := range errs {
				if err != nil {
					t.Errorf("%s %s %s: %v", side.pod, side.role, r.path, err)
				}
			}
			var reads, writes int
			for _, k := range it.kernel {
				name, err := kernelSpan(k)
				if err != nil {
					t.Errorf("%s %s %s: %v", side.pod, side.role, r.path, err)
				}
				switch name {
				case "read":
					reads++
				case "write":
					writes++
				default:
					t.Errorf("%s %s %s: a %s operation inside an HTTP protocol log", side.pod, side.role, r.path, name)
				}
				sums.add(k)
				if err := packetsMeasured(k, measures["packets"]); err != nil {
					t.Errorf("%s %s %s: %v", side.pod, side.role, r.path, err)
				}
			}
			if reads == 0 || writes == 0 {
				t.Errorf("%s %s %s: %d read and %d write kernel logs in the protocol log, want both", side.pod, side.role, r.path, reads, writes)
			}
		}
	}
	// Kernel metrics: every metric this node measures (and that real
	// traffic between two local pods must move) shows up non-zero.
	t.Logf("kernel metric sums over the exchanges' reads and writes: %v", sums)
	mustMove := map[string]bool{"l4_duration": true, "packets": true, "l3_duration": true, "l3_split": true, "l2_duration": true, "l2_queue": true, "recv_queue": true}
	var measured []string
	for _, m := range feat.Metrics {
		if m.Available {
			measured = append(measured, m.Name)
		}
		if m.Available && mustMove[m.Name] && sums[m.Name] == 0 {
			t.Errorf("kernel metric %s is measured on this node (GET /api/v1/features) but zero in every read and write log", m.Name)
		}
	}
	t.Logf("metrics this node measures: %v", measured)

	// The unmonitored server: the client side's remote is an IP address.
	for _, p := range outPaths {
		got := ex[exchangeKey{"web", "client", p}]
		if len(got) != 1 {
			t.Errorf("web client: %d HTTP protocol logs for %s, want exactly 1", len(got), p)
			continue
		}
		ip := got[0].conn.GetRemote().GetIp()
		if ip == nil || ip.GetHost() != f.outAddr.Addr().String() || int(ip.GetPort()) != outPort {
			t.Errorf("web client %s: remote %v, want IPAddress %s", p, got[0].conn.GetRemote(), f.outAddr)
		}
		if err := k8sAddr("local", got[0].conn.GetLocal(), "web", webSvc, 0); err != nil {
			t.Errorf("web client %s: %v", p, err)
		}
	}
	// Every connection's local side is a monitored pod: nothing of the
	// outsider's netns (nor the host) was exported.
	for _, it := range items {
		if l := it.conn.GetLocal(); l.GetKubernetes() == nil {
			t.Errorf("a connection whose local side is not a pod: %v", it.conn)
			break
		}
	}

	// Connection operations with their roles: the client's connects and
	// closes, the server's accepts and closes, with sane spans.
	c, s := kernelOps(items, "web", "client"), kernelOps(items, "api", "server")
	t.Logf("web client ops %+v, api server ops %+v; connections made %d to api, %d to the outsider", c, s, apiConns, len(rep3.Conns))
	// Every connection of the client ends in a close: by a close call or,
	// when the http-client exits before its background goroutine closed
	// a finished connection, at the process's exit (the daemon learns it
	// from the kernel's exit event). The server closes every one.
	made := apiConns + len(rep3.Conns)
	if c.connect != made || c.close != made || c.accept != 0 {
		t.Errorf("web client: %+v, want %d connects, %d closes and no accept", c, made, made)
		if conns, err := f.daemon.Connections(context.Background(), harness.ConnQuery{Pod: "shop/web", Limit: 100}); err == nil {
			for _, cn := range conns {
				t.Logf("web connection %d: %s -> %s role %s state %s reason %q pid %d", cn.ID, cn.Local, cn.Remote, cn.Role, cn.State, cn.CloseReason, cn.PID)
			}
		}
	}
	if s.accept != apiConns || s.close != apiConns || s.connect != 0 {
		t.Errorf("api server: %+v, want %d accepts and closes and no connect", s, apiConns)
	}
	if w, a := kernelOps(items, "web", "server"), kernelOps(items, "api", "client"); w != (opCounts{}) || a != (opCounts{}) {
		t.Errorf("operations under the wrong role: web as server %+v, api as client %+v", w, a)
	}
	// Every kernel log received, not only those of the exchanges, has a
	// start and end since boot in order.
	bad := 0
	for _, it := range items {
		for _, k := range it.kernel {
			if _, err := kernelSpan(k); err != nil {
				if bad++; bad <= 5 {
					t.Errorf("%s %s: %v", localPod(it.conn), role(it.conn), err)
				}
			}
		}
	}
	if bad > 5 {
		t.Errorf("... and %d more kernel logs with bad timestamps", bad-5)
	}
}

// exportAccount is the SkyWalking exporter's accounting, from a scrape.
type exportAccount struct {
	received, filtered, dropped, sent, messages, queued, streamErrors float64
}

func (f *fixture) exportAccount(ctx context.Context) (exportAccount, error) {
	s, err := f.scrape(ctx)
	if err != nil {
		return exportAccount{}, err
	}
	return exportAccount{
		received:     s.sum("weir_skywalking_entries_received_total", nil),
		filtered:     s.sum("weir_skywalking_entries_filtered_total", nil),
		dropped:      s.sum("weir_skywalking_entries_dropped_total", nil),
		sent:         s.sum("weir_skywalking_entries_sent_total", nil),
		messages:     s.sum("weir_skywalking_messages_sent_total", nil),
		queued:       s.sum("weir_skywalking_queue_entries", nil),
		streamErrors: s.sum("weir_skywalking_stream_errors_total", nil),
	}, nil
}

// testOutage keeps a bounded request loop running (20 requests a second,
// each with its own path) while the receiver is stopped for 10 s and
// restarted on the same port.
func (f *fixture) testOutage(t *testing.T) {
	const (
		perBatch   = 20
		maxBatches = 30 // the loop's hard bound: 30 s of traffic
		before     = 3 * time.Second
		outage     = 10 * time.Second
		after      = 3 * time.Second
	)
	type batch struct {
		paths []string
		err   error
		at    time.Time
	}
	stop := make(chan struct{})
	done := make(chan []batch)
	ctx := runCtx(t, 90*time.Second)
	go func() {
		var out []batch
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for b := range maxBatches {
			paths := make([]string, perBatch)
			for i := range paths {
				paths[i] = fmt.Sprintf("/o/%d", b*perBatch+i)
			}
			_, err := f.tryGet(ctx, f.apiAddr, false, paths)
			out = append(out, batch{paths: paths, err: err, at: time.Now()})
			select {
			case <-stop:
				done <- out
				return
			case <-tick.C:
			}
		}
		done <- out
	}()

	time.Sleep(before)
	addr := f.recv.addr
	streamsBefore := len(f.recv.streams())
	f.recv.stop()
	stopped := time.Now()
	t.Logf("receiver stopped after %d acknowledged streams", streamsBefore)
	time.Sleep(outage)
	f.recv.start(addr)
	restarted := time.Now()
	t.Logf("receiver restarted on %s after %s", addr, restarted.Sub(stopped).Round(time.Millisecond))
	time.Sleep(after)
	close(stop)
	batches := <-done

	var paths []string
	var during int
	for _, b := range batches {
		if b.err != nil {
			t.Fatalf("request loop: %v", b.err)
		}
		paths = append(paths, b.paths...)
		if b.at.After(stopped) && b.at.Before(restarted) {
			during += len(b.paths)
		}
	}
	t.Logf("%d requests in %d batches, %d of them completed during the outage", len(paths), len(batches), during)
	if during == 0 {
		t.Fatal("no request completed during the outage: the loop did not run across it")
	}

	// Data resumes: every request arrives, on both sides, after the
	// restart for those made during the outage.
	var items []item
	var acct exportAccount
	missing := func() int {
		items, _ = flatten(f.daemon.NodeName, f.recv.streams())
		ex := exchanges(items)
		n := 0
		for _, p := range paths {
			if len(ex[exchangeKey{"web", "client", p}]) == 0 {
				n++
			}
			if len(ex[exchangeKey{"api", "server", p}]) == 0 {
				n++
			}
		}
		return n
	}
	err := harness.Poll(ctx, 200*time.Millisecond, func() (bool, error) {
		if missing() == 0 {
			return true, nil
		}
		// Whatever the exporter dropped cannot arrive.
		a, err := f.exportAccount(ctx)
		if err != nil {
			return false, err
		}
		return a.queued == 0 && a.dropped > 0, nil
	})
	if err != nil {
		t.Errorf("waiting for the outage's data: %d protocol logs still missing: %v", missing(), err)
	}
	time.Sleep(settle)

	// Accounting: offered = filtered + dropped + sent + queued, once the
	// queue is empty and the counters are still.
	err = harness.Poll(ctx, 300*time.Millisecond, func() (bool, error) {
		a, err := f.exportAccount(ctx)
		if err != nil {
			return false, err
		}
		still := a == acct
		acct = a
		return still && a.queued == 0, nil
	})
	if err != nil {
		t.Fatalf("exporter counters did not settle with an empty queue: %v (last %+v)", err, acct)
	}
	t.Logf("exporter accounting after the outage: %+v", acct)
	if acct.received != acct.filtered+acct.dropped+acct.sent+acct.queued {
		t.Errorf("entries received %v != filtered %v + dropped %v + sent %v + queued %v",
			acct.received, acct.filtered, acct.dropped, acct.sent, acct.queued)
	}
	if acct.streamErrors == 0 {
		t.Errorf("weir_skywalking_stream_errors_total is 0 after a 10 s outage with traffic")
	}
	streams := f.recv.streams()
	var msgs, resumed int
	for _, s := range streams {
		msgs += len(s.msgs)
		if s.generation > 1 {
			resumed++
		}
	}
	if resumed == 0 {
		t.Errorf("no stream acknowledged by the restarted receiver")
	}
	if float64(msgs) != acct.messages {
		t.Errorf("receiver acknowledged %d messages, the daemon counts %v sent", msgs, acct.messages)
	}

	// No duplicates, and nothing missing beyond what was counted dropped.
	items = mustFlatten(t, f.daemon.NodeName, streams)
	ex := exchanges(items)
	var dup, lost int
	for k, v := range ex {
		if len(v) > 1 {
			if dup++; dup <= 10 {
				t.Errorf("%s %s %s: %d HTTP protocol logs, want 1", k.pod, k.role, k.path, len(v))
			}
		}
	}
	var afterRestart int
	for _, p := range paths {
		for _, side := range []exchangeKey{{"web", "client", p}, {"api", "server", p}} {
			got := ex[side]
			if len(got) == 0 {
				lost++
				continue
			}
			if got[0].generation > 1 {
				afterRestart++
			}
		}
	}
	t.Logf("%d protocol logs of the loop delivered by the restarted receiver, %d missing, %d duplicated", afterRestart, lost, dup)
	if lost > 0 && float64(lost) > acct.dropped {
		t.Errorf("%d protocol logs of the loop missing, more than the %v entries counted dropped", lost, acct.dropped)
	}
	// Each request made during the outage has two protocol logs (client
	// and server side) that can only have been delivered after it.
	if acct.dropped == 0 && afterRestart < 2*during {
		t.Errorf("only %d protocol logs arrived after the restart, fewer than two for each of the %d requests made during the outage", afterRestart, during)
	}
}
