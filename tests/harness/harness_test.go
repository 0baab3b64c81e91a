package harness

import (
	"context"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) { Main(m) }

// The harness is tested with the reference plugins alone (no weir), so a
// broken harness shows up here rather than as a mysterious weir failure.
var refPlugins = []string{"bridge", "host-local", "portmap"}

func TestPodsOnReferenceBridgeReachEachOtherOverHTTP(t *testing.T) {
	RequireRoot(t)
	bins := FindBinaries(t, nil, refPlugins)
	n := NewNetwork(t, bins, NetworkOptions{PortMap: true, IPv6: true})
	a := n.AddPod(t, PodSpec{Namespace: "ns-a", Name: "server"})
	b := n.AddPod(t, PodSpec{Namespace: "ns-b", Name: "client"})

	if !n.Subnet.Contains(a.IPv4()) || !n.Subnet.Contains(b.IPv4()) {
		t.Fatalf("pod IPs %v, %v outside the network's subnet %v", a.IPv4(), b.IPv4(), n.Subnet)
	}
	if got := len(a.IPs()); got != 2 {
		t.Fatalf("dual-stack pod got %d addresses (%v), want 2", got, a.IPs())
	}
	a.StartHTTPServer(t, 8080)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := b.Exec(ctx, "curl", "-sS", "--max-time", "5", "http://"+a.IPv4().String()+":8080/")
	if err != nil {
		t.Fatalf("curl from client pod to server pod: %v", err)
	}
	if string(out) != HTTPGreeting("server") {
		t.Fatalf("client got %q, want %q", out, HTTPGreeting("server"))
	}
	if err := a.Check(ctx); err != nil {
		t.Fatalf("CNI CHECK: %v", err)
	}
}

func TestCleanupRemovesNetnsBridgeChainsAndSysctl(t *testing.T) {
	RequireRoot(t)
	bins := FindBinaries(t, nil, refPlugins)
	forwardBefore := readFile(t, "/proc/sys/net/ipv4/ip_forward")
	chainsBefore, _, err := iptablesChains("nat")
	if err != nil {
		t.Fatal(err)
	}

	var n *Network
	var pod *Pod
	var server *Process
	t.Run("create", func(t *testing.T) {
		n = NewNetwork(t, bins, NetworkOptions{PortMap: true, IPMasq: true})
		pod = n.AddPod(t, PodSpec{Namespace: "default", Name: "p",
			PortMappings: []PortMapping{{HostPort: 30000 + int(time.Now().UnixNano()%1000), ContainerPort: 80, Protocol: "tcp"}}})
		server = pod.StartHTTPServer(t, 8080)
		if _, err := netlink.LinkByName(n.Bridge); err != nil {
			t.Fatalf("bridge %s not created: %v", n.Bridge, err)
		}
		if got := readFile(t, "/proc/sys/net/ipv4/ip_forward"); got != "1" {
			t.Fatalf("gateway bridge should have enabled ip_forward, got %q", got)
		}
	})

	if _, err := netlink.LinkByName(n.Bridge); err == nil {
		t.Errorf("bridge %s still present after cleanup", n.Bridge)
	}
	if NetNSExists(pod.NS.Path) {
		t.Errorf("netns %s still present after cleanup", pod.NS.Path)
	}
	if exited, _ := server.Exited(); !exited {
		t.Errorf("server process %d still running after cleanup", server.Pid())
	}
	if got := readFile(t, "/proc/sys/net/ipv4/ip_forward"); got != forwardBefore {
		t.Errorf("ip_forward = %q after cleanup, want the original %q", got, forwardBefore)
	}
	chainsAfter, _, err := iptablesChains("nat")
	if err != nil {
		t.Fatal(err)
	}
	for c := range chainsAfter {
		if strings.HasPrefix(c, "CNI-") && !chainsBefore[c] {
			t.Errorf("nat chain %s left behind", c)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestContainerdRunsSandboxOnReferenceBridge(t *testing.T) {
	RequireRoot(t)
	bins := FindBinaries(t, nil, []string{"bridge", "host-local", "loopback"})
	crictl := EnsureCrictl(t, bins)
	n := NewNetwork(t, bins, NetworkOptions{CNIVersion: "1.0.0"})
	image := BuildPauseImage(t, bins)
	c := StartContainerd(t, ContainerdOptions{CNIBinDir: bins.CNIBin, CNIConfDir: n.ConfDir, Crictl: crictl})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.ImportImage(ctx, image); err != nil {
		t.Fatal(err)
	}
	id, err := c.RunPod(ctx, CRIPod{Namespace: "ns-a", Name: "p", UID: "uid-p"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.InspectPod(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "SANDBOX_READY" {
		t.Fatalf("sandbox state %q, want SANDBOX_READY", st.State)
	}
	ip, err := netip.ParseAddr(st.IP)
	if err != nil || !n.Subnet.Contains(ip) {
		t.Fatalf("sandbox IP %q not in the bridge network %v", st.IP, n.Subnet)
	}
	if !NetNSExists(st.NetNS) {
		t.Fatalf("sandbox netns %q does not exist", st.NetNS)
	}
	if err := c.StopPod(ctx, id); err != nil {
		t.Fatal(err)
	}
	if NetNSExists(st.NetNS) {
		t.Errorf("sandbox netns %q still exists after stopp", st.NetNS)
	}
	if err := c.RemovePod(ctx, id); err != nil {
		t.Fatal(err)
	}
}
