package skywalking

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	alv3 "skywalking.apache.org/repo/goapi/collect/ebpf/accesslog/v3"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
)

// flappingOAP processes every message as it arrives, as the OAP's handler
// does (it never rolls a stream back), and breaks every other stream after
// a few messages.
type flappingOAP struct {
	alv3.UnimplementedEBPFAccessLogServiceServer
	breakAfter int

	mu        sync.Mutex
	streams   int
	processed map[uint64]int // kernel log start offset → times processed
}

func (o *flappingOAP) Collect(st alv3.EBPFAccessLogService_CollectServer) error {
	o.mu.Lock()
	o.streams++
	flap := o.streams%2 == 0
	o.mu.Unlock()
	for n := 0; ; n++ {
		if flap && n == o.breakAfter {
			return status.Error(codes.Unavailable, "OAP restarting")
		}
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return st.SendAndClose(&alv3.EBPFAccessLogDownstream{})
		}
		if err != nil {
			return err
		}
		o.mu.Lock()
		for _, k := range m.KernelLogs {
			o.processed[opStart(k)]++
		}
		o.mu.Unlock()
	}
}

// TestFlappingReceiverCountsNothingTwice checks at-most-once delivery: a
// stream that breaks after the OAP processed part of it is not resent, and
// what is lost is counted as dropped.
func TestFlappingReceiverCountsNothingTwice(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &flappingOAP{breakAfter: 5, processed: map[uint64]int{}}
	srv := grpc.NewServer()
	alv3.RegisterEBPFAccessLogServiceServer(srv, o)
	go srv.Serve(lis) //nolint:errcheck // returns when stopped
	defer srv.Stop()

	cfg := testConfig(lis.Addr().String())
	e := newExporter(t, cfg)
	stop := runExporter(t, e)
	defer stop()
	const conns, ops = 20, 3000
	cs := make([]*flow.Connection, conns)
	for i := range cs {
		cs[i] = conn(event.ConnID(i+1), event.RoleClient, podFrontend, uint16(40000+i), netip.MustParseAddrPort("10.0.0.9:80"), nil)
	}
	for i := range ops {
		e.ConnOp(seqOp(cs[i%conns], flow.OpWrite, uint64(10+2*i)), flow.ProtoTCP)
		if i%100 == 99 {
			time.Sleep(5 * time.Millisecond) // several batches, several streams
		}
	}
	var st Stats
	waitFor(t, 20*time.Second, "every entry sent or dropped", func() bool {
		st = e.Stats()
		return st.QueueEntries == 0 && st.Sent+st.Dropped["partial_send"]+st.Dropped["unacknowledged"] == ops
	})
	o.mu.Lock()
	defer o.mu.Unlock()
	dups := 0
	for start, n := range o.processed {
		if n > 1 {
			dups++
			if dups < 5 {
				t.Errorf("operation %d processed %d times", start, n)
			}
		}
	}
	if dups > 0 {
		t.Errorf("%d operations processed more than once", dups)
	}
	if st.StreamErrors == 0 || st.Dropped["unacknowledged"]+st.Dropped["partial_send"] == 0 {
		t.Fatalf("stats %+v: the receiver never broke a stream part-way", st)
	}
	processed := uint64(len(o.processed))
	if processed < st.Sent || processed > ops {
		t.Errorf("OAP processed %d operations; %d were acknowledged of %d", processed, st.Sent, ops)
	}
	// The measurement the README quotes: what a flapping OAP costs.
	t.Logf("%d streams, %d broken: of %d operations the OAP processed %d once (%.1f%% lost), none twice; "+
		"dropped unacknowledged %d (processed anyway: %d), never written %d",
		o.streams, st.StreamErrors, ops, processed, 100*float64(ops-processed)/ops,
		st.Dropped["unacknowledged"], processed-st.Sent, st.Dropped["partial_send"])
}

// Until pod identities have synced nothing is sent, and what was queued
// meanwhile goes out under the names pods have when it is sent.
func TestSendingWaitsForIdentitiesAndSendsTheirNames(t *testing.T) {
	r := newReceiver(t, nil)
	e := newExporter(t, testConfig(r.addr))
	var synced atomic.Bool
	var current atomic.Pointer[flow.Pod]
	current.Store(podFrontend)
	e.SetIdentity(synced.Load, func(id uint32) *flow.Pod {
		if p := current.Load(); p.ID == id {
			return p
		}
		return nil
	})
	stop := runExporter(t, e)
	defer stop()
	e.ConnOp(seqOp(conn(1, event.RoleClient, podFrontend, 40000, netip.MustParseAddrPort("10.0.0.9:80"), nil), flow.OpConnect, 10), flow.ProtoTCP)
	time.Sleep(10 * testConfig(r.addr).FlushPeriod)
	if n := len(r.streams()); n != 0 || !e.held.Load() {
		t.Fatalf("%d streams sent (held %t) before identities synced, want none", n, e.held.Load())
	}
	renamed := *podFrontend
	renamed.Service = "storefront" // the Service the Kubernetes caches named it after
	current.Store(&renamed)
	synced.Store(true)
	waitFor(t, 5*time.Second, "a stream after identities synced", func() bool { return len(r.streams()) > 0 })
	got := r.streams()[0][0].GetConnection().GetLocal().GetKubernetes().GetServiceName()
	if got != "storefront.shop" {
		t.Errorf("local service sent as %q, want storefront.shop (the name at sending)", got)
	}
	if e.held.Load() || e.stats.identityTimeouts.Load() != 0 {
		t.Errorf("held %t, timeouts %d after sync", e.held.Load(), e.stats.identityTimeouts.Load())
	}
}

func TestSendingStartsAfterIdentityWaitWhenNeverSynced(t *testing.T) {
	r := newReceiver(t, nil)
	cfg := testConfig(r.addr)
	cfg.IdentityWait = 100 * time.Millisecond
	e := newExporter(t, cfg)
	e.SetIdentity(func() bool { return false }, nil)
	stop := runExporter(t, e)
	defer stop()
	e.ConnOp(seqOp(conn(1, event.RoleClient, podFrontend, 40000, netip.MustParseAddrPort("10.0.0.9:80"), nil), flow.OpConnect, 10), flow.ProtoTCP)
	waitFor(t, 5*time.Second, "a stream after IdentityWait", func() bool { return len(r.streams()) > 0 })
	if n := e.stats.identityTimeouts.Load(); n != 1 {
		t.Errorf("identity wait expiries = %d, want 1", n)
	}
}
