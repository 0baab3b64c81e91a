package metrics

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
)

// Kinds of series, for the overflow, eviction and size counters.
const (
	kindPod = iota
	kindService
	kindEdge
	kindEndpoint
	kindDropReason
	kindConnCache // only overflows: attributed without the cache
	numKinds
)

var kindNames = [numKinds]string{"pod", "service", "edge", "endpoint", "drop_reason", "conn_cache"}

// Reasons a flow could not be attributed.
const (
	unattrNoPod = iota
	unattrUnknownRole
	unattrNoRecord
	numUnattr
)

var unattrNames = [numUnattr]string{"no_local_pod", "unknown_role", "no_record"}

// Aggregator is a flow.Consumer that keeps the aggregates. Create it with
// New; it is safe for concurrent use.
type Aggregator struct {
	opts   Options
	routes []route
	slots  int
	// started bounds the span rates are computed over: a window longer
	// than the aggregator's life would dilute them.
	started time.Time
	// keepsEpoch says Run may keep the current step in keptEpoch (the
	// clock is the real one, whose steps a timer can follow); keptEpoch
	// is 0 while Run does not.
	keepsEpoch bool
	keptEpoch  atomic.Int64

	mu         sync.Mutex
	pods       map[podKey]*podState
	services   map[serviceKey]*serviceState
	edges      map[edgeKey]*edgeState
	nEndpoints int

	// conns caches attribution per connection (bounded by
	// Options.MaxConnCache; entries leave at close, on eviction, or after
	// connIdleSteps without a flow). scratch serves a connection that did
	// not fit.
	conns   map[event.ConnID]*connEntry
	scratch connEntry
	// front holds entries of conns in a small direct-mapped array, so the
	// per-syscall and per-exchange path usually finds its connection's
	// entry with one multiply and a pointer compare instead of hashing
	// into the map. Every entry in front is also in conns: whatever
	// leaves conns leaves front too.
	front [frontSlots]*connEntry

	overflow     [numKinds]uint64
	evictions    [numKinds]uint64
	unattributed [numUnattr]uint64

	descs descs
}

var _ flow.RetransmitConsumer = (*Aggregator)(nil)

// New returns an Aggregator. It fails on unusable options or a malformed
// route pattern.
func New(opts Options) (*Aggregator, error) {
	realClock := opts.Now == nil
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("metrics options: %w", err)
	}
	routes, err := compileRoutes(opts.RoutePatterns)
	if err != nil {
		return nil, fmt.Errorf("metrics options: %w", err)
	}
	return &Aggregator{
		opts:    opts,
		routes:  routes,
		slots:   int(opts.Retention / opts.Step),
		started: opts.Now(),
		// A fake clock moves when its test says, not with timers.
		keepsEpoch: realClock,
		pods:       make(map[podKey]*podState),
		services:   make(map[serviceKey]*serviceState),
		edges:      make(map[edgeKey]*edgeState),
		conns:      make(map[event.ConnID]*connEntry),
		descs:      newDescs(),
	}, nil
}

// Name implements the daemon's Component.
func (a *Aggregator) Name() string { return "metrics" }

// Run evicts series idle for a whole retention until ctx ends. With the
// real clock it also keeps the current step for epoch, advancing it at
// each step boundary.
func (a *Aggregator) Run(ctx context.Context) error {
	t := time.NewTicker(max(a.opts.Step*6, time.Second))
	defer t.Stop()
	var boundary <-chan time.Time // nil: epoch reads the clock
	var next *time.Timer
	if a.keepsEpoch {
		next = time.NewTimer(a.keepEpoch())
		defer next.Stop()
		defer a.keptEpoch.Store(0)
		boundary = next.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.EvictIdle()
		case <-boundary:
			next.Reset(a.keepEpoch())
		}
	}
}

// keepEpoch stores the current step for epoch and returns the time to the
// next step boundary. The clock is read again at every boundary, so a
// stepped wall clock is followed from the next boundary on.
func (a *Aggregator) keepEpoch() time.Duration {
	now, step := a.opts.Now().UnixNano(), int64(a.opts.Step)
	a.keptEpoch.Store(now / step)
	return time.Duration(step - now%step)
}

