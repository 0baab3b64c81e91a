package metrics

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// t0 is aligned to a 10 s step and a minute.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newAgg(t testing.TB, opts Options) (*Aggregator, *clock) {
	t.Helper()
	c := &clock{now: t0}
	opts.Now = c.Now
	a, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Tests query windows of a daemon that has run for longer than them;
	// see TestRatesOfAYoungDaemonCoverOnlyItsLife for the other case.
	a.started = t0.Add(-time.Hour)
	return a, c
}

var (
	frontend = &flow.Pod{ID: 1, Namespace: "shop", Name: "frontend-7d9", Service: "frontend"}
	// catalog is a Kubernetes Service selecting its pods; frontend is a
	// name Weir gave (see flow.Pod.Selected).
	catalog0 = &flow.Pod{ID: 2, Namespace: "shop", Name: "catalog-0", Service: "catalog", Selected: true}
	catalog1 = &flow.Pod{ID: 3, Namespace: "shop", Name: "catalog-1", Service: "catalog", Selected: true}
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// pairConns returns the two views of one connection between local pods:
// the client's and the server's.
func pairConns(id event.ConnID, client, server *flow.Pod) (c, s *flow.Connection) {
	caddr, saddr := ap("10.22.0.2:40000"), ap("10.22.0.3:8080")
	c = &flow.Connection{ID: id, Role: event.RoleClient,
		Local: flow.Peer{Addr: caddr, Pod: client}, Remote: flow.Peer{Addr: saddr, Pod: server}}
	s = &flow.Connection{ID: id + 1000, Role: event.RoleServer,
		Local: flow.Peer{Addr: saddr, Pod: server}, Remote: flow.Peer{Addr: caddr, Pod: client}}
	return c, s
}

func op(c *flow.Connection, kind flow.OpKind, bytes uint64) *flow.KernelOp {
	return &flow.KernelOp{Conn: c, Kind: kind, Success: true, Bytes: bytes, Start: 1_000_000, End: 1_000_000}
}

// exchange returns a completed exchange of latency lat on c.
func exchange(c *flow.Connection, method, path string, status int, lat time.Duration) *flow.Exchange {
	return &flow.Exchange{Conn: c, Record: &record.Record{
		Protocol: record.HTTP11, Method: method, Path: path, Status: status, GRPCStatus: -1,
		ReqHeaderBytes: 100, ReqBodyBytes: 20, RespHeaderBytes: 150, RespBodyBytes: 1000,
		ReqStart: 5_000_000, ReqEnd: 5_000_100, RespStart: 5_000_200, RespEnd: 5_000_000 + event.Timestamp(lat),
	}}
}
