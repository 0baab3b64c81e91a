package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/weirnet/weir/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// waitTimeout bounds every wait for the daemon's pod list to change.
const waitTimeout = 15 * time.Second

var (
	needBin = []string{"weir-daemon", "weirctl"}
	needCNI = []string{"bridge", "host-local", "portmap", "weir"}
)

// fixture is a weir-daemon (not started) and a bridge + host-local +
// portmap + weir network whose weir entry points at it.
type fixture struct {
	bins   harness.Binaries
	daemon *harness.Daemon
	net    *harness.Network
}

type fixtureOptions struct {
	failurePolicy string // "" = plugin default (ignore)
	startDaemon   bool
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	harness.RequireRoot(t)
	f := &fixture{bins: harness.FindBinaries(t, needBin, needCNI)}
	f.daemon = harness.NewDaemon(t, f.bins, harness.DaemonOptions{})
	f.net = f.newNetwork(t, o.failurePolicy)
	if o.startDaemon {
		f.startDaemon(t)
	}
	return f
}

// newNetwork adds another weir-chained network enrolling with f's daemon.
func (f *fixture) newNetwork(t *testing.T, failurePolicy string) *harness.Network {
	t.Helper()
	return f.newNetworkOpts(t, failurePolicy, nil)
}

// newNetworkWith is newNetwork with extra (or overriding) weir entry keys.
func (f *fixture) newNetworkWith(t *testing.T, extra map[string]any) *harness.Network {
	t.Helper()
	return f.newNetworkOpts(t, "", extra)
}

func (f *fixture) newNetworkOpts(t *testing.T, failurePolicy string, extra map[string]any) *harness.Network {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "weir-plugin.log")
	t.Cleanup(func() {
		if b, err := os.ReadFile(logFile); err == nil && t.Failed() {
			t.Logf("weir plugin log (%s):\n%s", logFile, b)
		}
	})
	return harness.NewNetwork(t, f.bins, harness.NetworkOptions{
		PortMap: true,
		IPv6:    true,
		Weir: &harness.WeirConf{
			DaemonSocket:  f.daemon.Socket,
			SpoolDir:      f.daemon.SpoolDir,
			Timeout:       "2s",
			FailurePolicy: failurePolicy,
			LogFile:       logFile,
			Extra:         extra,
		},
	})
}

func (f *fixture) startDaemon(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.DefaultReadyTimeout)
	defer cancel()
	if err := f.daemon.Start(ctx); err != nil {
		t.Fatal(err)
	}
}

// addPods attaches n pods, each in its own Kubernetes namespace.
func (f *fixture) addPods(t *testing.T, n int) []*harness.Pod {
	t.Helper()
	pods := make([]*harness.Pod, 0, n)
	for i := range n {
		pods = append(pods, f.net.AddPod(t, harness.PodSpec{
			Namespace: fmt.Sprintf("team-%d", i),
			Name:      fmt.Sprintf("pod-%d", i),
		}))
	}
	return pods
}

// waitExactly waits until the daemon lists exactly the given pods.
func (f *fixture) waitExactly(t *testing.T, pods ...*harness.Pod) []harness.PodRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	want := sandboxIDs(pods)
	got, err := f.daemon.WaitPods(ctx, func(recs []harness.PodRecord) bool {
		return slices.Equal(recordIDs(recs), want)
	})
	if err != nil {
		t.Fatalf("daemon never listed exactly sandboxes %v: %v (listed %v)", want, err, recordIDs(got))
	}
	return got
}

func sandboxIDs(pods []*harness.Pod) []string {
	ids := make([]string, 0, len(pods))
	for _, p := range pods {
		ids = append(ids, p.ContainerID)
	}
	slices.Sort(ids)
	return ids
}

func recordIDs(recs []harness.PodRecord) []string {
	ids := make([]string, 0, len(recs))
	for _, r := range recs {
		ids = append(ids, r.SandboxID)
	}
	slices.Sort(ids)
	return ids
}

func mustRecord(t *testing.T, recs []harness.PodRecord, p *harness.Pod) harness.PodRecord {
	t.Helper()
	r, ok := harness.FindPod(recs, p.ContainerID)
	if !ok {
		t.Fatalf("pod %s/%s (sandbox %s) not listed by the daemon", p.Namespace, p.Name, p.ContainerID)
	}
	return r
}

