package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/registry"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type podList []*registry.Pod

func (l podList) List() []*registry.Pod { return l }

// daemonAPI serves the real API handler over HTTP with the given pods.
func daemonAPI(t *testing.T, pods ...*registry.Pod) string {
	t.Helper()
	ts := httptest.NewServer(api.New(podList(pods), slog.New(slog.DiscardHandler)))
	t.Cleanup(ts.Close)
	return ts.URL
}

func pods() []*registry.Pod {
	return []*registry.Pod{
		{
			ID: 2, Network: "kindnet", ContainerID: "0123456789abcdef0123", Ifname: "eth0",
			NetnsInode: 4026532002, HostVeth: "veth2", Namespace: "shop", Name: "web-1", UID: "uid-web-1",
			IPs:        []registry.IPConfig{{Address: "10.0.0.2/24"}, {Address: "fd00::2/64"}},
			EnrolledAt: now.Add(-90 * time.Minute),
		},
		{
			ID: 1, Network: "kindnet", ContainerID: "abc", Ifname: "eth0",
			NetnsInode: 4026532001, Namespace: "default", Name: "db-0", UID: "uid-db-0",
			EnrolledAt: now.Add(-30 * time.Second),
		},
	}
}

func runCtl(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, func(k string) string { return env[k] }, func() time.Time { return now })
	return code, stdout.String(), stderr.String()
}

func TestPodsTable(t *testing.T) {
	url := daemonAPI(t, pods()...)
	code, out, errOut := runCtl(t, nil, "--http", url, "pods")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	want := strings.Join([]string{
		"NAMESPACE   NAME    UID         SANDBOX         NETNS-INODE   HOST-VETH   IPS                      AGE",
		"default     db-0    uid-db-0    abc             4026532001    <none>      <none>                   30s",
		"shop        web-1   uid-web-1   0123456789abc   4026532002    veth2       10.0.0.2/24,fd00::2/64   1h",
		"",
	}, "\n")
	if out != want {
		t.Fatalf("table:\n%s\nwant:\n%s", out, want)
	}
}

func TestPodsJSON(t *testing.T) {
	url := daemonAPI(t, pods()...)
	code, out, errOut := runCtl(t, nil, "--http", url, "pods", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var got []wire.Pod
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not a JSON pod list: %v\n%s", err, out)
	}
	if len(got) != 2 || got[0].Name != "db-0" || got[1].SandboxID != "0123456789abcdef0123" || got[1].IPs[1] != "fd00::2/64" {
		t.Fatalf("json pods = %+v", got)
	}
}

func TestAddressFromEnvAndFlagWins(t *testing.T) {
	url := daemonAPI(t, pods()...)
	if code, out, errOut := runCtl(t, map[string]string{"WEIR_HTTP": url}, "pods"); code != 0 || !strings.Contains(out, "web-1") {
		t.Fatalf("WEIR_HTTP not used: exit %d out %q err %q", code, out, errOut)
	}
	dead := deadAddr(t)
	if code, _, errOut := runCtl(t, map[string]string{"WEIR_HTTP": url}, "--http", dead, "pods"); code != 1 ||
		!strings.Contains(errOut, dead) {
		t.Fatalf("--http did not win over WEIR_HTTP: exit %d err %q", code, errOut)
	}
}

func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestDaemonNotRunning(t *testing.T) {
	addr := deadAddr(t)
	code, out, errOut := runCtl(t, nil, "--http", addr, "pods")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing", out)
	}
	if want := "weir-daemon is not reachable at " + addr + ": is it running?"; !strings.Contains(errOut, want) {
		t.Fatalf("stderr %q, want it to contain %q", errOut, want)
	}
}

func TestUsageErrors(t *testing.T) {
	url := daemonAPI(t)
	for name, args := range map[string][]string{
		"no command":      {},
		"unknown command": {"--http", url, "frobnicate"},
		"bad output":      {"--http", url, "pods", "-o", "yaml"},
		"stray argument":  {"--http", url, "pods", "extra"},
		"unknown flag":    {"--nope", "pods"},
	} {
		code, _, errOut := runCtl(t, nil, args...)
		if code != 2 {
			t.Errorf("%s: exit %d, want 2 (stderr %q)", name, code, errOut)
		}
	}
	code, _, errOut := runCtl(t, nil, "-h")
	if code != 0 || !strings.Contains(errOut, "pods") {
		t.Fatalf("-h: exit %d, stderr %q", code, errOut)
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Second: "5s", 3 * time.Minute: "3m", 5 * time.Hour: "5h", 72 * time.Hour: "3d", -time.Second: "0s",
	} {
		if got := age(now, now.Add(-d)); got != want {
			t.Errorf("age(%s) = %s, want %s", d, got, want)
		}
	}
	if got := age(now, time.Time{}); got != "<unknown>" {
		t.Errorf("age(zero) = %s", got)
	}
}