// epoch returns the current step number. While Run keeps it, that is one
// atomic load: epoch runs for every kernel operation and exchange, and
// reading the clock each time (two vDSO calls) was the daemon's largest
// cost per captured request. The kept step advances when Run's timer
// fires, which is at most a scheduling delay after the boundary; flows are
// processed a ring buffer poll interval after they happened anyway.
func (a *Aggregator) epoch() int64 {
	if e := a.keptEpoch.Load(); e != 0 {
		return e
	}
	return a.opts.Now().UnixNano() / int64(a.opts.Step)
}

// Borrows makes the Aggregator a flow.Borrower: it keeps no operation,
// exchange or metrics value past the call, only the *flow.Connection (as
// its cache's key) and strings.
func (a *Aggregator) Borrows() {}

// The daemon's pipeline reuses its values only while every consumer is a
// Borrower.
var _ flow.Borrower = (*Aggregator)(nil)

// KernelOp implements flow.Consumer. It runs once per syscall: it takes the
// lock once and allocates only when a new series is created.
func (a *Aggregator) KernelOp(op *flow.KernelOp) {
	c := op.Conn
	e := a.epoch()
	a.mu.Lock()
	defer a.mu.Unlock()
	if c == nil || c.Local.Pod == nil {
		a.unattributed[unattrNoPod]++
		return
	}
	ce := a.connLocked(c, e)
	edge, clientSide := ce.edge, ce.clientSide
	podT, edgeT, svcS, edgeS := ce.tcpAt(e)
	if op.Kind == flow.OpClose {
		a.forgetConnLocked(c)
	}

	switch op.Kind {
	case flow.OpConnect:
		if !op.Success {
			if podT != nil {
				podT.connectFailures++
			}
			if edgeT != nil {
				edgeT.connectFailures++
			}
			return
		}
		lat, hasLat := span(op.Start, op.End)
		for _, t := range [...]*tcpTotals{podT, edgeT} {
			if t != nil {
				t.connects++
				if hasLat {
					t.connectLat.observe(latencyBounds, lat)
				}
			}
		}
		for _, s := range [...]*tcpSlot{svcS, edgeS} {
			if s != nil {
				s.connects++
			}
		}
	case flow.OpAccept:
		for _, t := range [...]*tcpTotals{podT, edgeT} {
			if t != nil {
				t.accepts++
			}
		}
		for _, s := range [...]*tcpSlot{svcS, edgeS} {
			if s != nil {
				s.accepts++
			}
		}
	case flow.OpClose:
		rtt, hasRTT := uint64(0), false
		if st := op.Socket; st != nil && st.Measured&event.MetricRTT != 0 && st.SRTT > 0 {
			rtt, hasRTT = st.SRTT, true
		}
		for _, t := range [...]*tcpTotals{podT, edgeT} {
			if t != nil {
				t.closes++
				if hasRTT {
					t.rtt.observe(rttBounds, rtt)
				}
			}
		}
		for _, s := range [...]*tcpSlot{svcS, edgeS} {
			if s != nil {
				s.closes++
				if hasRTT {
					s.rttSum += rtt
					s.rttN++
				}
			}
		}
	case flow.OpWrite:
		var pkts, retrans uint64
		var drops []event.Drop
		if m := op.Send; m != nil {
			if m.Measured&event.MetricPackets != 0 {
				pkts = uint64(m.Packets)
			}
			if m.Measured&event.MetricRetransmits != 0 {
				retrans = uint64(m.Retransmits)
			}
			if m.Measured&event.MetricDrops != 0 {
				drops = m.Drops
			}
		}
		if podT != nil {
			podT.bytesSent += op.Bytes
			podT.pktsSent += pkts
		}
		if svcS != nil {
			svcS.bytesSent += op.Bytes
		}
		if edge != nil {
			if clientSide {
				edgeT.bytesSent += op.Bytes
				edgeT.pktsSent += pkts
				edgeS.bytesSent += op.Bytes
			} else {
				edgeT.bytesRecv += op.Bytes
				edgeT.pktsRecv += pkts
				edgeS.bytesRecv += op.Bytes
			}
		}
		a.lossLocked(retrans, drops, podT, edgeT, svcS, edgeS)
	case flow.OpRead:
		var pkts uint64
		if m := op.Recv; m != nil && m.Measured&event.MetricPackets != 0 {
			pkts = uint64(m.Packets)
		}
		if podT != nil {
			podT.bytesRecv += op.Bytes
			podT.pktsRecv += pkts
		}
		if svcS != nil {
			svcS.bytesRecv += op.Bytes
		}
		if edge != nil {
			if clientSide {
				edgeT.bytesRecv += op.Bytes
				edgeT.pktsRecv += pkts
				edgeS.bytesRecv += op.Bytes
			} else {
				edgeT.bytesSent += op.Bytes
				edgeT.pktsSent += pkts
				edgeS.bytesSent += op.Bytes
			}
		}
	}
}

