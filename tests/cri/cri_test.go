package cri

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

func TestCRISandboxesAreEnrolledAndUnenrolled(t *testing.T) {
	harness.RequireRoot(t)
	bins := harness.FindBinaries(t, []string{"weir-daemon"}, []string{"bridge", "host-local", "loopback", "weir"})
	crictl := harness.EnsureCrictl(t, bins)
	image := harness.BuildPauseImage(t, bins)

	daemon := harness.StartDaemon(t, bins, harness.DaemonOptions{})
	// containerd 1.6's libcni understands CNI spec versions up to 1.0.0.
	n := harness.NewNetwork(t, bins, harness.NetworkOptions{
		CNIVersion: "1.0.0",
		Weir: &harness.WeirConf{
			DaemonSocket: daemon.Socket,
			SpoolDir:     daemon.SpoolDir,
			Timeout:      "2s",
		},
	})
	c := harness.StartContainerd(t, harness.ContainerdOptions{
		CNIBinDir:  bins.CNIBin,
		CNIConfDir: n.ConfDir,
		Crictl:     crictl,
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.ImportImage(ctx, image); err != nil {
		t.Fatal(err)
	}

	pods := []harness.CRIPod{
		{Namespace: "frontend", Name: "web", UID: harness.RandomID()[:32]},
		{Namespace: "backend", Name: "api", UID: harness.RandomID()[:32]},
	}
	ids := make([]string, len(pods))
	status := make([]harness.CRIPodStatus, len(pods))
	for i, p := range pods {
		id, err := c.RunPod(ctx, p)
		if err != nil {
			t.Fatalf("crictl runp %s/%s: %v", p.Namespace, p.Name, err)
		}
		ids[i] = id
		if status[i], err = c.InspectPod(ctx, id); err != nil {
			t.Fatal(err)
		}
	}

	recs := waitSandboxes(t, daemon, ids...)
	for i, p := range pods {
		r, _ := harness.FindPod(recs, ids[i])
		st := status[i]
		if r.Namespace != p.Namespace || r.Name != p.Name || r.UID != p.UID {
			t.Errorf("sandbox %s: namespace/name/uid = %q/%q/%q, want %q/%q/%q",
				ids[i], r.Namespace, r.Name, r.UID, p.Namespace, p.Name, p.UID)
		}
		if r.InfraContainerID != ids[i] {
			t.Errorf("sandbox %s: infraContainerID = %q, want the sandbox id", ids[i], r.InfraContainerID)
		}
		if r.Network != n.Name || r.IfName != "eth0" {
			t.Errorf("sandbox %s: network/ifname = %q/%q, want %q/eth0", ids[i], r.Network, r.IfName, n.Name)
		}
		if r.NetNS != st.NetNS {
			t.Errorf("sandbox %s: netns = %q, containerd says %q", ids[i], r.NetNS, st.NetNS)
		}
		if ino, err := harness.Inode(st.NetNS); err != nil || r.NetNSInode != ino {
			t.Errorf("sandbox %s: netnsInode = %d, stat(%s) = %d (%v)", ids[i], r.NetNSInode, st.NetNS, ino, err)
		}
		if !hasAddr(r.IPs, st.IP) {
			t.Errorf("sandbox %s: ips = %v, containerd reports %s", ids[i], r.IPs, st.IP)
		}
		if r.HostVeth == "" || r.HostVethIndex == 0 {
			t.Errorf("sandbox %s: no host veth recorded (%q, %d)", ids[i], r.HostVeth, r.HostVethIndex)
		}
	}

	// StopPodSandbox tears the network down (CNI DEL): the pod must go.
	if err := c.StopPod(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	waitSandboxes(t, daemon, ids[1])
	if err := c.RemovePod(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := c.StopPod(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := c.RemovePod(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	waitSandboxes(t, daemon)
}

// waitSandboxes waits until the daemon lists exactly the given sandboxes.
func waitSandboxes(t *testing.T, d *harness.Daemon, ids ...string) []harness.PodRecord {
	t.Helper()
	want := slices.Sorted(slices.Values(ids))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	recs, err := d.WaitPods(ctx, func(recs []harness.PodRecord) bool {
		var got []string
		for _, r := range recs {
			got = append(got, r.SandboxID)
		}
		slices.Sort(got)
		return slices.Equal(got, want)
	})
	if err != nil {
		t.Fatalf("daemon never listed exactly sandboxes %v: %v", want, err)
	}
	return recs
}

func hasAddr(cidrs []string, ip string) bool {
	want, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Addr() == want {
			return true
		}
	}
	return false
}
