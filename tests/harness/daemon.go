package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// DefaultReadyTimeout bounds how long Start waits for GET /readyz.
const DefaultReadyTimeout = 20 * time.Second

// maxAPIBody bounds an HTTP API response read by the harness.
const maxAPIBody = 16 << 20

// DaemonOptions configures a Daemon.
type DaemonOptions struct {
	NodeName  string   // --node-name; default "weir-test-<suffix>"
	ExtraArgs []string // appended to the command line
}

// Daemon is a weir-daemon process with a private socket, state directory
// and loopback HTTP port. It keeps all three across Restart, as a real
// daemon keeps them across a node agent restart, so pods persisted by the
// first run must be found again by the second.
type Daemon struct {
	Bin      string
	Socket   string // enrollment gRPC socket: the plugin's daemonSocket
	StateDir string
	SpoolDir string // StateDir/spool: the plugin's spoolDir
	HTTPAddr string // 127.0.0.1:<port>
	NodeName string
	LogFile  string // combined stdout/stderr of every run, appended

	t     testing.TB
	extra []string
	proc  *Process
	http  *http.Client
}

// NewDaemon prepares (but does not start) a daemon. Its socket lives in a
// short /tmp directory because sun_path holds at most 107 bytes, and test
// temp dirs named after long test names can exceed that.
func NewDaemon(t testing.TB, bins Binaries, opts DaemonOptions) *Daemon {
	t.Helper()
	MountKernelFS(t)
	sockDir, err := os.MkdirTemp("", "weir-sock-")
	if err != nil {
		t.Fatalf("create socket dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	port, err := freeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	if opts.NodeName == "" {
		opts.NodeName = "weir-test-" + Suffix()
	}
	state := t.TempDir()
	d := &Daemon{
		Bin:      bins.Path("weir-daemon"),
		Socket:   filepath.Join(sockDir, "weir.sock"),
		StateDir: state,
		SpoolDir: filepath.Join(state, "spool"),
		HTTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		NodeName: opts.NodeName,
		LogFile:  filepath.Join(t.TempDir(), "weir-daemon.log"),
		t:        t,
		extra:    opts.ExtraArgs,
		http:     &http.Client{Timeout: 5 * time.Second},
	}
	// Registered before any Start so it runs after the process is stopped.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if b, err := os.ReadFile(d.LogFile); err == nil {
			t.Logf("weir-daemon log (%s):\n%s", d.LogFile, tail(b, 64<<10))
		}
	})
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Logf("stop weir-daemon: %v", err)
		}
	})
	return d
}

