package conntrack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// inNetns runs f on a thread switched to the named network namespace.
func inNetns(t *testing.T, name string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Fatalf("back to the test's netns: %v", err)
		}
	}()
	f()
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// TestLookupFindsTheBackendBehindAClusterIPDNAT is privileged (root): in a
// network namespace of its own it makes a DNAT rule like kube-proxy's for a
// ClusterIP, connects through it, and reads the connection's conntrack
// entry the way the exporter does.
func TestLookupFindsTheBackendBehindAClusterIPDNAT(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (network namespaces and iptables); CI runs it as root")
	}
	name := fmt.Sprintf("weir-ct-%d", os.Getpid())
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	run(t, "ip", "-n", name, "link", "add", "pods", "type", "veth", "peer", "name", "pods-peer")
	run(t, "ip", "-n", name, "link", "set", "pods-peer", "up")
	run(t, "ip", "-n", name, "addr", "add", "10.1.0.1/24", "dev", "pods")
	run(t, "ip", "-n", name, "link", "set", "pods", "up")
	run(t, "ip", "-n", name, "route", "add", "10.96.0.0/12", "dev", "pods")

	var lis net.Listener
	inNetns(t, name, func() {
		var err error
		if lis, err = net.Listen("tcp", "10.1.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	defer lis.Close()
	backend := netip.MustParseAddrPort(lis.Addr().String())
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	clusterIP := netip.MustParseAddrPort("10.96.0.10:80")
	run(t, "ip", "netns", "exec", name, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", clusterIP.Addr().String()+"/32",
		"-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination", backend.String())

	inNetns(t, name, func() {
		c, err := net.Dial("tcp", clusterIP.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		local := netip.MustParseAddrPort(c.LocalAddr().String())
		if remote := netip.MustParseAddrPort(c.RemoteAddr().String()); remote != clusterIP {
			t.Fatalf("socket's remote %v, want the ClusterIP %v", remote, clusterIP)
		}
		got, err := Lookup(Tuple{Local: local, Remote: clusterIP})
		if err != nil {
			t.Fatal(err)
		}
		if got != backend {
			t.Errorf("Lookup = %v, want the backend %v", got, backend)
		}

		// A connection conntrack never saw: not found, and the Resolver
		// falls back to the socket's remote, counted.
		ghost := Tuple{Local: netip.MustParseAddrPort("10.1.0.1:1"), Remote: netip.MustParseAddrPort("10.96.0.11:80")}
		if _, err := Lookup(ghost); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup of an unknown tuple: %v, want ErrNotFound", err)
		}
		r := New(0)
		if p := r.Peer(Tuple{Local: local, Remote: clusterIP}); p != backend {
			t.Errorf("Peer = %v, want %v", p, backend)
		}
		if p := r.Peer(Tuple{Local: local, Remote: clusterIP}); p != backend {
			t.Errorf("cached Peer = %v, want %v", p, backend)
		}
		if p := r.Peer(ghost); p != ghost.Remote {
			t.Errorf("Peer of an unknown tuple = %v, want its remote", p)
		}
		if st := r.Stats(); st.Translated != 1 || st.Hits != 1 || st.Missing != 1 || st.Cached != 2 {
			t.Errorf("stats %+v, want 1 translated, 1 hit, 1 missing, 2 cached", st)
		}
	})
}

func TestResolverCacheIsBoundedAndCounted(t *testing.T) {
	lookups := 0
	r := newResolver(2, func(t Tuple) (netip.AddrPort, error) {
		lookups++
		return t.Remote, nil
	})
	tuple := func(port uint16) Tuple {
		return Tuple{Local: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port), Remote: netip.MustParseAddrPort("10.0.0.2:80")}
	}
	for _, p := range []uint16{1, 2, 1, 3, 1} {
		r.Peer(tuple(p))
	}
	st := r.Stats()
	if lookups != 4 || st.Evicted != 2 || st.Cached != 2 || st.Hits != 1 || st.Untranslated != 4 {
		t.Errorf("%d lookups, stats %+v: want 4 lookups, 2 evicted at the bound, 2 cached, 1 hit", lookups, st)
	}
}