// cniError extracts the CNI error a plugin returned through libcni.
func cniError(t *testing.T, err error) *types.Error {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a CNI plugin error, got %T: %v", err, err)
	}
	return e
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestEnrolledPodsMatchKernelAndCNIArgs(t *testing.T) {
	start := time.Now()
	f := newFixture(t, fixtureOptions{startDaemon: true})
	pods := f.addPods(t, 3)
	recs := f.waitExactly(t, pods...)

	bridge, err := netlink.LinkByName(f.net.Bridge)
	if err != nil {
		t.Fatalf("bridge %s: %v", f.net.Bridge, err)
	}
	seenIDs := map[uint32]bool{}
	for _, p := range pods {
		r := mustRecord(t, recs, p)
		t.Run(p.Name, func(t *testing.T) {
			if r.ID == 0 || seenIDs[r.ID] {
				t.Errorf("id %d: want a non-zero id unique among pods", r.ID)
			}
			seenIDs[r.ID] = true
			if r.Network != f.net.Name || r.IfName != p.IfName {
				t.Errorf("network/ifname = %q/%q, want %q/%q", r.Network, r.IfName, f.net.Name, p.IfName)
			}
			if r.Namespace != p.Namespace || r.Name != p.Name || r.UID != p.UID {
				t.Errorf("namespace/name/uid = %q/%q/%q, want %q/%q/%q (from K8S_POD_*)",
					r.Namespace, r.Name, r.UID, p.Namespace, p.Name, p.UID)
			}
			if r.InfraContainerID != p.ContainerID {
				t.Errorf("infraContainerID = %q, want %q", r.InfraContainerID, p.ContainerID)
			}
			if r.NetNS != p.NS.Path {
				t.Errorf("netns = %q, want %q", r.NetNS, p.NS.Path)
			}
			ino, err := harness.Inode(p.NS.Path)
			if err != nil {
				t.Fatal(err)
			}
			if r.NetNSInode != ino {
				t.Errorf("netnsInode = %d, stat(%s) says %d", r.NetNSInode, p.NS.Path, ino)
			}
			if r.EnrolledAt.Before(start.Add(-time.Second)) || r.EnrolledAt.After(time.Now().Add(time.Second)) {
				t.Errorf("enrolledAt %v outside the test's lifetime (started %v)", r.EnrolledAt, start)
			}
			assertIPs(t, r, p)
			assertVethPair(t, r, p, bridge)
		})
	}
}

