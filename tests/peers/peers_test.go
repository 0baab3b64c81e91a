package peers_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

func TestMain(m *testing.M) { peers.Main(m) }

// These tests check the peers themselves, on the real CNI chain but with no
// Weir at all: the capture and protocol suites take the peers' reports as
// ground truth, so the reports must agree with the other side of the wire.

type pair struct {
	server, client *harness.Pod
}

func newPair(t *testing.T) pair {
	t.Helper()
	harness.RequireRoot(t)
	bins := harness.FindBinaries(t, nil, []string{"bridge", "host-local"})
	n := harness.NewNetwork(t, bins, harness.NetworkOptions{})
	return pair{
		server: n.AddPod(t, harness.PodSpec{Namespace: "peers", Name: "server"}),
		client: n.AddPod(t, harness.PodSpec{Namespace: "peers", Name: "client"}),
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestHTTPClientRecordsEveryByteTheServerLogged(t *testing.T) {
	p := newPair(t)
	logPath := t.TempDir() + "/server.log"
	peers.Start(t, p.server, "http-server", "http-server", "-listen", ":8080", "-h2c", "-log", logPath)
	base := "http://" + netip.AddrPortFrom(p.server.IPv4(), 8080).String()

	for _, mode := range []struct {
		name  string
		flags []string
		conns int
	}{
		{"keep-alive", nil, 1},
		{"new-conn", []string{"-new-conn"}, 5},
		{"h2c", []string{"-h2c", "-concurrency", "5"}, 1},
	} {
		t.Run(mode.name, func(t *testing.T) {
			dir := t.TempDir()
			var rep peers.HTTPClientReport
			args := append([]string{"http-client", "-url", base, "-n", "5", "-paths", "/a/bytes/1000,/status/204", "-record", dir}, mode.flags...)
			if err := peers.RunJSON(ctx(t), p.client, &rep, args...); err != nil {
				t.Fatal(err)
			}
			if len(rep.Conns) != mode.conns {
				t.Errorf("connections: got %d, want %d", len(rep.Conns), mode.conns)
			}
			for _, r := range rep.Results {
				want := map[string]int{"/a/bytes/1000": 200, "/status/204": 204}[r.Path]
				if r.Status != want {
					t.Errorf("%s: status %d, want %d", r.Path, r.Status, want)
				}
			}
			withBody := 0
			for _, c := range rep.Conns {
				sent, err := os.ReadFile(c.SentFile)
				if err != nil {
					t.Fatal(err)
				}
				recv, err := os.ReadFile(c.RecvFile)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(sent)) != c.Sent || int64(len(recv)) != c.Recv {
					t.Errorf("record files hold %d/%d bytes, counts say %d/%d", len(sent), len(recv), c.Sent, c.Recv)
				}
				if bytes.Contains(recv, peers.Pattern(1000)) {
					withBody++
				}
			}
			if mode.name != "h2c" && withBody == 0 {
				t.Errorf("no connection received the /bytes/1000 body")
			}
		})
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(log), "\n"); got != 15 {
		t.Errorf("server logged %d requests, want 15:\n%s", got, log)
	}
}

func TestGRPCClientReportsStatusesAndStreamMessages(t *testing.T) {
	p := newPair(t)
	peers.Start(t, p.server, "grpc-server", "grpc-server", "-listen", ":9090")
	var rep peers.GRPCClientReport
	addr := netip.AddrPortFrom(p.server.IPv4(), 9090).String()
	if err := peers.RunJSON(ctx(t), p.client, &rep, "grpc-client", "-addr", addr,
		"-unary", "2", "-streams", "1", "-stream-messages", "4", "-errors", "1", "-error-code", "5"); err != nil {
		t.Fatal(err)
	}
	want := []peers.GRPCCall{
		{Method: peers.GRPCUnaryMethod, Messages: 1},
		{Method: peers.GRPCUnaryMethod, Messages: 1},
		{Method: peers.GRPCStreamingMethod, Messages: 4},
		{Method: peers.GRPCUnaryMethod, Code: 5, Message: "weir peer error"},
	}
	if fmt.Sprint(rep.Calls) != fmt.Sprint(want) {
		t.Errorf("calls:\n got %+v\nwant %+v", rep.Calls, want)
	}
	if len(rep.Conns) != 1 {
		t.Errorf("connections: got %d, want 1", len(rep.Conns))
	}
}

func TestPipelineShortAndDialPeers(t *testing.T) {
	p := newPair(t)
	peers.Start(t, p.server, "http-server", "http-server", "-listen", ":8080")
	addr := netip.AddrPortFrom(p.server.IPv4(), 8080).String()

	var pipe peers.PipelineReport
	if err := peers.RunJSON(ctx(t), p.client, &pipe, "pipeline", "-addr", addr, "-paths", "/p/1,/p/bytes/10,/p/status/404"); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(pipe.Results); got != "[{GET /p/1 HTTP/1.1 200 16 } {GET /p/bytes/10 HTTP/1.1 200 10 } {GET /p/status/404 HTTP/1.1 404 10 }]" {
		t.Errorf("pipelined results: %s", got)
	}

	var short peers.ShortReport
	if err := peers.RunJSON(ctx(t), p.client, &short, "short", "-addr", addr); err != nil {
		t.Fatal(err)
	}
	if short.Status != 200 || short.Conn.Sent == 0 || short.Conn.Recv == 0 {
		t.Errorf("short: %+v", short)
	}

	refused := netip.AddrPortFrom(p.server.IPv4(), 9).String()
	for _, mode := range []string{"-blocking=false", "-blocking=true"} {
		var d peers.DialReport
		if err := peers.RunJSON(ctx(t), p.client, &d, "dial", mode, "-addr", refused); err != nil {
			t.Fatal(err)
		}
		if !d.Refused {
			t.Errorf("dial %s to a closed port: %+v, want refused", mode, d)
		}
	}
}

func TestNginxLogsWhatCurlFetched(t *testing.T) {
	p := newPair(t)
	ip := p.server.IPv4()
	ng := peers.StartNginx(t, p.server, peers.NginxOptions{
		Listen:    netip.AddrPortFrom(ip, 80).String(),
		ListenH2C: netip.AddrPortFrom(ip, 81).String(),
		Files:     map[string]int{"f": 5000},
	})
	out, err := p.client.Exec(ctx(t), "curl", "-sS", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{http_version}\n",
		fmt.Sprintf("http://%s/x", ip), fmt.Sprintf("http://%s/files/f", ip))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "200 17 1.1\n200 5000 1.1\n" {
		t.Errorf("curl HTTP/1.1: %q", out)
	}
	out, err = p.client.Exec(ctx(t), "curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{http_version}\n",
		fmt.Sprintf("http://%s:81/y", ip))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "200 2\n" {
		t.Errorf("curl h2c: %q", out)
	}
	log, err := ng.WaitLog(ctx(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(log); !strings.Contains(got, "GET /files/f 200 5000") || !strings.Contains(got, "HTTP/2.0") {
		t.Errorf("nginx log: %s", got)
	}
}

func TestVectoredPeerReadsTheWholeResponse(t *testing.T) {
	p := newPair(t)
	peers.Start(t, p.server, "http-server", "http-server", "-listen", ":8080")
	var rep peers.VectoredReport
	addr := netip.AddrPortFrom(p.server.IPv4(), 8080).String()
	if err := peers.RunJSON(ctx(t), p.client, &rep, "vectored", "-addr", addr, "-path", "/v/bytes/5000", "-record", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	recv, err := os.ReadFile(rep.Conn.RecvFile)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != 200 || !bytes.HasSuffix(recv, peers.Pattern(5000)) || rep.Readvs < 2 {
		t.Errorf("vectored: status %d, %d readvs, body intact %v", rep.Status, rep.Readvs, bytes.HasSuffix(recv, peers.Pattern(5000)))
	}
}
