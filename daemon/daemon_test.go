package daemon

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/config"
	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/enrollapi/spool"
	"github.com/weirnet/weir/internal/testenv"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func testConfig(t *testing.T) config.Config {
	t.Helper()
	dir, err := os.MkdirTemp("", "weird") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return config.Config{
		Socket:            filepath.Join(dir, "run", "weir.sock"),
		StateDir:          filepath.Join(dir, "state"),
		SpoolDir:          filepath.Join(dir, "state", "spool"),
		HTTP:              freeAddr(t),
		NodeName:          "test-node",
		LogLevel:          slog.LevelDebug,
		ReconcileInterval: config.Duration{Duration: time.Hour},
		MaxPods:           100,
		AllowedUIDs:       []uint32{uint32(os.Getuid())},
	}
}

type running struct {
	stop func() // cancels and waits; fails the test if Run returned an error
	api  *wire.Client
}

// start runs the daemon and waits until /readyz says ready.
func start(t *testing.T, cfg config.Config, components ...Component) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.DiscardHandler), components...) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run after cancel: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)

	client, err := wire.NewClient(cfg.HTTP, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("Run returned before ready: %v", err)
		default:
		}
		var status map[string]string
		if err := client.GetJSON(context.Background(), "/readyz", &status); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon not ready within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &running{stop: stop, api: client}
}

func enrollClient(t *testing.T, socket string) enrollpb.EnrollmentClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return enrollpb.NewEnrollmentClient(conn)
}

// podNetns creates a real network namespace for a test pod (privileged:
// the enrollment service refuses a netns path that is not one) and deletes
// it at cleanup.
func podNetns(t *testing.T, id string) (string, uint64) {
	t.Helper()
	testenv.Privileged(t, "creates network namespaces")
	name := fmt.Sprintf("weir-dt-%d-%s", os.Getpid(), id)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	p := "/var/run/netns/" + name
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, fi.Sys().(*syscall.Stat_t).Ino
}

// deleteNetns deletes a namespace made by podNetns, as a runtime does when
// the pod goes.
func deleteNetns(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "delete", filepath.Base(path)).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete: %v: %s", err, out)
	}
}

// podAddr gives every test pod id its own address, as IPAM would.
func podAddr(id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	v := h.Sum32()
	return fmt.Sprintf("10.%d.%d.%d/8", byte(v>>16), byte(v>>8), byte(v)|1)
}

func podIn(t *testing.T, id string) *enrollpb.Pod {
	path, ino := podNetns(t, id)
	return &enrollpb.Pod{
		Network: "kindnet", ContainerId: id, Ifname: "eth0", Netns: path, NetnsInode: ino,
		Namespace: "default", Name: "pod-" + id, Ips: []*enrollpb.IPConfig{{Address: podAddr(id)}},
	}
}

func names(t *testing.T, c *wire.Client) string {
	t.Helper()
	pods, err := c.Pods(context.Background())
	if err != nil {
		t.Fatalf("GET pods: %v", err)
	}
	var out []string
	for _, p := range pods {
		out = append(out, fmt.Sprintf("%d:%s", p.ID, p.SandboxID))
	}
	return strings.Join(out, ",")
}

// recorder is a component that observes the registry and adds a route.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) Name() string                  { return "recorder" }
func (r *recorder) Run(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
func (r *recorder) PodEnrolled(p *registry.Pod)   { r.add("+" + p.ContainerID) }
func (r *recorder) PodRemoved(p *registry.Pod)    { r.add("-" + p.ContainerID) }
func (r *recorder) add(s string)                  { r.mu.Lock(); r.events = append(r.events, s); r.mu.Unlock() }
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.events, " ")
}
func (r *recorder) RegisterHTTP(s *api.Server) {
	s.Handle("GET /api/v1/recorder", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		wire.WriteJSON(w, http.StatusOK, r.String())
	}))
}

