package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/ui"
)

// Bounds of the shop test.
const (
	startTimeout   = 2 * time.Minute  // demo.sh up to "Weir is running."
	trafficWarmup  = 30 * time.Second // loadgen traffic before the first check
	trafficTimeout = 75 * time.Second // latest moment the API must show the shop
	stopTimeout    = time.Minute      // Ctrl-C to clean
)

// Wire shapes of the aggregation API (daemon/metrics), only the fields the
// demo's assertions read.
type httpStats struct {
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	SuccessRate float64 `json:"successRate"`
}

type tcpStats struct {
	Retransmits int64 `json:"retransmits"`
	Drops       int64 `json:"drops"`
}

type service struct {
	Name string    `json:"name"`
	HTTP httpStats `json:"http"`
	TCP  tcpStats  `json:"tcp"`
}

type edge struct {
	Source   string    `json:"source"`
	Target   string    `json:"target"`
	Protocol string    `json:"protocol"`
	HTTP     httpStats `json:"http"`
	TCP      tcpStats  `json:"tcp"`
	Error    bool      `json:"error"`
}

type topology struct {
	Edges []edge `json:"edges"`
}

type endpoint struct {
	Endpoint string `json:"endpoint"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	Requests int64  `json:"requests"`
}

// syncBuffer is demo.sh's output, written by exec and read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, e.Error)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}

// shopProblems checks what the demo traffic must create and returns what
// is missing (nil when everything is there).
func shopProblems(ctx context.Context, base string) []string {
	var problems []string
	var services []service
	if err := getJSON(ctx, base+"/api/v1/services", &services); err != nil {
		return []string{err.Error()}
	}
	byName := map[string]service{}
	for _, s := range services {
		byName[s.Name] = s
	}
	for _, want := range []string{"frontend.shop", "catalog.data", "reviews.data"} {
		if s, ok := byName[want]; !ok {
			problems = append(problems, "no service "+want)
		} else if s.HTTP.Requests == 0 {
			problems = append(problems, "service "+want+" served no HTTP requests")
		}
	}
	if r := byName["reviews.data"]; r.HTTP.Errors == 0 {
		problems = append(problems, fmt.Sprintf("reviews.data shows no errors (http %+v); it fails ~10%% of requests", r.HTTP))
	}

	var topo topology
	if err := getJSON(ctx, base+"/api/v1/topology", &topo); err != nil {
		return append(problems, err.Error())
	}
	find := func(src, dst, proto string) *edge {
		for i, e := range topo.Edges {
			if e.Source == src && e.Target == dst && e.Protocol == proto {
				return &topo.Edges[i]
			}
		}
		return nil
	}
	if e := find("frontend.shop", "catalog.data", "HTTP/2"); e == nil || e.HTTP.Requests == 0 {
		problems = append(problems, "no HTTP/2 (gRPC) edge frontend.shop → catalog.data with requests")
	}
	if e := find("frontend.shop", "reviews.data", "HTTP/1.1"); e == nil {
		problems = append(problems, "no HTTP/1.1 edge frontend.shop → reviews.data")
	} else {
		if !e.Error || e.HTTP.Errors == 0 {
			problems = append(problems, fmt.Sprintf("edge frontend.shop → reviews.data is not an error edge: %+v", *e))
		}
		// The link into reviews loses packets; frontend's keep-alive
		// connections resend them from the retransmit timer, outside any
		// syscall, and the edge must show that while they are open.
		if e.TCP.Retransmits == 0 {
			problems = append(problems, fmt.Sprintf("edge frontend.shop → reviews.data shows no retransmits through the lossy link: %+v", *e))
		}
	}
	if e := find("loadgen.shop", "frontend.shop", "HTTP/1.1"); e == nil {
		problems = append(problems, "no HTTP/1.1 edge loadgen.shop → frontend.shop")
	}

	var eps []endpoint
	if err := getJSON(ctx, base+"/api/v1/services/frontend.shop/endpoints", &eps); err != nil {
		return append(problems, err.Error())
	}
	found := false
	for _, e := range eps {
		if e.Endpoint == "GET:/product/{id}" && e.Method == "GET" && e.Path == "/product/{id}" && e.Requests > 0 {
			found = true
		}
	}
	if !found {
		problems = append(problems, fmt.Sprintf("frontend.shop has no endpoint GET:/product/{id}: %+v", eps))
	}
	return problems
}

func TestDemoShopShowsUpInTheAPIAndTheDashboard(t *testing.T) {
	harness.RequireRoot(t)
	bins := harness.FindBinaries(t, []string{"weir", "weir-daemon", "weirctl", "weir-install"},
		[]string{"bridge", "host-local", "portmap", "loopback"})
	if _, err := os.Stat(stateDir); err == nil {
		t.Skipf("%s exists: a demo is running on this machine; not disturbing it", stateDir)
	}
	forward, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	chainsBefore, err := harness.IPTablesChains("nat")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "./demo.sh", "--clean").CombinedOutput(); err != nil {
			t.Errorf("demo.sh --clean: %v\n%s", err, out)
		}
	})

	port := freePort(t)
	base := "http://127.0.0.1:" + port
	var out syncBuffer
	cmd := exec.Command("./demo.sh")
	cmd.Env = append(os.Environ(),
		"WEIR_BIN_DIR="+bins.Bin, "WEIR_CNI_BIN_DIR="+bins.CNIBin, "WEIR_TOOL_BIN_DIR="+bins.ToolBin,
		"WEIR_DEMO_HTTP=127.0.0.1:"+port)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGINT) // what Ctrl-C sends
		select {
		case err := <-done:
			return err
		case <-time.After(stopTimeout):
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("demo.sh did not stop within %v of SIGINT", stopTimeout)
		}
	}
	t.Cleanup(func() { stop() })

	startDeadline := time.After(startTimeout)
	for !strings.Contains(out.String(), "Weir is running.") {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("demo.sh exited before the demo ran: %v\n%s", err, out.String())
		case <-startDeadline:
			t.Fatalf("demo.sh not running after %v:\n%s", startTimeout, out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if !strings.Contains(out.String(), "dashboard:  "+base+"/") {
		t.Errorf("demo.sh does not print the dashboard URL %s/:\n%s", base, out.String())
	}

	time.Sleep(trafficWarmup)
	ctx, cancel := context.WithTimeout(context.Background(), trafficTimeout)
	defer cancel()
	var problems []string
	for {
		if problems = shopProblems(ctx, base); len(problems) == 0 || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(3 * time.Second):
		}
	}
	for _, p := range problems {
		t.Errorf("after %v of demo traffic: %s", trafficWarmup, p)
	}

	b := ui.NewBrowser(t)
	for _, v := range []struct{ route, view, ready, name string }{
		{"services", "services", `tr[data-service="reviews.data"]`, "demo-services"},
		{"topology", "topology", `g.edge[data-source="frontend.shop"][data-target="catalog.data"]`, "demo-topology"},
		{"service/reviews.data", "service", ".chart", "demo-service-reviews"},
		{"endpoints/frontend.shop", "endpoints", `tr[data-endpoint="GET:/product/{id}"]`, "demo-endpoints"},
		{"pods", "pods", `tr[data-pod="data/reviews"]`, "demo-pods"},
	} {
		text, err := b.View(base+"/#/"+v.route, v.view, v.ready)
		if err != nil {
			t.Errorf("dashboard: %v", err)
		}
		if path, err := b.Screenshot(v.name); err != nil {
			t.Error(err)
		} else {
			t.Logf("screenshot %s", path)
		}
		if err == nil && strings.Contains(text, "unreachable") {
			t.Errorf("dashboard %s: %s", v.route, text)
		}
	}
	if errs := b.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("browser console errors:\n%s", strings.Join(errs, "\n"))
	}

	saveLogs(t)
	if err := stop(); err != nil {
		// demo.sh exits 130 after Ctrl-C, like any interrupted command.
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
			t.Errorf("demo.sh after SIGINT: %v\n%s", err, out.String())
		}
	}
	assertCleanedUp(t, forward, chainsBefore)
	if t.Failed() {
		t.Logf("demo.sh output:\n%s", out.String())
	}
}

// saveLogs copies the demo's logs (daemon, plugin, app roles) next to the
// screenshots, before the cleanup removes them.
func saveLogs(t *testing.T) {
	t.Helper()
	dir := filepath.Join(filepath.Dir(ui.ArtifactsDir(t)), "demo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Error(err)
		return
	}
	logs, _ := filepath.Glob(filepath.Join(stateDir, "*.log"))
	for _, l := range logs {
		if data, err := os.ReadFile(l); err == nil {
			os.WriteFile(filepath.Join(dir, filepath.Base(l)), data, 0o644)
		}
	}
	t.Logf("demo logs in %s", dir)
}
