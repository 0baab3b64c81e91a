package enroll

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
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
