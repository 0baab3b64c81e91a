package main

import (
	"net"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/weirnet/weir/enrollapi/enrollpb"
)

func TestInspectPodLinkFindsVethPeerAndNetnsInode(t *testing.T) {
	pn := newPodNet(t)
	got, err := inspectPodLink(pn.ns.Path(), "eth0")
	if err != nil {
		t.Fatalf("inspectPodLink: %v", err)
	}
	if got.netnsInode != pn.netnsInode {
		t.Errorf("netns inode = %d, want %d (from /proc/thread-self/ns/net inside the netns)", got.netnsInode, pn.netnsInode)
	}
	if got.ifIndex != pn.podIndex {
		t.Errorf("pod ifindex = %d, want %d", got.ifIndex, pn.podIndex)
	}
	if got.hostVeth != pn.hostVeth || got.hostVethIndex != pn.hostIndex {
		t.Errorf("host veth = %q index %d, want %q index %d (note %q)",
			got.hostVeth, got.hostVethIndex, pn.hostVeth, pn.hostIndex, got.note)
	}
	if got.note != "" {
		t.Errorf("note = %q, want none for a plain veth pair", got.note)
	}
}

func TestInspectPodLinkReportsNoPeerForNonVeth(t *testing.T) {
	n := newNetNS(t)
	var index int
	if err := n.Do(func(ns.NetNS) error {
		// A bridge stands in for any non-veth pod interface (macvlan,
		// ipvlan): it has no peer to find.
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}}); err != nil {
			return err
		}
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		index = l.Attrs().Index
		return nil
	}); err != nil {
		t.Fatalf("create bridge eth0 in netns: %v", err)
	}

	got, err := inspectPodLink(n.Path(), "eth0")
	if err != nil {
		t.Fatalf("inspectPodLink: %v", err)
	}
	if got.ifIndex != index || got.hostVeth != "" || got.hostVethIndex != 0 || got.netnsInode == 0 {
		t.Errorf("got %+v, want ifindex %d, no host veth, a netns inode", got, index)
	}
	if !strings.Contains(got.note, "bridge, not a veth") {
		t.Errorf("note = %q, want it to say the interface is a bridge, not a veth", got.note)
	}
}

func TestInspectPodLinkIgnoresPeerInAnotherNetns(t *testing.T) {
	podNS, otherNS := newNetNS(t), newNetNS(t)
	// eth0 in podNS, its peer "peer0" in otherNS: nothing in the host.
	tmp := randName("wt")
	if err := netlink.LinkAdd(&netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: tmp},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(podNS.Fd())),
	}); err != nil {
		t.Fatalf("create veth: %v", err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(tmp); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	host, err := netlink.LinkByName(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(host, int(otherNS.Fd())); err != nil {
		t.Fatalf("move %s to the other netns: %v", tmp, err)
	}

	got, err := inspectPodLink(podNS.Path(), "eth0")
	if err != nil {
		t.Fatalf("inspectPodLink: %v", err)
	}
	if got.hostVeth != "" || got.hostVethIndex != 0 {
		t.Errorf("host veth = %q index %d, want none: the peer is not in the host netns", got.hostVeth, got.hostVethIndex)
	}
	t.Logf("note: %s", got.note)
	if got.ifIndex == 0 || got.note == "" {
		t.Errorf("got %+v, want the pod ifindex and a note on the missing peer", got)
	}
}

func TestInspectPodLinkErrorsNameTheProblem(t *testing.T) {
	if _, err := inspectPodLink("/var/run/netns/weir-does-not-exist", "eth0"); err == nil ||
		!strings.Contains(err.Error(), "/var/run/netns/weir-does-not-exist") {
		t.Errorf("missing netns: err = %v, want one naming the path", err)
	}
	n := newNetNS(t)
	if _, err := inspectPodLink(n.Path(), "eth7"); err == nil || !strings.Contains(err.Error(), `"eth7"`) {
		t.Errorf("missing interface: err = %v, want one naming eth7", err)
	}
}

func mustIPNet(t *testing.T, s string) net.IPNet {
	t.Helper()
	ip, ipn, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	ipn.IP = ip
	return *ipn
}

func TestPodIPsPrefersPodInterfaceAndFallsBackToAll(t *testing.T) {
	idx := func(i int) *int { return &i }
	ifaces := []*current.Interface{{Name: "cni0"}, {Name: "vethab"}, {Name: "eth0", Sandbox: "/var/run/netns/p"}}
	tests := []struct {
		name string
		res  *current.Result
		want []string
	}{
		{"only the pod interface's", &current.Result{Interfaces: ifaces, IPs: []*current.IPConfig{
			{Interface: idx(0), Address: mustIPNet(t, "10.0.0.1/24")},
			{Interface: idx(2), Address: mustIPNet(t, "10.0.0.5/24"), Gateway: net.ParseIP("10.0.0.1")},
		}}, []string{"10.0.0.5/24"}},
		{"no interface links: all", &current.Result{IPs: []*current.IPConfig{
			{Address: mustIPNet(t, "10.0.0.5/24")}, {Address: mustIPNet(t, "fd00::5/64")},
		}}, []string{"10.0.0.5/24", "fd00::5/64"}},
		{"links only to host interfaces: all", &current.Result{Interfaces: ifaces, IPs: []*current.IPConfig{
			{Interface: idx(1), Address: mustIPNet(t, "10.0.0.5/24")},
		}}, []string{"10.0.0.5/24"}},
		{"index out of range: all", &current.Result{Interfaces: ifaces, IPs: []*current.IPConfig{
			{Interface: idx(9), Address: mustIPNet(t, "10.0.0.5/24")},
		}}, []string{"10.0.0.5/24"}},
		{"same name but host side (no sandbox): all", &current.Result{
			Interfaces: []*current.Interface{{Name: "eth0"}},
			IPs:        []*current.IPConfig{{Interface: idx(0), Address: mustIPNet(t, "10.0.0.5/24")}},
		}, []string{"10.0.0.5/24"}},
		{"empty", &current.Result{}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := addressList(podIPs(tt.res, "eth0"))
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("podIPs = %q, want %q", got, tt.want)
			}
		})
	}
	gw := podIPs(tests[0].res, "eth0")[0].GetGateway()
	if gw != "10.0.0.1" {
		t.Errorf("gateway = %q, want 10.0.0.1", gw)
	}
}

func TestSameAddressesComparesByValueIgnoringOrder(t *testing.T) {
	cfg := func(as ...string) []*enrollpb.IPConfig {
		var out []*enrollpb.IPConfig
		for _, a := range as {
			out = append(out, &enrollpb.IPConfig{Address: a})
		}
		return out
	}
	tests := []struct {
		a, b []*enrollpb.IPConfig
		want bool
	}{
		{cfg("10.0.0.5/24", "fd00::5/64"), cfg("fd00:0::5/64", "10.0.0.5/24"), true},
		{cfg("10.0.0.5/24"), cfg("10.0.0.5/16"), false},
		{cfg("10.0.0.5/24"), cfg("10.0.0.5/24", "10.0.0.6/24"), false},
		{nil, nil, true},
	}
	for _, tt := range tests {
		got, err := sameAddresses(tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("sameAddresses(%q, %q) = %v, %v; want %v", addressList(tt.a), addressList(tt.b), got, err, tt.want)
		}
	}
	if _, err := sameAddresses(cfg("nonsense"), nil); err == nil || !strings.Contains(err.Error(), `"nonsense"`) {
		t.Errorf("bad address: err = %v, want one naming it", err)
	}
}
