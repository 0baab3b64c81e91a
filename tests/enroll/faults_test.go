package enroll

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/weirnet/weir/tests/harness"
)

// withWeirEntry returns n's conflist with its weir entry changed by edit, as
// an operator editing the installed file (or a version skew) would leave it.
func withWeirEntry(t *testing.T, n *harness.Network, edit func(map[string]any)) *libcni.NetworkConfigList {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(n.List.Bytes, &doc); err != nil {
		t.Fatal(err)
	}
	for _, p := range doc["plugins"].([]any) {
		if m := p.(map[string]any); m["type"] == "weir" {
			edit(m)
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	l, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// hostVeth returns the host-side interface name the bridge plugin reported.
func hostVeth(t *testing.T, p *harness.Pod) string {
	t.Helper()
	for _, i := range p.Result.Interfaces {
		if i.Sandbox == "" && i.Mac != "" && i.Name != p.Net.Bridge {
			return i.Name
		}
	}
	t.Fatalf("ADD result of %s names no host veth: %+v", p.Name, p.Result.Interfaces)
	return ""
}

// leaseFiles returns host-local's lease files for n (one per address held).
func leaseFiles(t *testing.T, n *harness.Network) []string {
	t.Helper()
	var doc struct {
		Plugins []struct {
			IPAM struct {
				DataDir string `json:"dataDir"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(n.List.Bytes, &doc); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(doc.Plugins[0].IPAM.DataDir, n.Name)
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// Item 1: an invalid weir entry must not stop DEL from reaching bridge and
// host-local, nor from unenrolling the pod.
func TestDelWithInvalidWeirEntryFreesAddressVethAndUnenrolls(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	pods := f.addPods(t, 2)
	f.waitExactly(t, pods...)
	veth := hostVeth(t, pods[0])
	leases := len(leaseFiles(t, f.net))

	bad := withWeirEntry(t, f.net, func(m map[string]any) { m["failurePolicy"] = "Ignore"; m["timeout"] = "-1s" })
	if err := f.net.CNI.DelNetworkList(ctxFor(t, 30*time.Second), bad, pods[0].RuntimeConf()); err != nil {
		t.Fatalf("CNI DEL with an invalid weir entry: %v (want success: DEL must not block teardown)", err)
	}
	if _, err := netlink.LinkByName(veth); err == nil {
		t.Errorf("host veth %s still exists: bridge never ran its DEL", veth)
	}
	if got := len(leaseFiles(t, f.net)); got >= leases {
		t.Errorf("host-local holds %d leases after DEL, had %d: the address leaked", got, leases)
	}
	f.waitExactly(t, pods[1])
}

// Item 1, second half: ADD keeps rejecting the invalid entry with code 7, and
// the runtime's cleanup DEL after that failed ADD succeeds and frees the lease.
func TestFailedAddWithInvalidWeirEntryIsCleanedUpByDel(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	bad := withWeirEntry(t, f.net, func(m map[string]any) { m["timeout"] = "-1s" })
	p := f.net.NewPod(t, harness.PodSpec{Namespace: "ops", Name: "typo"})
	_, err := f.net.CNI.AddNetworkList(ctxFor(t, 30*time.Second), bad, p.RuntimeConf())
	if err == nil {
		t.Fatal("ADD succeeded with timeout -1s")
	}
	if e := cniError(t, err); e.Code != types.ErrInvalidNetworkConfig {
		t.Fatalf("ADD error code = %d (%s), want %d", e.Code, e.Msg, types.ErrInvalidNetworkConfig)
	}
	if len(leaseFiles(t, f.net)) == 0 {
		t.Fatal("bridge/host-local took no lease before weir failed: the test proves nothing")
	}
	if err := f.net.CNI.DelNetworkList(ctxFor(t, 30*time.Second), bad, p.RuntimeConf()); err != nil {
		t.Fatalf("cleanup DEL after the failed ADD: %v", err)
	}
	if l := leaseFiles(t, f.net); len(l) != 0 {
		t.Errorf("leases %v remain after the cleanup DEL", l)
	}
	f.waitExactly(t)
}

// Item 2: ADD spools while the daemon is stopped (SIGSTOP), the daemon
// resumes, a live DEL finds nothing to remove; the spooled ADD must not
// resurrect the pods on the next drain. The drain must come after the DELs
// (as with the default 30s interval): the interval is longer than the
// stopped time, and the test checks the records were still spooled.
func TestSpooledAddDoesNotResurrectPodsALiveDelRemoved(t *testing.T) {
	const interval = 15 * time.Second
	f := newFixture(t, fixtureOptions{})
	f.daemon.SetExtraArgs([]string{"--reconcile-interval", interval.String()})
	f.startDaemon(t)
	keep := f.net.AddPod(t, harness.PodSpec{Namespace: "team", Name: "keep"})
	f.waitExactly(t, keep)

	pid := f.daemon.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	var px []*harness.Pod
	for i := range 3 {
		// Each ADD waits out the plugin's 2s timeout, then spools.
		px = append(px, f.net.AddPod(t, harness.PodSpec{Namespace: "team", Name: fmt.Sprint("px-", i)}))
	}
	if n := spoolRecords(t, f.daemon.SpoolDir); n != len(px) {
		t.Fatalf("%d spool records after %d ADDs to a stopped daemon", n, len(px))
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	for _, p := range px {
		if err := p.Del(ctxFor(t, 30*time.Second)); err != nil {
			t.Fatalf("live DEL of %s: %v", p.Name, err)
		}
	}
	if n := spoolRecords(t, f.daemon.SpoolDir); n != len(px) {
		t.Fatalf("a drain ran before the live DELs (%d records left): this run cannot tell", n)
	}
	// After the next drain, only keep is listed and the spool is empty.
	deadline := time.Now().Add(interval + time.Second)
	for time.Now().Before(deadline) || spoolRecords(t, f.daemon.SpoolDir) != 0 {
		recs, err := f.daemon.Pods(ctxFor(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if got := recordIDs(recs); !slices.Equal(got, sandboxIDs([]*harness.Pod{keep})) {
			t.Fatalf("daemon lists %v after the live DELs, want only %s: a spooled ADD resurrected a pod", got, keep.ContainerID)
		}
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatal("spool never drained")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Skipped because the live DEL was newer, not merely refused later.
	if got := metricValue(t, f.daemon, "weir_enroll_spool_superseded_total"); got != float64(len(px)) {
		t.Errorf("weir_enroll_spool_superseded_total = %v, want %d", got, len(px))
	}
}

// metricValue reads one unlabelled sample (or the first matching line) from
// the daemon's /metrics.
func metricValue(t *testing.T, d *harness.Daemon, series string) float64 {
	t.Helper()
	b, err := d.Get(ctxFor(t, 5*time.Second), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("/metrics has no series %s", series)
	return 0
}

func spoolRecords(t *testing.T, dir string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.rec"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

// repairArgs makes the daemon repair from f's network's private libcni
// cache every interval, without a CRI runtime (the suite has none).
func repairArgs(f *fixture, interval time.Duration, extra ...string) []string {
	return append([]string{"--reconcile-interval", interval.String(), "--cni-cache-dir", f.net.CacheDir, "--cri-socket", ""}, extra...)
}

// Item 3: an ADD the daemon refuses (registry full) succeeds, is counted,
// and the pod is enrolled once a slot frees.
func TestPodRefusedByAFullRegistryIsRepairedWhenASlotFrees(t *testing.T) {
	const interval = time.Second
	f := newFixture(t, fixtureOptions{})
	f.daemon.SetExtraArgs(repairArgs(f, interval, "--max-pods", "2"))
	f.startDaemon(t)
	pods := f.addPods(t, 3)
	f.waitExactly(t, pods[0], pods[1])
	if got := metricValue(t, f.daemon, `weir_enroll_refused_total{reason="registry_full"}`); got < 1 {
		t.Errorf(`weir_enroll_refused_total{reason="registry_full"} = %v, want at least 1`, got)
	}
	if err := pods[0].Del(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f.waitExactly(t, pods[1], pods[2])
	if took := time.Since(start); took > 3*interval {
		t.Errorf("repair took %v, more than a few reconcile intervals (%v)", took, interval)
	}
	if got := metricValue(t, f.daemon, "weir_enroll_repaired_total"); got != 1 {
		t.Errorf("weir_enroll_repaired_total = %v, want 1", got)
	}
	r := mustRecord(t, f.waitExactly(t, pods[1], pods[2]), pods[2])
	assertIPs(t, r, pods[2])
	if r.HostVeth == "" || r.Name != pods[2].Name || r.Namespace != pods[2].Namespace {
		t.Errorf("repaired record %+v lacks the host veth or the pod's names", r)
	}
}

// Item 3: pods whose spool record the full spool dropped are enrolled when
// the daemon starts.
func TestPodsTheFullSpoolDroppedAreRepairedAtStart(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.net = f.newNetworkWith(t, map[string]any{"spoolMaxRecords": 1})
	f.daemon.SetExtraArgs(repairArgs(f, time.Hour))
	pods := f.addPods(t, 3)
	if n := spoolRecords(t, f.daemon.SpoolDir); n != 1 {
		t.Fatalf("%d spool records, want 1 (spoolMaxRecords 1)", n)
	}
	f.startDaemon(t)
	f.waitExactly(t, pods...)
	if got := metricValue(t, f.daemon, "weir_enroll_repaired_total"); got != 2 {
		t.Errorf("weir_enroll_repaired_total = %v, want 2", got)
	}
}

// Items 3 and 4: the plugin spools into a directory the daemon does not
// read. The pods are repaired anyway, and the daemon reports the mismatch.
func TestPodsStrandedInAnotherSpoolAreRepairedAndTheMismatchReported(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	elsewhere := filepath.Join(t.TempDir(), "other-spool")
	f.net = f.newNetworkWith(t, map[string]any{"spoolDir": elsewhere})
	f.daemon.SetExtraArgs(repairArgs(f, time.Hour, "--cni-conf-dir", f.net.ConfDir))
	pods := f.addPods(t, 2)
	if n := spoolRecords(t, elsewhere); n != 2 {
		t.Fatalf("%d records in the plugin's spool, want 2", n)
	}
	f.startDaemon(t)
	f.waitExactly(t, pods...)
	var ready struct {
		Status   string   `json:"status"`
		Warnings []string `json:"warnings"`
	}
	if err := f.daemon.GetJSON(ctxFor(t, 5*time.Second), "/readyz", &ready); err != nil {
		t.Fatal(err)
	}
	if ready.Status != "ready" || len(ready.Warnings) != 1 || !strings.Contains(ready.Warnings[0], elsewhere) {
		t.Errorf("/readyz = %+v, want ready with one warning naming the plugin's spoolDir %s", ready, elsewhere)
	}
	if log, _ := os.ReadFile(f.daemon.LogFile); !strings.Contains(string(log), elsewhere) {
		t.Errorf("daemon log does not warn about spoolDir %s", elsewhere)
	}
}
