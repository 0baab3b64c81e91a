package enroll

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/internal/testenv"
)

func TestEnrollRefusesOversizedAndRelativeFieldsWithInvalidArgument(t *testing.T) {
	f := serve(t, nil, 0)
	manyIPs := func(n int) []*enrollpb.IPConfig {
		var out []*enrollpb.IPConfig
		for i := range n {
			out = append(out, &enrollpb.IPConfig{Address: podAddr(string(rune('a'+i%26))+strings.Repeat("x", i)) + "/8"})
		}
		return out
	}
	for field, mutate := range map[string]func(*enrollpb.Pod){
		"pod.netns \"run/netns/x\" must be an absolute path": func(p *enrollpb.Pod) { p.Netns = "run/netns/x" },
		"pod.ips has 17 addresses, at most 16":               func(p *enrollpb.Pod) { p.Ips = manyIPs(17) },
		"pod.name is 921600 bytes, at most 253":              func(p *enrollpb.Pod) { p.Name = strings.Repeat("n", 900<<10) },
		"pod.namespace is 254 bytes":                         func(p *enrollpb.Pod) { p.Namespace = strings.Repeat("n", 254) },
		"pod.container_id is 129 bytes":                      func(p *enrollpb.Pod) { p.ContainerId = strings.Repeat("c", 129) },
		"pod.ifname is 16 bytes":                             func(p *enrollpb.Pod) { p.Ifname = strings.Repeat("e", 16) },
		"is listed twice": func(p *enrollpb.Pod) {
			p.Ips = []*enrollpb.IPConfig{{Address: "10.9.9.9/24"}, {Address: "10.9.9.9/16"}}
		},
	} {
		t.Run(field, func(t *testing.T) {
			p := testPod("x")
			mutate(p)
			_, err := f.client.Enroll(ctx(t), &enrollpb.EnrollRequest{Pod: p})
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), field) {
				t.Fatalf("error = %v, want InvalidArgument saying %q", err, field)
			}
		})
	}
	if n := len(f.reg.List()); n != 0 {
		t.Fatalf("invalid calls enrolled %d pods", n)
	}
	if got := testutil.ToFloat64(f.srv.Metrics().Refused.WithLabelValues(ReasonInvalid)); got != 7 {
		t.Errorf("refused{invalid} = %v, want 7", got)
	}
}

func TestEnrollOfAnotherLivePodsAddressIsRefused(t *testing.T) {
	f := serve(t, nil, 0)
	// The owner's netns must exist for it to count as live.
	owner := testPod("owner")
	owner.Netns, owner.NetnsInode = "/proc/self/ns/net", inodeOf(t, "/proc/self/ns/net")
	if _, err := f.client.Enroll(ctx(t), &enrollpb.EnrollRequest{Pod: owner}); err != nil {
		t.Fatal(err)
	}
	thief := testPod("thief")
	thief.Ips = owner.Ips
	_, err := f.client.Enroll(ctx(t), &enrollpb.EnrollRequest{Pod: thief})
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), "owner") {
		t.Fatalf("Enroll with another pod's address = %v, want AlreadyExists naming the owner", err)
	}
	if got := testutil.ToFloat64(f.srv.Metrics().Refused.WithLabelValues(ReasonIPInUse)); got != 1 {
		t.Errorf("refused{ip_in_use} = %v, want 1", got)
	}
	// Unenrolling the refused pod must leave the owner alone.
	if _, err := f.client.Unenroll(ctx(t), &enrollpb.UnenrollRequest{Network: "kindnet", Attachment: att("thief")}); err != nil {
		t.Fatal(err)
	}
	if pods := f.reg.List(); len(pods) != 1 || pods[0].ContainerID != "owner" {
		t.Fatalf("registry = %v, want only owner", pods)
	}
}

func TestEnrollTakesTheAddressOfAPodWhoseNetnsIsGone(t *testing.T) {
	f := serve(t, nil, 0)
	stale := testPod("stale")
	stale.Netns = "/var/run/netns/weir-test-does-not-exist"
	if _, err := f.client.Enroll(ctx(t), &enrollpb.EnrollRequest{Pod: stale}); err != nil {
		t.Fatal(err)
	}
	fresh := testPod("fresh")
	fresh.Ips = stale.Ips
	if _, err := f.client.Enroll(ctx(t), &enrollpb.EnrollRequest{Pod: fresh}); err != nil {
		t.Fatalf("Enroll of an address whose holder's netns is gone: %v", err)
	}
	if pods := f.reg.List(); len(pods) != 1 || pods[0].ContainerID != "fresh" {
		t.Fatalf("registry = %v, want only fresh", pods)
	}
}