// Retransmit implements flow.RetransmitConsumer: segments resent outside
// the connection's syscalls count like those a send syscall saw.
func (a *Aggregator) Retransmit(r *flow.Retransmit) {
	c := r.Conn
	e := a.epoch()
	a.mu.Lock()
	defer a.mu.Unlock()
	if c == nil || c.Local.Pod == nil {
		a.unattributed[unattrNoPod]++
		return
	}
	podT, edgeT, svcS, edgeS := a.connLocked(c, e).tcpAt(e)
	a.lossLocked(uint64(r.Segments), nil, podT, edgeT, svcS, edgeS)
}

// lossLocked adds one syscall's retransmits and drops.
func (a *Aggregator) lossLocked(retrans uint64, drops []event.Drop, podT, edgeT *tcpTotals, svcS, edgeS *tcpSlot) {
	if retrans == 0 && len(drops) == 0 {
		return
	}
	var nDrops uint64
	for _, d := range drops {
		nDrops += uint64(d.Count)
	}
	for _, t := range [...]*tcpTotals{podT, edgeT} {
		if t == nil {
			continue
		}
		t.retransmits += retrans
		for _, d := range drops {
			if !t.drops.add(d.Reason, uint64(d.Count), a.opts.MaxDropReasons) {
				a.overflow[kindDropReason]++
			}
		}
	}
	for _, s := range [...]*tcpSlot{svcS, edgeS} {
		if s != nil {
			s.retransmits += retrans
			s.drops += nDrops
		}
	}
}

// Exchange implements flow.Consumer.
func (a *Aggregator) Exchange(x *flow.Exchange) {
	c, r := x.Conn, x.Record
	if r == nil {
		a.mu.Lock()
		a.unattributed[unattrNoRecord]++
		a.mu.Unlock()
		return
	}
	e := a.epoch()
	mc := classifyMethod(r.Method)
	sc, ok := classifyStatus(r)
	lat, hasLat := span(r.ReqStart, r.RespEnd)
	reqSize := r.ReqHeaderBytes + r.ReqBodyBytes
	respSize := r.RespHeaderBytes + r.RespBodyBytes

	a.mu.Lock()
	defer a.mu.Unlock()
	if c == nil || c.Local.Pod == nil {
		a.unattributed[unattrNoPod]++
		return
	}
	ce := a.connLocked(c, e)
	pod, svc := ce.pod, ce.svc
	role := c.Role
	if role > event.RoleServer {
		role = event.RoleUnknown
	}
	if pod != nil {
		pod.http[role].add(mc, sc, lat, hasLat, reqSize, respSize)
	}
	if role == event.RoleServer && svc != nil {
		svc.http.at(e).add(ok, lat, hasLat)
		if ep := a.endpointCached(ce, svc, mc, r.Path, e); ep != nil {
			ep.last = e
			ep.requests[sc]++
			if hasLat {
				ep.latency.observe(latencyBounds, lat)
			}
			ep.ring.at(e).add(ok, lat, hasLat)
		}
	}
	if edge := ce.edge; edge != nil {
		edge.http.add(mc, sc, lat, hasLat, reqSize, respSize)
		edge.hring.at(e).add(ok, lat, hasLat)
		if r.Protocol != "" {
			edge.proto = r.Protocol
		}
	}
}

