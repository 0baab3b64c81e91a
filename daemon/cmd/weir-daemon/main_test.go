package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weirnet/weir/internal/testenv"
)

// The test binary doubles as weir-daemon when this variable is set, so the
// signal test runs the real main in a child process.
const childEnv = "WEIR_DAEMON_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "weirm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func baseArgs(t *testing.T) []string {
	dir := shortDir(t)
	return []string{
		"--socket", filepath.Join(dir, "weir.sock"), "--state-dir", filepath.Join(dir, "state"),
		"--http", freeAddr(t), "--allowed-uids", "0," + strconv.Itoa(os.Getuid()),
	}
}

// logLines decodes JSON log lines.
func logLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q\nfull log:\n%s", sc.Text(), out)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestConfigErrorExits2NamingTheKey(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), append(baseArgs(t), "--max-pods", "0"), &stderr)
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	lines := logLines(t, stderr.String())
	if len(lines) != 1 || lines[0]["key"] != "maxPods" || lines[0]["level"] != "ERROR" {
		t.Fatalf("log = %s, want one ERROR line with key maxPods", stderr.String())
	}
}

func TestRuntimeErrorExits1(t *testing.T) {
	// Capture off: the failure under test is the registry's, and without
	// eBPF the test needs no privilege.
	args := append(baseArgs(t), "--capture.enabled=false")
	stateDir := args[3]
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "pods.json"), []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), args, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1 (stderr %s)", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "corrupt") {
		t.Fatalf("stderr %s does not explain the failure", stderr.String())
	}
}

func TestHelpExits0(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &stderr); code != 0 || !strings.Contains(stderr.String(), "-state-dir") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestSIGTERMStopsCleanly(t *testing.T) {
	testenv.Privileged(t, "starts the daemon with eBPF capture")
	args := baseArgs(t)
	socket, httpAddr := args[1], args[5]
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	waited := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		cmd.Process.Kill() // no-op once the child exited
		<-waited
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready; stderr:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(socket); err != nil {
		t.Fatalf("socket not created: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not exit within 15s of SIGTERM")
	}
	if _, err := os.Stat(socket); err == nil {
		t.Error("socket file left after SIGTERM")
	}
	found := false
	for _, l := range logLines(t, stderr.String()) {
		if l["msg"] == "weir-daemon stopped" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no shutdown log line; stderr:\n%s", stderr.String())
	}
}

// TestCaptureLoadFailureExits1NamingTheCause runs the daemon as an
// unprivileged user: loading eBPF is refused, and the daemon must say so
// and exit 1 rather than run without the capture it was configured for.
func TestCaptureLoadFailureExits1NamingTheCause(t *testing.T) {
	testenv.Privileged(t, "starts the daemon as another, unprivileged user")
	// The test binary's directory may not be searchable by nobody: copy it.
	dir := shortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "weir-daemon.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, baseArgs(t)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want code 1; stderr:\n%s", err, stderr.String())
	}
	lines := logLines(t, stderr.String())
	last := lines[len(lines)-1]
	cause, _ := last["cause"].(string)
	if last["msg"] != "eBPF capture cannot start" || !strings.Contains(cause, "not permitted to load eBPF programs: run weir-daemon as root") {
		t.Fatalf("last log line = %v, want the permission cause", last)
	}
}

// TestCaptureDisabledRunsWithoutEBPF: capture.enabled=false starts the
// daemon (enrollment only) and the features view says capture is off.
func TestCaptureDisabledRunsWithoutEBPF(t *testing.T) {
	args := append(baseArgs(t), "--capture.enabled=false")
	httpAddr := args[5]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { done <- run(ctx, args, &stderr) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/api/v1/features")
		if err == nil {
			var f struct {
				Capture bool   `json:"capture"`
				Reason  string `json:"reason"`
			}
			err = json.NewDecoder(resp.Body).Decode(&f)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if f.Capture || !strings.Contains(f.Reason, "capture.enabled is false") {
				t.Fatalf("features = %+v, want capture off with the reason", f)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not serving; stderr:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