// StartDaemon is NewDaemon followed by Start, failing the test on error.
func StartDaemon(t testing.TB, bins Binaries, opts DaemonOptions) *Daemon {
	t.Helper()
	d := NewDaemon(t, bins, opts)
	ctx, cancel := context.WithTimeout(context.Background(), DefaultReadyTimeout)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

// SetExtraArgs replaces the flags added to the daemon's command line from
// the next Start on: one daemon (same socket, state and pods) can then be
// measured in several configurations.
func (d *Daemon) SetExtraArgs(args []string) { d.extra = slices.Clone(args) }

// Args is the daemon's command line (without the program name).
func (d *Daemon) Args() []string {
	return append([]string{
		"--socket", d.Socket,
		"--state-dir", d.StateDir,
		"--http", d.HTTPAddr,
		"--node-name", d.NodeName,
	}, d.extra...)
}

// Start runs the daemon and waits until GET /readyz answers 200.
func (d *Daemon) Start(ctx context.Context) error {
	if d.proc != nil {
		if exited, _ := d.proc.Exited(); !exited {
			return fmt.Errorf("weir-daemon already running (pid %d)", d.proc.Pid())
		}
	}
	logf, err := os.OpenFile(d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open daemon log: %w", err)
	}
	defer logf.Close() // the child holds its own copy of the descriptor
	fmt.Fprintf(logf, "=== start %s %v\n", time.Now().Format(time.RFC3339Nano), d.Args())
	cmd := exec.Command(d.Bin, d.Args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProcess("weir-daemon", cmd, DefaultOutputLimit)
	if err != nil {
		return err
	}
	d.proc = p
	if err := d.waitReady(ctx); err != nil {
		b, _ := os.ReadFile(d.LogFile)
		return fmt.Errorf("weir-daemon not ready: %w\nlog:\n%s", err, tail(b, 16<<10))
	}
	return nil
}

func (d *Daemon) waitReady(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL("/readyz"), nil)
		if err != nil {
			return err
		}
		resp, err := d.http.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAPIBody))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("GET /readyz: %s", resp.Status)
		} else {
			last = err
		}
		select {
		case <-d.proc.Done():
			_, werr := d.proc.Exited()
			return fmt.Errorf("process exited: %v", werr)
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// Stop terminates the daemon (SIGTERM, then SIGKILL) and reaps it. Stopping
// a daemon that is not running is a no-op.
func (d *Daemon) Stop() error {
	if d.proc == nil {
		return nil
	}
	err := d.proc.Stop()
	d.proc = nil
	return err
}

// Restart stops and starts the daemon with the same socket, state and port.
func (d *Daemon) Restart(ctx context.Context) error {
	if err := d.Stop(); err != nil {
		return fmt.Errorf("stop for restart: %w", err)
	}
	return d.Start(ctx)
}

// Running reports whether the daemon process is alive.
func (d *Daemon) Running() bool {
	if d.proc == nil {
		return false
	}
	exited, _ := d.proc.Exited()
	return !exited
}

// URL returns the daemon's HTTP API URL for path.
func (d *Daemon) URL(path string) string { return "http://" + d.HTTPAddr + path }

// PodRecord is one entry of GET /api/v1/pods.
type PodRecord struct {
	ID               uint32    `json:"id"`
	Network          string    `json:"network"`
	Namespace        string    `json:"namespace"`
	Name             string    `json:"name"`
	UID              string    `json:"uid"`
	SandboxID        string    `json:"sandboxID"`
	InfraContainerID string    `json:"infraContainerID"`
	NetNS            string    `json:"netns"`
	NetNSInode       uint64    `json:"netnsInode"`
	IfName           string    `json:"ifname"`
	IfIndex          int       `json:"ifIndex"`
	HostVeth         string    `json:"hostVeth"`
	HostVethIndex    int       `json:"hostVethIndex"`
	IPs              []string  `json:"ips"`
	EnrolledAt       time.Time `json:"enrolledAt"`
}

// GetJSON fetches an API path and decodes its JSON body into v.
func (d *Daemon) GetJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL(path), nil)
	if err != nil {
		return err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return fmt.Errorf("GET %s: read body: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, tail(body, 2048))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decode: %w: %s", path, err, tail(body, 2048))
	}
	return nil
}

// Pods returns the daemon's enrolled pods (GET /api/v1/pods).
func (d *Daemon) Pods(ctx context.Context) ([]PodRecord, error) {
	var pods []PodRecord
	if err := d.GetJSON(ctx, "/api/v1/pods", &pods); err != nil {
		return nil, err
	}
	return pods, nil
}

// WaitPods polls the pod list until cond holds or ctx ends, returning the
// last list seen. Enrollment from the spool is asynchronous, so suites wait
// for the state they expect instead of sleeping.
func (d *Daemon) WaitPods(ctx context.Context, cond func([]PodRecord) bool) ([]PodRecord, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last []PodRecord
	var lastErr error
	for {
		pods, err := d.Pods(ctx)
		if err == nil {
			last, lastErr = pods, nil
			if cond(pods) {
				return pods, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
			}
			return last, fmt.Errorf("condition not met: %w; last pod list: %+v", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// FindPod returns the record for a sandbox (container) ID, if listed.
func FindPod(pods []PodRecord, sandboxID string) (PodRecord, bool) {
	for _, p := range pods {
		if p.SandboxID == sandboxID {
			return p, true
		}
	}
	return PodRecord{}, false
}

func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return fmt.Sprintf("[... %d bytes cut]\n%s", len(b)-n, b[len(b)-n:])
}