func TestGCReplyIsBoundedButCountsEveryRemoval(t *testing.T) {
	f := serve(t, nil, 0)
	c := context.Background()
	const n = MaxGCRemovedListed + 44
	for i := range n {
		p := testPod(fmt.Sprint("g", i))
		if _, err := f.srv.Enroll(c, &enrollpb.EnrollRequest{Pod: p}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := f.client.GC(ctx(t), &enrollpb.GCRequest{Network: "kindnet"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetRemoved()) != MaxGCRemovedListed || resp.GetRemovedCount() != n {
		t.Fatalf("GC reply lists %d and counts %d, want %d listed and %d counted",
			len(resp.GetRemoved()), resp.GetRemovedCount(), MaxGCRemovedListed, n)
	}
}

func TestUnenrollWithoutNetworkDropsTheAttachmentFromEveryNetwork(t *testing.T) {
	f := serve(t, nil, 0)
	a, b := testPod("same"), testPod("same")
	b.Network = "other"
	b.Ips = nil
	for _, p := range []*enrollpb.Pod{a, b, testPod("keep")} {
		if _, err := f.client.Enroll(ctx(t), &enrollpb.EnrollRequest{Pod: p}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := f.client.Unenroll(ctx(t), &enrollpb.UnenrollRequest{Attachment: att("same")})
	if err != nil || !resp.GetFound() {
		t.Fatalf("Unenroll without network = %v, %v", resp, err)
	}
	if pods := f.reg.List(); len(pods) != 1 || pods[0].ContainerID != "keep" {
		t.Fatalf("registry = %v, want only keep", pods)
	}
}

// NodeHost against the real kernel (privileged: creates a netns).
func TestNodeHostRefusesHostNamespaceNonNamespacesAndMissingLinks(t *testing.T) {
	testenv.Privileged(t, "creates a network namespace")
	name := "weir-host-" + time.Now().Format("150405.000000")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	pod := "/var/run/netns/" + name
	h := NodeHost{}
	if err := h.CheckNetns(pod, inodeOf(t, pod)); err != nil {
		t.Errorf("a pod netns was refused: %v", err)
	}
	if err := h.CheckNetns(pod, inodeOf(t, pod)+1); err == nil || !strings.Contains(err.Error(), "netns_inode") {
		t.Errorf("a wrong inode = %v, want an error naming pod.netns_inode", err)
	}
	// The daemon runs in the host's network namespace (/proc/1/ns/net on a
	// node; this sandbox does not let us stat PID 1's).
	if err := h.CheckNetns("/proc/self/ns/net", inodeOf(t, "/proc/self/ns/net")); err == nil ||
		!strings.Contains(err.Error(), "own (host) network namespace") {
		t.Errorf("/proc/self/ns/net = %v, want refused as the host's namespace", err)
	}
	if err := h.CheckNetns("/proc/self/ns/uts", inodeOf(t, "/proc/self/ns/uts")); err == nil ||
		!strings.Contains(err.Error(), "not a network namespace") {
		t.Errorf("a UTS namespace = %v, want refused", err)
	}
	if err := h.CheckNetns("/etc/hostname", inodeOf(t, "/etc/hostname")); err == nil {
		t.Error("a regular file was accepted as a netns")
	}
	if err := h.CheckNetns("/var/run/netns/weir-never", 1); err == nil || !strings.Contains(err.Error(), ErrNetnsGone.Error()) {
		t.Errorf("a missing netns = %v, want ErrNetnsGone", err)
	}
	if err := h.CheckHostLink(math.MaxInt32, ""); err == nil || !strings.Contains(err.Error(), "host_veth_index") {
		t.Errorf("index MaxInt32 = %v, want refused", err)
	}
	if err := h.CheckHostLink(1, ""); err != nil {
		t.Errorf("lo (index 1) = %v, want accepted", err)
	}
	if err := h.CheckHostLink(1, "eth9"); err == nil {
		t.Error("index 1 with the wrong name was accepted")
	}
}