func (h *httpTotals) add(mc methodClass, sc statusClass, lat uint64, hasLat bool, reqSize, respSize uint64) {
	h.requests[mc][sc]++
	if hasLat {
		h.latency.observe(latencyBounds, lat)
	}
	h.reqSize.observe(sizeBounds, reqSize)
	h.respSize.observe(sizeBounds, respSize)
}

// connEntry caches what a connection's flows are attributed to, so the
// per-syscall path hashes one integer instead of pod and service names.
type connEntry struct {
	conn       *flow.Connection // the entry is valid for this exact value
	pod        *podState
	svc        *serviceState
	edge       *edgeState
	clientSide bool
	last       int64
	// The endpoint of the connection's last server-side request, by its
	// method class and raw path: a keep-alive connection mostly repeats
	// them (see endpointCached).
	epMethod methodClass
	epPath   string
	ep       *endpointState
}

// endpointCached is endpointLocked through ce's memory of its last
// request. An endpoint stays in its service until EvictIdle evicts
// something, which drops every entry, so a remembered one is still the
// service's; the "<other>" bucket is never remembered, since every request
// counted there counts an overflow.
func (a *Aggregator) endpointCached(ce *connEntry, svc *serviceState, mc methodClass, rawPath string, e int64) *endpointState {
	if ce.ep != nil && ce.epMethod == mc && ce.epPath == rawPath {
		return ce.ep
	}
	ep := a.endpointLocked(svc, mc, rawPath, e)
	// A remembered path is at most MaxPathBytes long, so the cache's
	// entries pin at most MaxConnCache of them.
	if ep != nil && ep != svc.other && ce != &a.scratch && len(rawPath) <= a.opts.MaxPathBytes {
		ce.epMethod, ce.epPath, ce.ep = mc, rawPath, ep
	}
	return ep
}

// tcpAt returns where a TCP event of the connection counts at epoch e: the
// pod's and the edge's totals and the service's and the edge's time slots,
// each nil when the connection has none.
func (ce *connEntry) tcpAt(e int64) (podT, edgeT *tcpTotals, svcS, edgeS *tcpSlot) {
	if ce.pod != nil {
		podT = &ce.pod.tcp
	}
	if ce.svc != nil {
		svcS = ce.svc.tcp.at(e)
	}
	if ce.edge != nil {
		edgeT, edgeS = &ce.edge.tcp, ce.edge.tring.at(e)
	}
	return podT, edgeT, svcS, edgeS
}

// connLocked resolves c's pod, service and edge, through the cache when c
// was seen before, and marks them active. The returned entry may not be in
// the cache (cache full) and must not be kept.
func (a *Aggregator) connLocked(c *flow.Connection, e int64) *connEntry {
	if c.Role != event.RoleClient && c.Role != event.RoleServer {
		a.unattributed[unattrUnknownRole]++
	}
	slot := &a.front[frontSlot(c.ID)]
	ce := *slot
	if ce == nil || ce.conn != c {
		if in, ok := a.conns[c.ID]; ok && in.conn == c {
			ce, *slot = in, in
		} else {
			ce = nil
		}
	}
	if ce != nil && ce.last == e {
		// Marked active in this step already, with all it points to:
		// marks only move forward, so they are all still e.
		return ce
	}
	if ce != nil {
		ce.last = e
		if ce.pod != nil {
			ce.pod.last = e
		}
		if ce.svc != nil {
			ce.svc.last = e
		}
		if ce.edge != nil {
			ce.edge.last = e
			for _, n := range [...]nodeKey{ce.edge.key.client, ce.edge.key.server} {
				if n.svc != nil {
					n.svc.last = e
				}
			}
		}
		return ce
	}
	ce = &a.scratch
	if _, ok := a.conns[c.ID]; ok || len(a.conns) < a.opts.MaxConnCache {
		ce = &connEntry{}
		a.conns[c.ID] = ce
		*slot = ce // it replaces any entry of the same ID there
	} else {
		a.overflow[kindConnCache]++
	}
	pod, svc := a.localLocked(c.Local.Pod, e)
	edge, clientSide := a.edgeLocked(c, svc, e)
	*ce = connEntry{conn: c, pod: pod, svc: svc, edge: edge, clientSide: clientSide, last: e}
	return ce
}

