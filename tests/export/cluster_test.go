package export

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/tests/harness"
	"github.com/weirnet/weir/tests/peers"
)

// clusterIP is the test's Service ClusterIP: outside every subnet the
// harness routes (10.200.X.0/24), reached only through the DNAT rule.
var clusterIP = netip.MustParseAddrPort("10.96.77.10:80")

// echoPort is the plain TCP echo server's port in the api pod.
const echoPort = 9090

// dnat makes a DNAT rule like kube-proxy's for a ClusterIP in the host's
// nat PREROUTING chain, where pod traffic to a Service is translated, and
// removes it at cleanup.
func dnat(t *testing.T, from, to netip.AddrPort) {
	t.Helper()
	rule := []string{"PREROUTING", "-d", from.Addr().String() + "/32", "-p", "tcp", "--dport", fmt.Sprint(from.Port()),
		"-m", "comment", "--comment", "weir-test-clusterip", "-j", "DNAT", "--to-destination", to.String()}
	if out, err := exec.Command("iptables", append([]string{"-w", "-t", "nat", "-I"}, rule...)...).CombinedOutput(); err != nil {
		t.Fatalf("iptables DNAT rule: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("iptables", append([]string{"-w", "-t", "nat", "-D"}, rule...)...).CombinedOutput(); err != nil {
			t.Errorf("removing the DNAT rule: %v\n%s", err, out)
		}
	})
}

func ipAddr(a *alv3.ConnectionAddress) (netip.AddrPort, bool) {
	ip := a.GetIp()
	if ip == nil {
		return netip.AddrPort{}, false
	}
	addr, err := netip.ParseAddr(ip.GetHost())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(addr, uint16(ip.GetPort())), true
}

// testWhatTheOAPResolves checks what the OAP turns into topology and
// metrics: a client connection to a ClusterIP reports the pod behind it, a
// plain TCP connection carries every read and write once, and endpoints
// are paths without their query strings.
func (f *fixture) testWhatTheOAPResolves(t *testing.T) {
	ctx := runCtx(t, 60*time.Second)

	// A Service in front of the outsider pod (not enrolled: a pod on
	// another node, as far as this daemon knows).
	dnat(t, clusterIP, f.outAddr)
	ctPaths := []string{"/ct/0", "/ct/1"}
	if _, err := f.tryGet(ctx, clusterIP, false, ctPaths); err != nil {
		t.Fatalf("request through the ClusterIP: %v", err)
	}

	// Endpoints with query strings, to the api pod (both ends monitored).
	qPaths := []string{"/q/0?id=1", "/q/1?id=2&x=y"}
	f.get(ctx, t, f.apiAddr, false, qPaths)

	// Plain TCP echo from web to api.
	echoAddr := netip.AddrPortFrom(f.api.IPv4(), echoPort)
	peers.Start(t, f.api, "api echo-server", "echo-server", "-listen", echoAddr.String())
	var echo peers.EchoReport
	if err := peers.RunJSON(ctx, f.web, &echo, "echo-client", "-addr", echoAddr.String(), "-n", "10", "-size", "100"); err != nil {
		t.Fatal(err)
	}
	echoLocal := netip.MustParseAddrPort(echo.Local)

	type ioCount struct{ reads, writes, closes int }
	var client, server ioCount
	var clientProto, serverProto alv3.AccessLogProtocolType
	count := func(items []item) {
		client, server = ioCount{}, ioCount{}
		for _, it := range items {
			c := it.conn
			var n *ioCount
			switch {
			case role(c) == "client" && localPod(c) == "web" && c.GetLocal().GetKubernetes().GetPort() == int32(echoLocal.Port()):
				n, clientProto = &client, c.GetProtocol()
			case role(c) == "server" && localPod(c) == "api" && c.GetLocal().GetKubernetes().GetPort() == echoPort &&
				c.GetRemote().GetKubernetes().GetPort() == int32(echoLocal.Port()):
				n, serverProto = &server, c.GetProtocol()
			default:
				continue
			}
			for _, k := range it.kernel {
				switch {
				case k.GetRead() != nil:
					n.reads++
				case k.GetWrite() != nil:
					n.writes++
				case k.GetClose() != nil:
					n.closes++
				}
			}
		}
	}
	var items []item
	err := harness.Poll(runCtx(t, waitTimeout), 100*time.Millisecond, func() (bool, error) {
		items, _ = flatten(f.daemon.NodeName, f.recv.streams())
		count(items)
		ex := exchanges(items)
		for _, p := range ctPaths {
			if len(ex[exchangeKey{"web", "client", p}]) == 0 {
				return false, nil
			}
		}
		for _, p := range qPaths {
			path, _, _ := strings.Cut(p, "?")
			if len(ex[exchangeKey{"web", "client", path}]) == 0 || len(ex[exchangeKey{"api", "server", path}]) == 0 {
				return false, nil
			}
		}
		return client.writes >= echo.Writes && client.reads >= echo.Reads && client.closes > 0 && server.closes > 0, nil
	})
	if err != nil {
		t.Errorf("the receiver did not get the ClusterIP, query-path and echo traffic in %s: %v", waitTimeout, err)
	}
	time.Sleep(settle)
	items = mustFlatten(t, f.daemon.NodeName, f.recv.streams())
	count(items)
	ex := exchanges(items)

	for _, p := range ctPaths {
		for _, it := range ex[exchangeKey{"web", "client", p}] {
			if got, ok := ipAddr(it.conn.GetRemote()); !ok || got != f.outAddr {
				t.Errorf("client request %s through ClusterIP %v: remote sent as %v, want the backend %v",
					p, clusterIP, it.conn.GetRemote(), f.outAddr)
			}
		}
	}
	for k := range ex {
		if strings.ContainsAny(k.path, "?#") {
			t.Errorf("endpoint path %q sent with its query", k.path)
		}
	}
	t.Logf("echo client made %d writes and %d reads; the OAP got client %+v (%v), server %+v (%v)",
		echo.Writes, echo.Reads, client, clientProto, server, serverProto)
	if client.writes != echo.Writes || client.reads != echo.Reads {
		t.Errorf("plain TCP client: the OAP got %d writes and %d reads, the client made %d and %d",
			client.writes, client.reads, echo.Writes, echo.Reads)
	}
	if server.reads == 0 || server.writes != server.reads {
		t.Errorf("plain TCP server (one write per read): the OAP got %d reads and %d writes", server.reads, server.writes)
	}
	if clientProto != alv3.AccessLogProtocolType_TCP || serverProto != alv3.AccessLogProtocolType_TCP {
		t.Errorf("echo connection sent as %v (client) and %v (server), want TCP", clientProto, serverProto)
	}
}