func TestStartDrainsSpoolAndReconcilesBeforeServing(t *testing.T) {
	cfg := testConfig(t)

	// A pod enrolled by an earlier daemon whose netns vanished while down.
	reg, err := registry.Open(registry.Options{Dir: cfg.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	vanished := podIn(t, "vanished")
	if _, err := reg.Enroll(registry.PodFromProto(vanished)); err != nil {
		t.Fatal(err)
	}
	deleteNetns(t, vanished.GetNetns())

	// Calls the plugin spooled while the daemon was down.
	sp := spool.New(cfg.SpoolDir, 0)
	invalid := podIn(t, "invalid")
	invalid.NetnsInode = 0
	for _, rec := range []*enrollpb.SpoolRecord{
		{Op: &enrollpb.SpoolRecord_Enroll{Enroll: &enrollpb.EnrollRequest{Pod: podIn(t, "a")}}},
		{Op: &enrollpb.SpoolRecord_Enroll{Enroll: &enrollpb.EnrollRequest{Pod: podIn(t, "b")}}},
		{Op: &enrollpb.SpoolRecord_Unenroll{Unenroll: &enrollpb.UnenrollRequest{
			Network: "kindnet", Attachment: &enrollpb.Attachment{ContainerId: "b", Ifname: "eth0"}}}},
		{Op: &enrollpb.SpoolRecord_Enroll{Enroll: &enrollpb.EnrollRequest{Pod: invalid}}},
	} {
		if _, err := sp.Write(rec); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Microsecond) // distinct timestamps: names sort in write order
	}

	rec := &recorder{}
	d := start(t, cfg, rec)
	if got := names(t, d.api); got != "2:a" {
		t.Fatalf("pods after start = %q, want only a (id 2: id 1 was vanished's)", got)
	}
	if n, _ := sp.Pending(); n != 0 {
		t.Fatalf("%d spool records left after start", n)
	}
	bad, _ := filepath.Glob(filepath.Join(cfg.SpoolDir, "*.bad"))
	if len(bad) != 1 {
		t.Fatalf("invalid spool record not moved aside: %v", bad)
	}
	if got, want := rec.String(), "+vanished +a +b -b -vanished"; got != want {
		t.Fatalf("observer saw %q, want %q", got, want)
	}
	var viaRoute string
	if err := d.api.GetJSON(context.Background(), "/api/v1/recorder", &viaRoute); err != nil || viaRoute != rec.String() {
		t.Fatalf("component route = %q, %v", viaRoute, err)
	}

	// And the live socket works.
	if _, err := enrollClient(t, cfg.Socket).Enroll(context.Background(), &enrollpb.EnrollRequest{Pod: podIn(t, "c")}); err != nil {
		t.Fatalf("Enroll over the daemon's socket: %v", err)
	}
	if got := names(t, d.api); got != "2:a,4:c" {
		t.Fatalf("pods = %q, want a and c", got)
	}

	d.stop()
	if _, err := os.Stat(cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after shutdown: %v", err)
	}
}

func TestPeriodicRoundDropsGonePodsAndDrainsLateSpool(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReconcileInterval = config.Duration{Duration: 50 * time.Millisecond}
	d := start(t, cfg)

	p := podIn(t, "a")
	if _, err := enrollClient(t, cfg.Socket).Enroll(context.Background(), &enrollpb.EnrollRequest{Pod: p}); err != nil {
		t.Fatal(err)
	}
	// A plugin that timed out while the daemon was busy spools instead.
	if _, err := spool.New(cfg.SpoolDir, 0).Write(&enrollpb.SpoolRecord{
		Op: &enrollpb.SpoolRecord_Enroll{Enroll: &enrollpb.EnrollRequest{Pod: podIn(t, "late")}},
	}); err != nil {
		t.Fatal(err)
	}
	deleteNetns(t, p.GetNetns())

	deadline := time.Now().Add(10 * time.Second)
	for names(t, d.api) != "2:late" {
		if time.Now().After(deadline) {
			t.Fatalf("pods = %q, want only late after a round", names(t, d.api))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRestartKeepsPodsAndIDs(t *testing.T) {
	cfg := testConfig(t)
	d := start(t, cfg)
	c := enrollClient(t, cfg.Socket)
	for _, id := range []string{"a", "b"} {
		if _, err := c.Enroll(context.Background(), &enrollpb.EnrollRequest{Pod: podIn(t, id)}); err != nil {
			t.Fatal(err)
		}
	}
	before := names(t, d.api)
	d.stop()

	d2 := start(t, cfg)
	if after := names(t, d2.api); after != before || after != "1:a,2:b" {
		t.Fatalf("after restart pods = %q, before %q", after, before)
	}
}

type failing struct{}

func (failing) Name() string              { return "collector" }
func (failing) Run(context.Context) error { return errors.New("attach failed") }

func TestComponentFailureStopsTheDaemon(t *testing.T) {
	cfg := testConfig(t)
	errc := make(chan error, 1)
	go func() { errc <- Run(context.Background(), cfg, slog.New(slog.DiscardHandler), failing{}) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "collector: attach failed") {
			t.Fatalf("Run = %v, want the component's error", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop after a component failed")
	}
	if _, err := os.Stat(cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left after failure: %v", err)
	}
}

func TestSecondDaemonOnTheSameSocketFails(t *testing.T) {
	cfg := testConfig(t)
	start(t, cfg)
	second := cfg
	second.StateDir = filepath.Join(t.TempDir(), "state")
	second.HTTP = freeAddr(t)
	err := Run(context.Background(), second, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Run = %v, want a socket-in-use error", err)
	}
}

func TestCorruptRegistryFailsStart(t *testing.T) {
	cfg := testConfig(t)
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.StateDir, registry.FileName), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Run = %v, want a corrupt-registry error", err)
	}
}

// metricsComponent exports one counter through PrometheusRegistrar.
type metricsComponent struct{ fail bool }

func (metricsComponent) Name() string { return "metrics-test" }

func (metricsComponent) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func (c metricsComponent) RegisterMetrics(r prometheus.Registerer) error {
	if c.fail {
		// A second registration of the daemon's own gauge must be refused.
		return r.Register(prometheus.NewGauge(prometheus.GaugeOpts{Name: "weir_enrolled_pods", Help: "dup"}))
	}
	ctr := prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_test_component_total", Help: "test"})
	ctr.Add(3)
	return r.Register(ctr)
}

func TestMetricsServesDaemonAndComponentCollectors(t *testing.T) {
	cfg := testConfig(t)
	d := start(t, cfg, metricsComponent{})
	resp, err := http.Get("http://" + cfg.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{"weir_enrolled_pods 0", "weir_test_component_total 3", "go_goroutines ", "process_open_fds "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	d.stop()
}

func TestDuplicateComponentMetricFailsStart(t *testing.T) {
	cfg := testConfig(t)
	err := Run(context.Background(), cfg, slog.New(slog.DiscardHandler), metricsComponent{fail: true})
	if err == nil || !strings.Contains(err.Error(), "metrics-test: metrics:") {
		t.Fatalf("Run = %v, want the component's metrics error", err)
	}
}

func TestPprofIsServedOnlyWhenAskedFor(t *testing.T) {
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	off := testConfig(t)
	start(t, off)
	if code, _ := get("http://" + off.HTTP + "/debug/pprof/heap?debug=1"); code != http.StatusNotFound {
		t.Errorf("pprof off: GET /debug/pprof/heap = %d, want 404", code)
	}

	on := testConfig(t)
	on.Pprof = true
	start(t, on)
	if code, body := get("http://" + on.HTTP + "/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("pprof on: GET /debug/pprof/heap = %d %.80q, want 200 and a heap profile", code, body)
	}
	if code, body := get("http://" + on.HTTP + "/debug/pprof/profile?seconds=1"); code != http.StatusOK || len(body) == 0 {
		t.Errorf("pprof on: GET /debug/pprof/profile?seconds=1 = %d with %d bytes, want 200 and a profile", code, len(body))
	}
}
