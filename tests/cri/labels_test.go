package cri

import (
	"context"
	"testing"
	"time"

	"github.com/weirnet/weir/daemon/identity"
	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/tests/harness"
)

// The identity package's CRI step against a real containerd: the pod labels
// a kubelet passes with the sandbox config name the service, and the names
// of the containers created in the sandbox are found by container id.
func TestIdentityReadsPodLabelsAndContainerNamesFromContainerd(t *testing.T) {
	harness.RequireRoot(t)
	bins := harness.FindBinaries(t, nil, []string{"bridge", "host-local", "loopback"})
	crictl := harness.EnsureCrictl(t, bins)
	image := harness.BuildPauseImage(t, bins)
	n := harness.NewNetwork(t, bins, harness.NetworkOptions{CNIVersion: "1.0.0"})
	c := harness.StartContainerd(t, harness.ContainerdOptions{
		CNIBinDir:  bins.CNIBin,
		CNIConfDir: n.ConfDir,
		Crictl:     crictl,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.ImportImage(ctx, image); err != nil {
		t.Fatal(err)
	}

	r, err := identity.New(identity.Options{
		NodeName: "node-1",
		CRI:      identity.CRIOptions{Socket: c.Socket, Retry: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("identity Run: %v", err)
		}
	})

	type pod struct {
		spec harness.CRIPod
		want string
	}
	pods := []pod{
		{harness.CRIPod{Namespace: "shop", Name: "checkout-7d4b9c8f6d-x2kq9", UID: harness.RandomID()[:32],
			Labels: map[string]string{identity.LabelName: "checkout", identity.LabelApp: "legacy"}}, "checkout"},
		{harness.CRIPod{Namespace: "shop", Name: "cart-0", UID: harness.RandomID()[:32],
			Labels: map[string]string{identity.LabelApp: "cart-svc"}}, "cart-svc"},
		// No name label: the chain falls through to the owner name.
		{harness.CRIPod{Namespace: "jobs", Name: "nightly-b7z2m", UID: harness.RandomID()[:32],
			Labels: map[string]string{"tier": "batch"}}, "nightly"},
	}
	enrolled := make([]*registry.Pod, len(pods))
	for i, p := range pods {
		id, err := c.RunPod(ctx, p.spec)
		if err != nil {
			t.Fatalf("crictl runp %s/%s: %v", p.spec.Namespace, p.spec.Name, err)
		}
		enrolled[i] = &registry.Pod{ContainerID: id, Namespace: p.spec.Namespace, Name: p.spec.Name, UID: p.spec.UID}
		r.PodEnrolled(enrolled[i])
	}

	for i, p := range pods {
		sandbox := enrolled[i].ContainerID
		waitUntil(t, "labels of "+p.spec.Name, func() bool { return r.Labels(sandbox) != nil })
		if got := r.Service(enrolled[i]); got != p.want {
			t.Errorf("%s/%s: service %q, want %q", p.spec.Namespace, p.spec.Name, got, p.want)
		}
		for k, v := range p.spec.Labels {
			if got := r.Labels(sandbox)[k]; got != v {
				t.Errorf("%s: label %s = %q, containerd was given %q", p.spec.Name, k, got, v)
			}
		}
	}

	// Containers are created after the sandbox, as a kubelet does: their
	// ids are unknown to the cache until it lists the sandbox again.
	checkout := enrolled[0]
	ctrIDs := map[string]string{}
	for _, name := range []string{"server", "sidecar"} {
		id, err := c.CreateContainer(ctx, checkout.ContainerID, pods[0].spec, name, harness.PauseImageRef)
		if err != nil {
			t.Fatalf("crictl create %s: %v", name, err)
		}
		if err := c.StartContainer(ctx, id); err != nil {
			t.Fatalf("crictl start %s: %v", name, err)
		}
		ctrIDs[name] = id
	}
	for name, id := range ctrIDs {
		waitUntil(t, "container name "+name, func() bool {
			return r.ContainerName(checkout.ContainerID, id) == name
		})
	}
	// A container id of another sandbox is not named through this one.
	if got := r.ContainerName(enrolled[1].ContainerID, ctrIDs["server"]); got != "" {
		t.Errorf("container of checkout named %q through cart's sandbox", got)
	}

	st := r.Stats().CRI
	if st == nil || st.Sandboxes != len(pods) || st.Errors != 0 || st.Timeouts != 0 || st.GaveUp != 0 {
		t.Errorf("CRI stats %+v: want %d sandboxes and no errors, timeouts or give-ups", st, len(pods))
	}
	r.PodRemoved(checkout)
	if st := r.Stats().CRI; st.Sandboxes != len(pods)-1 {
		t.Errorf("after PodRemoved: %d sandboxes cached, want %d", st.Sandboxes, len(pods)-1)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
