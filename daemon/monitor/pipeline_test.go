package monitor

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/identity"
	"github.com/weirnet/weir/daemon/registry"
)

// renamingResolver names pods by owner until it is told a service name,
// and then moves its generation, as the CRI and Kubernetes resolvers do.
type renamingResolver struct {
	identity.Owner
	gen     atomic.Uint64
	service atomic.Pointer[string]
}

func (r *renamingResolver) Service(p *registry.Pod) string {
	if s := r.service.Load(); s != nil {
		return *s
	}
	return r.Owner.Service(p)
}

func (r *renamingResolver) Generation() uint64 { return r.gen.Load() }

// TestConnectionIdentityFollowsThePods checks the identity a connection's
// exchanges carry: kept while nothing changed, and a new value when the
// resolver renamed the pod or the pod was enrolled again.
func TestConnectionIdentityFollowsThePods(t *testing.T) {
	r := &renamingResolver{}
	rec := &recorder{}
	coll := newFakeCollector()
	m, err := New(Options{
		Config: testConfig(), Collector: coll, Consumers: []flow.Consumer{rec}, Services: r,
		BootTime: testBoot, Clock: func() event.Timestamp { return 0 }, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	m.PodEnrolled(serverPod)
	m.PodEnrolled(clientPod)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	sink := <-coll.sinks

	g := &connGen{id: 1, proc: proc(1)}
	sink.ConnOpen(g.open(event.RoleServer, "10.0.0.2:80", "10.0.0.3:40000", 1000))
	ts := event.Timestamp(2000)
	exchange := func() *flow.Connection {
		t.Helper()
		feed(sink, g.syscall(event.Ingress, []byte(httpReq), 4096, ts, ts+100))
		resp := g.syscall(event.Egress, []byte(httpResp), 4096, ts+200, ts+300)
		resp[0].Send = &event.SendMetrics{Measured: event.MetricPackets, Packets: 1}
		feed(sink, resp)
		ts += 1000
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if len(rec.exchanges) == 0 {
			t.Fatal("no exchange delivered")
		}
		return rec.exchanges[len(rec.exchanges)-1].Conn
	}

	first := exchange()
	if first.Local.Pod.Service != "web" || first.Remote.Pod == nil || first.Remote.Pod.Name != "client-0" {
		t.Fatalf("identity = local %+v remote %+v", first.Local.Pod, first.Remote.Pod)
	}
	if again := exchange(); again != first {
		t.Errorf("identity rebuilt while nothing changed: %+v", again)
	}

	name := "storefront"
	r.service.Store(&name)
	if same := exchange(); same != first {
		t.Errorf("identity rebuilt before the resolver's generation moved: %+v", same.Local.Pod)
	}
	r.gen.Add(1)
	renamed := exchange()
	if renamed == first || renamed.Local.Pod.Service != "storefront" || first.Local.Pod.Service != "web" {
		t.Errorf("after the generation moved: %+v (before: %+v), want a new identity named storefront", renamed.Local.Pod, first.Local.Pod)
	}

	moved := pod(1, "shop", "web-7d4b9c8f5-abcde", "10.0.0.2", 4026532001)
	m.PodEnrolled(moved)
	if got := exchange(); got == renamed || got.Local.Pod.Name != moved.Name {
		t.Errorf("after the pod was enrolled again: %+v, want pod %s", got.Local.Pod, moved.Name)
	}
}
