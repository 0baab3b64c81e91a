package demo

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weirnet/weir/tests/harness"
)

// Fixed names demo.sh uses; see the top of demo.sh.
const (
	stateDir = "/run/weir-demo"
	bridge   = "weirdemo0"
)

func TestDemoEnrollsTheShopPodsAndCleansUp(t *testing.T) {
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
	// Registered so a failing run still leaves the machine clean.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "./demo.sh", "--clean").CombinedOutput(); err != nil {
			t.Errorf("demo.sh --clean: %v\n%s", err, out)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./demo.sh", "--for", "1")
	cmd.Env = append(os.Environ(),
		"WEIR_BIN_DIR="+bins.Bin, "WEIR_CNI_BIN_DIR="+bins.CNIBin, "WEIR_TOOL_BIN_DIR="+bins.ToolBin,
		"WEIR_DEMO_HTTP=127.0.0.1:"+freePort(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, out)
	}
	listing := string(out)
	if i := strings.Index(listing, "weirctl pods"); i >= 0 {
		listing = listing[i:]
	}
	for _, want := range []string{"shop", "frontend", "loadgen", "data", "catalog", "reviews", "10.213.7."} {
		if !strings.Contains(listing, want) {
			t.Errorf("weirctl pods output after the demo's pods were added lacks %q:\n%s", want, out)
		}
	}

	assertCleanedUp(t, forward, chainsBefore)
}

// demoPods are the netns names demo.sh creates, one per pod.
var demoPods = []string{"wdemo-catalog", "wdemo-reviews", "wdemo-frontend", "wdemo-loadgen"}

// assertCleanedUp checks that nothing the demo creates is left: its state
// dir, bridge, netns, app processes, the ip_forward value and nat chains.
func assertCleanedUp(t *testing.T, forward []byte, chainsBefore map[string]bool) {
	t.Helper()
	if _, err := os.Stat(stateDir); err == nil {
		t.Errorf("%s left behind", stateDir)
	}
	if _, err := netlink.LinkByName(bridge); err == nil {
		t.Errorf("bridge %s left behind", bridge)
	}
	for _, ns := range demoPods {
		if harness.NetNSExists("/run/netns/" + ns) {
			t.Errorf("netns %s left behind", ns)
		}
	}
	if procs := demoProcesses(t); len(procs) > 0 {
		t.Errorf("demo processes left running: %v", procs)
	}
	if after, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(after) != string(forward) {
		t.Errorf("ip_forward %q after the demo, was %q", after, forward)
	}
	chainsAfter, err := harness.IPTablesChains("nat")
	if err != nil {
		t.Fatal(err)
	}
	for c := range chainsAfter {
		if strings.HasPrefix(c, "CNI-") && !chainsBefore[c] {
			t.Errorf("nat chain %s left behind", c)
		}
	}
}

// demoProcesses lists processes whose command line starts in the demo's
// state dir (the app roles, weir-daemon copies are not there).
func demoProcesses(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.HasPrefix(string(cmd), stateDir+"/") {
			continue
		}
		out = append(out, e.Name()+": "+strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return out
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