func (a *Aggregator) forgetConnLocked(c *flow.Connection) {
	if ce, ok := a.conns[c.ID]; ok && ce.conn == c {
		delete(a.conns, c.ID)
		a.dropFront(c.ID, ce)
	}
}

// frontSlots is the size of Aggregator.front: a power of two, about the
// keep-alive connections of a busy node's pods, 2 KiB of pointers.
const (
	frontBits  = 8
	frontSlots = 1 << frontBits
)

// frontSlot spreads connection IDs over front's slots (Fibonacci hashing:
// IDs that differ in any bits, low or high, land apart).
func frontSlot(id event.ConnID) int {
	return int(uint64(id) * 0x9E3779B97F4A7C15 >> (64 - frontBits))
}

// dropFront takes ce, which left conns under id, out of front.
func (a *Aggregator) dropFront(id event.ConnID, ce *connEntry) {
	if slot := &a.front[frontSlot(id)]; *slot == ce {
		*slot = nil
	}
}

// localLocked returns the state of the connection's local pod and of its
// service (either nil past its limit) and marks them active.
func (a *Aggregator) localLocked(p *flow.Pod, e int64) (*podState, *serviceState) {
	k := podKey{id: p.ID, namespace: p.Namespace, name: p.Name, service: p.Service}
	ps, ok := a.pods[k]
	if !ok {
		if len(a.pods) >= a.opts.MaxPods {
			a.overflow[kindPod]++
			svc := a.serviceLocked(p, e)
			return nil, svc
		}
		ps = &podState{key: k, svc: a.serviceLocked(p, e)}
		if ps.svc != nil {
			ps.svc.pods[ps] = struct{}{}
		}
		a.pods[k] = ps
	}
	ps.last = e
	if ps.svc != nil {
		ps.svc.last = e
	}
	return ps, ps.svc
}

// serviceName is the name a pod is reported under: its Service, else its
// pod name.
func serviceName(p *flow.Pod) string {
	if p.Service != "" {
		return p.Service
	}
	return p.Name
}

func (a *Aggregator) serviceLocked(p *flow.Pod, e int64) *serviceState {
	k := serviceKey{namespace: p.Namespace, service: serviceName(p)}
	s, ok := a.services[k]
	if !ok {
		if len(a.services) >= a.opts.MaxServices {
			a.overflow[kindService]++
			return nil
		}
		s = &serviceState{
			key:       k,
			name:      k.service + "." + k.namespace,
			pods:      make(map[*podState]struct{}),
			http:      make(httpRing, a.slots),
			tcp:       make(tcpRing, a.slots),
			endpoints: make(map[endpointKey]*endpointState),
		}
		a.services[k] = s
	}
	s.last = e
	s.selected = p.Selected
	return s
}

