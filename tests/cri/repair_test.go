package cri

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/tests/harness"
)

// Repair with a real runtime: containerd creates a pod while the daemon's
// registry is full (the ADD succeeds, the enrollment is refused and
// counted); once a slot frees the daemon enrolls it within one reconcile
// interval, from containerd's sandbox list (netns path) and libcni's cache
// (network, interface, addresses), as the plugin's ADD would have.
func TestPodCreatedWhileRegistryFullIsEnrolledOnceASlotFrees(t *testing.T) {
	harness.RequireRoot(t)
	const interval = 2 * time.Second
	bins := harness.FindBinaries(t, []string{"weir-daemon"}, []string{"bridge", "host-local", "loopback", "weir"})
	crictl := harness.EnsureCrictl(t, bins)
	image := harness.BuildPauseImage(t, bins)

	daemon := harness.NewDaemon(t, bins, harness.DaemonOptions{})
	n := harness.NewNetwork(t, bins, harness.NetworkOptions{
		CNIVersion: "1.0.0",
		Weir:       &harness.WeirConf{DaemonSocket: daemon.Socket, SpoolDir: daemon.SpoolDir, Timeout: "2s"},
	})
	c := harness.StartContainerd(t, harness.ContainerdOptions{CNIBinDir: bins.CNIBin, CNIConfDir: n.ConfDir, Crictl: crictl})
	// containerd 1.6 keeps libcni's cache in the default /var/lib/cni.
	daemon.SetExtraArgs([]string{"--max-pods", "1", "--reconcile-interval", interval.String(),
		"--cri-socket", c.Socket, "--cni-cache-dir", "/var/lib/cni"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := daemon.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.ImportImage(ctx, image); err != nil {
		t.Fatal(err)
	}

	first, err := c.RunPod(ctx, harness.CRIPod{Namespace: "shop", Name: "first", UID: harness.RandomID()[:32]})
	if err != nil {
		t.Fatal(err)
	}
	waitSandboxes(t, daemon, first)
	second, err := c.RunPod(ctx, harness.CRIPod{Namespace: "shop", Name: "second", UID: harness.RandomID()[:32]})
	if err != nil {
		t.Fatalf("crictl runp with the registry full: %v (ADD must still succeed)", err)
	}
	if got := metric(t, daemon, `weir_enroll_refused_total{reason="registry_full"}`); got < 1 {
		t.Errorf(`weir_enroll_refused_total{reason="registry_full"} = %v, want at least 1`, got)
	}
	// Still full across a repair round: second stays out, first stays in.
	time.Sleep(interval + interval/2)
	waitSandboxes(t, daemon, first)

	if err := c.StopPod(ctx, first); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	recs := waitSandboxes(t, daemon, second)
	if took := time.Since(freed); took > interval+time.Second {
		t.Errorf("second enrolled %v after the slot freed, want within one reconcile interval (%v)", took, interval)
	}
	st, err := c.InspectPod(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	r := recs[0]
	if r.NetNS != st.NetNS || r.Namespace != "shop" || r.Name != "second" || r.Network != n.Name ||
		r.HostVeth == "" || !hasAddr(r.IPs, st.IP) {
		t.Errorf("repaired record %+v, want netns %s, shop/second on %s with a host veth and IP %s", r, st.NetNS, n.Name, st.IP)
	}
	if got := metric(t, daemon, "weir_enroll_repaired_total"); got != 1 {
		t.Errorf("weir_enroll_repaired_total = %v, want 1", got)
	}
	if log, _ := os.ReadFile(daemon.LogFile); !strings.Contains(string(log), `"source":"cri"`) {
		t.Error(`daemon log has no repair line with "source":"cri": the CRI sandbox list was not used`)
	}
	if err := c.RemovePod(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := c.StopPod(ctx, second); err != nil {
		t.Fatal(err)
	}
	waitSandboxes(t, daemon)
}

func metric(t *testing.T, d *harness.Daemon, series string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := d.Get(ctx, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}
