package podindex

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/weirnet/weir/daemon/identity"
	"github.com/weirnet/weir/daemon/registry"
)

// labelResolver answers from a map that changes after enrollment, as the
// CRI and Kubernetes resolvers do once the runtime has recorded the sandbox.
type labelResolver struct {
	names    map[string]string
	selected map[string]bool // names that are Kubernetes Services selecting the pod
	gen      uint64
}

func (r *labelResolver) Selected(p *registry.Pod) bool { return r.selected[r.Service(p)] }

func (r *labelResolver) Service(p *registry.Pod) string {
	if n, ok := r.names[p.Name]; ok {
		return n
	}
	return identity.Owner{}.Service(p)
}

func (r *labelResolver) Generation() uint64 { return r.gen }

func TestPodsAreNamedAgainWhenTheResolverLearnsMore(t *testing.T) {
	r := &labelResolver{names: map[string]string{}, selected: map[string]bool{"storefront": true}}
	x := New(r)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	x.Add(&registry.Pod{ID: 3, Namespace: "shop", Name: "web-7d9f8b6c4d-x2x9z",
		IPs: []registry.IPConfig{{Address: "10.1.0.3/24"}}}, log)

	before := x.ByPodID(3)
	if before.Service != "web" {
		t.Fatalf("owner name = %q, want web", before.Service)
	}
	r.names["web-7d9f8b6c4d-x2x9z"] = "storefront"
	if got := x.ByPodID(3).Service; got != "web" {
		t.Fatalf("name changed to %q without a new generation", got)
	}
	r.gen++
	after := x.ByPodID(3)
	if after.Service != "storefront" || !after.Selected || before.Selected {
		t.Fatalf("after the resolver learned the Service: %q (selected %t, before %t), want storefront, selected",
			after.Service, after.Selected, before.Selected)
	}
	if before.Service != "web" || before == after {
		t.Fatal("a flow.Pod already handed out was modified in place")
	}
	if p := x.ByAddr(netip.MustParseAddr("10.1.0.3")); p != after {
		t.Fatalf("by address: %+v, want the renamed pod", p)
	}
}

// namingResolver also names containers, as the CRI resolver does.
type namingResolver struct {
	identity.Owner
	asked []string
}

func (r *namingResolver) ContainerName(sandboxID, containerID string) string {
	r.asked = append(r.asked, sandboxID+"/"+containerID)
	return "web"
}

func TestContainersAreNamedThroughThePodsSandbox(t *testing.T) {
	r := &namingResolver{}
	x := New(r)
	x.Add(&registry.Pod{ID: 4, ContainerID: "sandbox-1", Namespace: "shop", Name: "web-0"}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if got := x.ContainerName(4, "c0ffee"); got != "web" {
		t.Fatalf("container name %q, want web", got)
	}
	if len(r.asked) != 1 || r.asked[0] != "sandbox-1/c0ffee" {
		t.Fatalf("resolver asked %q, want the pod's sandbox and the container", r.asked)
	}
	if got := x.ContainerName(99, "c0ffee"); got != "" {
		t.Fatalf("unknown pod: %q, want empty", got)
	}
	if got := New(identity.Owner{}).ContainerName(4, "c0ffee"); got != "" {
		t.Fatalf("a resolver that cannot name containers gave %q", got)
	}
}