// edgeLocked returns the client→server edge that c's flows feed from this
// side, or nil: see the package comment for which side reports an edge.
func (a *Aggregator) edgeLocked(c *flow.Connection, local *serviceState, e int64) (edge *edgeState, clientSide bool) {
	switch c.Role {
	case event.RoleClient:
		clientSide = true
	case event.RoleServer:
		if c.Remote.Pod != nil {
			return nil, false // the client pod reports this edge
		}
	default:
		return nil, false
	}
	if local == nil {
		return nil, false
	}
	var remote nodeKey
	if c.Remote.Pod != nil {
		if remote.svc = a.serviceLocked(c.Remote.Pod, e); remote.svc == nil {
			return nil, false
		}
	} else {
		if remote.ip = c.Remote.Addr.Addr().Unmap(); !remote.ip.IsValid() {
			return nil, false
		}
	}
	k := edgeKey{client: nodeKey{svc: local}, server: remote}
	if !clientSide {
		k = edgeKey{client: remote, server: nodeKey{svc: local}}
	}
	edge, ok := a.edges[k]
	if !ok {
		if len(a.edges) >= a.opts.MaxEdges {
			a.overflow[kindEdge]++
			return nil, false
		}
		edge = &edgeState{key: k, hring: make(httpRing, a.slots), tring: make(tcpRing, a.slots)}
		a.edges[k] = edge
	}
	edge.last = e
	return edge, clientSide
}

// endpointLocked returns the endpoint a server-side request counts for:
// its route pattern, its path while the service is under its limit, or the
// service's "<other>" bucket.
func (a *Aggregator) endpointLocked(svc *serviceState, mc methodClass, rawPath string, e int64) *endpointState {
	path := cleanPath(rawPath, a.opts.MaxPathBytes)
	patterned := false
	for i := range a.routes {
		if a.routes[i].match(path) {
			path, patterned = a.routes[i].pattern, true
			break
		}
	}
	k := endpointKey{method: mc, path: path}
	if ep, ok := svc.endpoints[k]; ok {
		return ep
	}
	if a.nEndpoints >= a.opts.MaxEndpoints || (!patterned && svc.rawEndpoints >= a.opts.MaxEndpointsPerService) {
		a.overflow[kindEndpoint]++
		if svc.other == nil {
			svc.other = &endpointState{svc: svc, name: otherEndpoint, ring: make(httpRing, a.slots)}
		}
		return svc.other
	}
	k.path = cloneString(path)
	ep := &endpointState{
		svc: svc, key: k, name: methodNames[mc] + ":" + k.path, patterned: patterned,
		ring: make(httpRing, a.slots),
	}
	svc.endpoints[k] = ep
	a.nEndpoints++
	if !patterned {
		svc.rawEndpoints++
	}
	return ep
}

const otherEndpoint = "<other>"

// connIdleSteps is how long a cached connection attribution lives without
// a flow: a connection whose close was never reported leaves the cache.
const connIdleSteps = 6

// EvictIdle drops every series with no activity for a whole retention. Run
// calls it periodically.
func (a *Aggregator) EvictIdle() {
	now := a.epoch()
	cutoff := now - int64(a.slots)
	a.mu.Lock()
	defer a.mu.Unlock()
	before := a.evictions
	defer func() {
		// Cached attributions may point at evicted series: drop them all
		// when anything went, else only the idle ones.
		for id, ce := range a.conns {
			if a.evictions != before || ce.last <= now-connIdleSteps {
				delete(a.conns, id)
				a.dropFront(id, ce)
			}
		}
	}()
	for k, ed := range a.edges {
		if ed.last <= cutoff {
			delete(a.edges, k)
			a.evictions[kindEdge]++
		}
	}
	for k, p := range a.pods {
		if p.last <= cutoff {
			delete(a.pods, k)
			if p.svc != nil {
				delete(p.svc.pods, p)
			}
			a.evictions[kindPod]++
		}
	}
	for k, s := range a.services {
		for ek, ep := range s.endpoints {
			if ep.last <= cutoff {
				delete(s.endpoints, ek)
				a.nEndpoints--
				if !ep.patterned {
					s.rawEndpoints--
				}
				a.evictions[kindEndpoint]++
			}
		}
		if s.other != nil && s.other.last <= cutoff {
			s.other = nil
		}
		if s.last <= cutoff && len(s.pods) == 0 {
			delete(a.services, k)
			a.evictions[kindService]++
		}
	}
}

// nodeID names a topology node.
func (n nodeKey) id() string {
	if n.svc != nil {
		return n.svc.name
	}
	return n.ip.String()
}