// assertIPs compares the daemon's addresses with the ADD result's.
func assertIPs(t *testing.T, r harness.PodRecord, p *harness.Pod) {
	t.Helper()
	var got []string
	for _, s := range r.IPs {
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			t.Errorf("ips entry %q is not a CIDR: %v", s, err)
			continue
		}
		got = append(got, pr.String())
	}
	var want []string
	for _, pr := range p.IPs() {
		want = append(want, pr.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if len(want) != 2 {
		t.Fatalf("dual-stack pod has %d addresses in the ADD result (%v), want 2", len(want), want)
	}
	if !slices.Equal(got, want) {
		t.Errorf("ips = %v, ADD result has %v", got, want)
	}
}

// assertVethPair checks the recorded interface indexes and host veth name
// against netlink on both sides of the pair.
func assertVethPair(t *testing.T, r harness.PodRecord, p *harness.Pod, bridge netlink.Link) {
	t.Helper()
	var podIndex, peerIndex int
	err := p.NS.Do(func() error {
		l, err := netlink.LinkByName(p.IfName)
		if err != nil {
			return err
		}
		podIndex, peerIndex = l.Attrs().Index, l.Attrs().ParentIndex
		return nil
	})
	if err != nil {
		t.Fatalf("look up %s in pod netns: %v", p.IfName, err)
	}
	if r.IfIndex != podIndex {
		t.Errorf("ifIndex = %d, netlink in the pod netns says %d", r.IfIndex, podIndex)
	}
	if r.HostVethIndex != peerIndex {
		t.Errorf("hostVethIndex = %d, the pod interface's peer (iflink) is %d", r.HostVethIndex, peerIndex)
	}
	host, err := netlink.LinkByIndex(r.HostVethIndex)
	if err != nil {
		t.Fatalf("hostVethIndex %d not found in the host netns: %v", r.HostVethIndex, err)
	}
	if host.Attrs().Name != r.HostVeth {
		t.Errorf("hostVeth = %q, host link %d is named %q", r.HostVeth, r.HostVethIndex, host.Attrs().Name)
	}
	if host.Type() != "veth" || host.Attrs().MasterIndex != bridge.Attrs().Index {
		t.Errorf("host link %q is a %s enslaved to %d, want a veth on bridge %s (%d)",
			host.Attrs().Name, host.Type(), host.Attrs().MasterIndex, bridge.Attrs().Name, bridge.Attrs().Index)
	}
	var inResult bool
	for _, iface := range p.Result.Interfaces {
		inResult = inResult || (iface.Name == r.HostVeth && iface.Sandbox == "")
	}
	if !inResult {
		t.Errorf("hostVeth %q is not the host interface in the bridge plugin's result %+v", r.HostVeth, p.Result.Interfaces)
	}
}

func TestWeirctlListsTheSamePodsAsTheAPI(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	pods := f.addPods(t, 2)
	api := f.waitExactly(t, pods...)

	out, err := exec.CommandContext(ctxFor(t, 10*time.Second), f.bins.Path("weirctl"),
		"--http", f.daemon.HTTPAddr, "pods", "-o", "json").Output()
	if err != nil {
		t.Fatalf("weirctl pods -o json: %v", err)
	}
	var cli []harness.PodRecord
	if err := json.Unmarshal(out, &cli); err != nil {
		t.Fatalf("decode weirctl output: %v\n%s", err, out)
	}
	if !slices.Equal(recordIDs(cli), recordIDs(api)) {
		t.Fatalf("weirctl lists sandboxes %v, the API %v", recordIDs(cli), recordIDs(api))
	}
	for _, p := range pods {
		if c, a := mustRecord(t, cli, p), mustRecord(t, api, p); c.ID != a.ID || c.HostVeth != a.HostVeth {
			t.Errorf("pod %s: weirctl has id %d veth %q, API has id %d veth %q", p.Name, c.ID, c.HostVeth, a.ID, a.HostVeth)
		}
	}

	table, err := exec.CommandContext(ctxFor(t, 10*time.Second), f.bins.Path("weirctl"),
		"--http", f.daemon.HTTPAddr, "pods").Output()
	if err != nil {
		t.Fatalf("weirctl pods: %v", err)
	}
	for _, p := range pods {
		if !strings.Contains(string(table), p.Name) || !strings.Contains(string(table), p.IPv4().String()) {
			t.Errorf("weirctl pods table lacks pod %s (%s):\n%s", p.Name, p.IPv4(), table)
		}
	}
}

func TestPodsTalkOverHTTPWithWeirInTheChain(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	server := f.net.AddPod(t, harness.PodSpec{Namespace: "shop", Name: "server",
		PortMappings: []harness.PortMapping{{HostPort: 31080, ContainerPort: 8080, Protocol: "tcp"}}})
	client := f.net.AddPod(t, harness.PodSpec{Namespace: "shop", Name: "client"})
	f.waitExactly(t, server, client)
	server.StartHTTPServer(t, 8080)

	for _, url := range []string{
		"http://" + server.IPv4().String() + ":8080/",
		"http://[" + ipv6(t, server).String() + "]:8080/",
	} {
		out, err := client.Exec(ctxFor(t, 15*time.Second), "curl", "-sS", "--max-time", "5", url)
		if err != nil {
			t.Fatalf("client → server %s: %v", url, err)
		}
		if string(out) != harness.HTTPGreeting("server") {
			t.Fatalf("client got %q from %s, want %q", out, url, harness.HTTPGreeting("server"))
		}
	}
}

func ipv6(t *testing.T, p *harness.Pod) netip.Addr {
	t.Helper()
	for _, pr := range p.IPs() {
		if pr.Addr().Is6() {
			return pr.Addr()
		}
	}
	t.Fatalf("pod %s has no IPv6 address: %v", p.Name, p.IPs())
	return netip.Addr{}
}

func TestDelUnenrollsOnlyThatPod(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	pods := f.addPods(t, 3)
	f.waitExactly(t, pods...)

	if err := pods[1].Del(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatalf("CNI DEL: %v", err)
	}
	f.waitExactly(t, pods[0], pods[2])
	// DEL must be idempotent: the runtime retries it.
	if err := pods[1].Del(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatalf("second CNI DEL of the same pod: %v", err)
	}
	f.waitExactly(t, pods[0], pods[2])
}

func TestCheckPassesForEnrolledPods(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	pods := f.addPods(t, 3)
	f.waitExactly(t, pods...)
	for _, p := range pods {
		if err := p.Check(ctxFor(t, 30*time.Second)); err != nil {
			t.Errorf("CNI CHECK of %s: %v", p.Name, err)
		}
	}
}

func TestGCDeletesAndUnenrollsAttachmentsOutsideValidSet(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	pods := f.addPods(t, 3)
	f.waitExactly(t, pods...)

	// libcni DELs cached attachments not in the set, then sends GC.
	if err := f.net.GC(ctxFor(t, 30*time.Second), pods[0]); err != nil {
		t.Fatalf("CNI GC: %v", err)
	}
	f.waitExactly(t, pods[0])
	if err := pods[0].Check(ctxFor(t, 30*time.Second)); err != nil {
		t.Errorf("CHECK of the pod GC kept: %v", err)
	}
}

func TestPluginGCDropsEnrollmentsOutsideValidSet(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	pods := f.addPods(t, 3)
	f.waitExactly(t, pods...)

	// Only the plugins' GC runs (no cached attachments to DEL), so the drop
	// can only come from weir's cmdGC and the daemon's GC RPC.
	if err := f.net.PluginGC(ctxFor(t, 30*time.Second), pods[0], pods[1]); err != nil {
		t.Fatalf("CNI GC: %v", err)
	}
	f.waitExactly(t, pods[0], pods[1])
	err := pods[2].Check(ctxFor(t, 30*time.Second))
	if err == nil || !strings.Contains(err.Error(), "not enrolled") {
		t.Errorf("CHECK of a pod GC dropped = %v, want an error saying it is not enrolled", err)
	}
}

func TestGCLeavesOtherNetworksAlone(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	pods := f.addPods(t, 2)
	other := f.newNetwork(t, "")
	otherPod := other.AddPod(t, harness.PodSpec{Namespace: "elsewhere", Name: "other"})
	f.waitExactly(t, pods[0], pods[1], otherPod)

	if err := other.PluginGC(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatalf("CNI GC of the other network: %v", err)
	}
	f.waitExactly(t, pods[0], pods[1])
}

func TestAddWhileDaemonDownSucceedsAndEnrollsOnStart(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	pods := f.addPods(t, 2)
	for _, p := range pods {
		if len(p.IPs()) == 0 || len(p.Result.Interfaces) == 0 {
			t.Fatalf("ADD with the daemon down returned %+v, want the bridge plugin's result passed through", p.Result)
		}
	}
	f.startDaemon(t)
	recs := f.waitExactly(t, pods...)
	for _, p := range pods {
		assertIPs(t, mustRecord(t, recs, p), p)
	}
}

func TestDelWhileDaemonDownIsReplayedOnStart(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	pods := f.addPods(t, 2)
	f.waitExactly(t, pods...)

	if err := f.daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := pods[0].Del(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatalf("CNI DEL with the daemon down: %v", err)
	}
	late := f.net.AddPod(t, harness.PodSpec{Namespace: "team-late", Name: "late"})
	f.startDaemon(t)
	f.waitExactly(t, pods[1], late)
}

func TestDaemonRestartKeepsEveryPod(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	pods := f.addPods(t, 3)
	before := f.waitExactly(t, pods...)

	if err := f.daemon.Restart(ctxFor(t, harness.DefaultReadyTimeout)); err != nil {
		t.Fatal(err)
	}
	after := f.waitExactly(t, pods...)
	for _, p := range pods {
		b, a := mustRecord(t, before, p), mustRecord(t, after, p)
		if a.ID != b.ID || a.NetNSInode != b.NetNSInode || a.HostVethIndex != b.HostVethIndex ||
			!slices.Equal(a.IPs, b.IPs) || !a.EnrolledAt.Equal(b.EnrolledAt) {
			t.Errorf("pod %s changed across restart:\nbefore %+v\nafter  %+v", p.Name, b, a)
		}
	}
}

func TestFailurePolicyFailWithDaemonDownFailsAddWithCode11(t *testing.T) {
	f := newFixture(t, fixtureOptions{failurePolicy: "fail"})
	p := f.net.NewPod(t, harness.PodSpec{Namespace: "strict", Name: "p"})
	_, err := p.Add(ctxFor(t, 30*time.Second))
	if err == nil {
		t.Fatal("ADD succeeded with failurePolicy fail and no daemon")
	}
	if e := cniError(t, err); e.Code != types.ErrTryAgainLater || !strings.Contains(e.Msg, f.daemon.Socket) {
		t.Fatalf("ADD error = code %d %q, want code %d naming the socket %s", e.Code, e.Msg, types.ErrTryAgainLater, f.daemon.Socket)
	}
}

func TestWeirWithoutPrevResultFailsAddWithCode7(t *testing.T) {
	harness.RequireRoot(t)
	bins := harness.FindBinaries(t, nil, []string{"weir"})
	n := harness.NewNetwork(t, bins, harness.NetworkOptions{WeirOnly: true})
	p := n.NewPod(t, harness.PodSpec{Namespace: "default", Name: "alone"})
	_, err := p.Add(ctxFor(t, 30*time.Second))
	if err == nil {
		t.Fatal("ADD succeeded with weir alone in the conflist")
	}
	if e := cniError(t, err); e.Code != types.ErrInvalidNetworkConfig || !strings.Contains(e.Msg, "prevResult") {
		t.Fatalf("ADD error = code %d %q, want code %d explaining the missing prevResult", e.Code, e.Msg, types.ErrInvalidNetworkConfig)
	}
}

func TestBadStdinGetsAClearError(t *testing.T) {
	harness.RequireRoot(t)
	bins := harness.FindBinaries(t, nil, []string{"weir"})
	ns := harness.NewNetNS(t, "weir-bad-"+harness.Suffix())
	cases := []struct {
		name     string
		stdin    string
		wantCode uint
		wantMsg  string
	}{
		{"garbage", "this is not JSON {", types.ErrDecodingFailure, "network config"},
		{"bad failurePolicy", `{"cniVersion":"1.0.0","name":"n","type":"weir","failurePolicy":"sometimes",
			"prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.1.2.3/24"}]}}`, types.ErrInvalidNetworkConfig, "failurePolicy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.CommandContext(ctxFor(t, 10*time.Second), bins.CNIPath("weir"))
			cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=" + harness.RandomID(), "CNI_NETNS=" + ns.Path,
				"CNI_IFNAME=eth0", "CNI_PATH=" + bins.CNIBin}
			cmd.Stdin = strings.NewReader(c.stdin)
			out, err := cmd.Output()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("weir exited with %v on bad stdin, want a non-zero exit; stdout %s", err, out)
			}
			var e types.Error
			if err := json.Unmarshal(out, &e); err != nil {
				t.Fatalf("stdout is not a CNI error: %v\n%s", err, out)
			}
			if e.Code != c.wantCode || !strings.Contains(e.Msg+e.Details, c.wantMsg) {
				t.Fatalf("error = code %d %q (%s), want code %d mentioning %q", e.Code, e.Msg, e.Details, c.wantCode, c.wantMsg)
			}
		})
	}
}

func TestStatusSucceedsWhetherDaemonIsUpOrDown(t *testing.T) {
	f := newFixture(t, fixtureOptions{failurePolicy: "fail"})
	if err := f.net.Status(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatalf("CNI STATUS with the daemon down: %v", err)
	}
	f.startDaemon(t)
	if err := f.net.Status(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatalf("CNI STATUS with the daemon up: %v", err)
	}
}

func TestExcludedNamespacePassesThroughUnenrolled(t *testing.T) {
	f := newFixture(t, fixtureOptions{startDaemon: true})
	sys := f.net.AddPod(t, harness.PodSpec{Namespace: "kube-system", Name: "coredns"})
	app := f.net.AddPod(t, harness.PodSpec{Namespace: "default", Name: "app"})
	if len(sys.IPs()) == 0 {
		t.Fatalf("ADD of an excluded pod returned no addresses: %+v", sys.Result)
	}
	// ADD enrolls synchronously while the daemon is up, so had the
	// kube-system pod been enrolled it would be listed before app is.
	f.waitExactly(t, app)
}
