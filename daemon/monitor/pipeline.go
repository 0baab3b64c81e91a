package monitor

import (
	"cmp"
	"log/slog"
	"slices"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/capture"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol"
)

type pipelineConfig struct {
	log       *slog.Logger
	consumers []flow.Consumer
	pods      *podIndex
	requests  *requestRing
	pstats    *protocol.Stats
	limits    protocol.Limits
	dump      *dumper
	metrics   *metrics
	ctl       captureController // nil: the parsers cannot steer the capture
}

// pipeline is the capture.Observer and StreamFactory of the table. All its
// methods run with the table's lock held (Observer and Stream calls are
// serialised by the table), so its state needs no lock of its own.
type pipeline struct {
	pipelineConfig
	conns map[event.ConnID]*connState
	// waiting holds the connections with a syscall whose operation is
	// not known to be complete yet, for Swept, and connections whose
	// operations completed since the last sweep (connState.waiting says
	// which are in it).
	waiting map[*connState]struct{}
}

var _ capture.Observer = (*pipeline)(nil)

func newPipeline(cfg pipelineConfig) *pipeline {
	return &pipeline{
		pipelineConfig: cfg,
		conns:          make(map[event.ConnID]*connState),
		waiting:        make(map[*connState]struct{}),
	}
}

// opKey identifies one syscall's chunks on a connection and direction.
type opKey struct {
	sys        event.Syscall
	start, end event.Timestamp
}

// connState is the pipeline's side of one tracked connection: its parser,
// its syscalls as operations and the exchanges waiting for them. It is the
// connection's capture.Stream.
type connState struct {
	p      *pipeline
	c      *capture.Conn
	parser *protocol.Conn // created on the first bytes, when the role is known
	fc     *flow.Connection
	// fcPods and fcPodID are the pod index version and the pod id fc was
	// checked against: while neither moved, fc needs no lookups.
	fcPods  uint64
	fcPodID uint32
	// shown is fc's identity as the requests API shows it, formatted once
	// per fc rather than per exchange.
	shown *shownConn
	// waiting says the connection is in the pipeline's waiting set.
	waiting bool

	// pending is the operation of the syscall being reported in each
	// direction: the kernel reports a syscall as several chunks and says
	// nothing about which is the last, so the operation is complete when
	// the next syscall starts, kernel metrics arrive (they ride on the last
	// chunk), the connection ends, or OpFlushDelay passes.
	pending [2]*flow.KernelOp
	done    [2]opKey         // the last completed syscall per direction
	recent  []*flow.KernelOp // ring of the last OpsPerConn complete read/write ops
	next    int
	// opBlock holds the read/write operations not handed out yet of the
	// block allocated last (see newOp).
	opBlock []flow.KernelOp
	// exchanges wait until no operation overlapping them is pending.
	exchanges []*pendingExchange

	dump *connDump
}

func (p *pipeline) newStream(c *capture.Conn) capture.Stream {
	cs := &connState{p: p, c: c}
	if p.dump != nil {
		cs.dump = p.dump.open(c.ID)
	}
	p.conns[c.ID] = cs
	return cs
}

// Data implements capture.Stream.
func (cs *connState) Data(dir event.Direction, b []byte, start, end event.Timestamp) {
	cs.dump.data(dir, b)
	if pc := cs.ensureParser(); pc != nil {
		pc.Data(dir, b, start, end)
	}
}

// Skip implements capture.Stream.
func (cs *connState) Skip(dir event.Direction, n uint64, start, end event.Timestamp) {
	cs.dump.skip(dir, n)
	if pc := cs.ensureParser(); pc != nil {
		pc.Skip(dir, n, start, end)
	}
}

// Close implements capture.Stream. The rest of the connection's state goes
// in ConnFinished, which follows.
func (cs *connState) Close(t event.Timestamp) {
	if cs.parser != nil {
		cs.parser.Close(t)
	}
}

// ensureParser creates the parser on the first bytes rather than in the
// StreamFactory: the table creates the stream before it applies the open
// event, and the parser is better off knowing the role.
func (cs *connState) ensureParser() *protocol.Conn {
	if cs.parser == nil {
		pc, err := protocol.NewConn(cs.c.Role, cs.p.pstats, cs.record, cs.p.parserOptions(cs.c)...)
		if err != nil {
			// Limits were validated in New; this cannot happen.
			cs.p.log.Error("protocol parser", "error", err)
			return nil
		}
		cs.parser = pc
	}
	return cs.parser
}

// flow returns the connection's identity for consumers. It is rebuilt when
// the table learned more about the connection (a late open event), since
// values handed to consumers are immutable.
func (cs *connState) flow() *flow.Connection {
	c := cs.c
	pods := cs.p.pods
	version := pods.current()
	if fc := cs.fc; fc != nil && version == cs.fcPods && c.PodID == cs.fcPodID && fc.Role == c.Role &&
		fc.Local.Addr == c.Local && fc.Remote.Addr == c.Remote && fc.Process.PID == c.Proc.TGID &&
		fc.Process.ContainerID == c.ContainerID && (fc.Process.ContainerName != "" || !pods.namesContainers(c.ContainerID)) {
		// Nothing the identity is made of changed, so the lookups below
		// would find what fc holds.
		return fc
	}
	cs.fcPods, cs.fcPodID = version, c.PodID
	local := pods.byPodID(c.PodID) // renamed pods are new values
	// A container's name never changes: once the runtime has named this
	// container id, the resolver is not asked again (this runs per
	// operation).
	var container string
	if fc := cs.fc; fc != nil && fc.Process.ContainerID == c.ContainerID && fc.Process.ContainerName != "" {
		container = fc.Process.ContainerName
	} else {
		container = pods.containerName(c.PodID, c.ContainerID)
	}
	if fc := cs.fc; fc != nil && fc.Role == c.Role && fc.Local.Addr == c.Local && fc.Remote.Addr == c.Remote &&
		fc.Process.PID == c.Proc.TGID && fc.Process.ContainerID == c.ContainerID &&
		fc.Local.Pod == local && fc.Process.ContainerName == container {
		return fc
	}
	fc := &flow.Connection{
		ID:     c.ID,
		Role:   c.Role,
		Local:  flow.Peer{Addr: c.Local, Pod: local},
		Remote: flow.Peer{Addr: c.Remote},
		Process: flow.Process{PID: c.Proc.TGID, Comm: c.Proc.Comm, ContainerID: c.ContainerID,
			ContainerName: container},
	}
	if c.Remote.IsValid() {
		fc.Remote.Pod = pods.byAddr(c.Remote.Addr())
	}
	cs.fc = fc
	return fc
}

// ConnOpened implements capture.Observer: connect and accept become
// operations. A socket first seen through data has no such syscall.
func (p *pipeline) ConnOpened(c *capture.Conn, e event.ConnOpen) {
	cs := p.conns[c.ID]
	if cs == nil {
		return
	}
	var kind flow.OpKind
	switch e.Syscall {
	case event.SysConnect:
		kind = flow.OpConnect
	case event.SysAccept, event.SysAccept4:
		kind = flow.OpAccept
	default:
		return
	}
	p.emitOp(&flow.KernelOp{
		Conn: cs.flow(), Kind: kind, Syscall: e.Syscall, Start: e.Start, End: e.End,
		Success: e.Success, Errno: e.Errno,
	})
}

// DataArrived implements capture.Observer: every read and write syscall
// becomes one operation carrying the syscall's total bytes.
func (p *pipeline) DataArrived(c *capture.Conn, e event.Data) {
	cs, ok := c.Stream().(*connState) // what p.conns holds, without a lookup per chunk
	if !ok {
		return
	}
	d := e.Direction
	key := opKey{e.Syscall, e.Start, e.End}
	if key == cs.done[d] {
		// A chunk of a syscall already taken as complete (it lost a race
		// with the other direction's next syscall): its bytes are in the
		// stream, but the operation was delivered and stays as it is.
		p.metrics.lateChunks.Add(1)
		return
	}
	if op := cs.pending[d]; op != nil && (op.Syscall != e.Syscall || op.Start != e.Start || op.End != e.End) {
		cs.complete(d)
	}
	// A syscall in the other direction that started after the pending one
	// returned means the pending one is over: the kernel emits all of a
	// syscall's chunks before the syscall returns. (Only another thread
	// starting within microseconds of that return can beat its last
	// chunk; that chunk is then counted as late.)
	if op := cs.pending[1-d]; op != nil && e.Start > op.End {
		cs.complete(1 - d)
	}
	op := cs.pending[d]
	if op == nil {
		kind := flow.OpWrite
		if d == event.Ingress {
			kind = flow.OpRead
		}
		op = cs.newOp()
		*op = flow.KernelOp{Conn: cs.flow(), Kind: kind, Syscall: e.Syscall, Start: e.Start, End: e.End, Success: true}
		cs.pending[d] = op
		if !cs.waiting {
			cs.waiting = true
			p.waiting[cs] = struct{}{}
		}
	}
	op.Bytes += uint64(e.Size)
	if e.Send != nil || e.Recv != nil {
		op.Send, op.Recv = e.Send, e.Recv
		cs.complete(d)
	}
}

// ConnFinished implements capture.Observer.
func (p *pipeline) ConnFinished(c *capture.Conn, info capture.ConnInfo, ev *event.ConnClose) {
	cs := p.conns[c.ID]
	if cs == nil {
		return
	}
	delete(p.conns, c.ID)
	cs.complete(event.Egress)
	cs.complete(event.Ingress)
	delete(p.waiting, cs)
	cs.waiting = false
	cs.deliver(true)
	if ev != nil {
		p.emitOp(&flow.KernelOp{
			Conn: cs.flow(), Kind: flow.OpClose, Syscall: event.SysClose, Start: ev.Start, End: ev.End,
			Success: ev.Success, Socket: ev.Socket,
		})
	}
	cs.dump.close(info)
}

// Retransmitted implements capture.Observer: the retransmit goes to the
// consumers that take retransmits.
func (p *pipeline) Retransmitted(c *capture.Conn, e event.Retransmit) {
	cs := p.conns[c.ID]
	if cs == nil {
		return
	}
	var r *flow.Retransmit
	for _, c := range p.consumers {
		if rc, ok := c.(flow.RetransmitConsumer); ok {
			if r == nil {
				r = &flow.Retransmit{Conn: cs.flow(), Segments: e.Segments, State: e.State, Time: e.Time}
			}
			rc.Retransmit(r)
		}
	}
}

// Swept implements capture.Observer: operations whose syscall has been
// quiet for OpFlushDelay are complete. Connections that have nothing
// pending any more leave the waiting set here rather than at every
// completed operation, which would cost two map updates per syscall.
func (p *pipeline) Swept(now event.Timestamp) {
	for cs := range p.waiting {
		for d := range cs.pending {
			if op := cs.pending[d]; op != nil && now > op.End && time.Duration(now-op.End) >= OpFlushDelay {
				cs.complete(event.Direction(d))
			}
		}
		if cs.pending[0] == nil && cs.pending[1] == nil {
			delete(p.waiting, cs)
			cs.waiting = false
		}
	}
}

// complete delivers the pending operation of direction d.
func (cs *connState) complete(d event.Direction) {
	op := cs.pending[d]
	if op == nil {
		return
	}
	cs.pending[d] = nil
	cs.done[d] = opKey{op.Syscall, op.Start, op.End}
	cs.p.emitOp(op)
	// Ops are kept only where an exchange may still claim them: not on a
	// connection the parser gave up on as plain TCP.
	if cs.parser == nil || cs.parser.Kind() != protocol.KindTCP {
		cs.remember(op)
	}
	cs.deliver(false)
}

// opsPerBlock is how many read/write operations a connection allocates at
// once: a request's and its response's syscall, twice. A consumer that
// keeps an operation keeps its block alive, at most three operations more
// than it asked for; the connection itself keeps the last OpsPerConn.
const opsPerBlock = 4

// newOp returns a zero operation for the connection. Operations are made
// once per syscall, and taking them from blocks spares most of their
// allocations.
func (cs *connState) newOp() *flow.KernelOp {
	if len(cs.opBlock) == 0 {
		cs.opBlock = make([]flow.KernelOp, opsPerBlock)
	}
	op := &cs.opBlock[0]
	cs.opBlock = cs.opBlock[1:]
	return op
}

// remember adds op to the ring of recent operations.
func (cs *connState) remember(op *flow.KernelOp) {
	if len(cs.recent) < OpsPerConn {
		cs.recent = append(cs.recent, op)
	} else {
		cs.recent[cs.next] = op
		cs.next = (cs.next + 1) % OpsPerConn
	}
}

func (p *pipeline) emitOp(op *flow.KernelOp) {
	p.metrics.ops[op.Kind].Add(1)
	for _, c := range p.consumers {
		c.KernelOp(op)
	}
}

// record is the parsers' sink: the exchange goes to the requests ring at
// once and to consumers when its operations are complete.
func (cs *connState) record(r *protocol.Record) {
	fc := cs.flow()
	if cs.shown == nil || cs.shown.conn != fc {
		cs.shown = showConn(fc)
	}
	cs.p.requests.add(cs.shown, r)
	cs.exchanges = append(cs.exchanges, &pendingExchange{Exchange: flow.Exchange{Conn: fc, Record: r}})
	if len(cs.exchanges) > PendingExchangesPerConn {
		cs.p.metrics.exchangesForced.Add(1)
		cs.deliverFirst()
	}
	cs.deliver(false)
}

// window is the time span of an exchange's bytes.
func window(r *protocol.Record) (event.Timestamp, event.Timestamp) {
	return r.ReqStart, max(r.ReqEnd, r.RespEnd, r.ReqStart)
}

// deliver hands waiting exchanges to consumers in order, as long as no
// pending operation may still belong to them (all when force).
func (cs *connState) deliver(force bool) {
	for len(cs.exchanges) > 0 {
		if !force {
			_, end := window(cs.exchanges[0].Record)
			if op := cs.pending[0]; op != nil && op.Start <= end {
				return
			}
			if op := cs.pending[1]; op != nil && op.Start <= end {
				return
			}
		}
		cs.deliverFirst()
	}
}

// pendingExchange is an exchange with room for the operations an exchange
// usually has (its request's and its response's syscall, or a few when
// they took several), so that it and its Ops take one allocation.
type pendingExchange struct {
	flow.Exchange
	ops [4]*flow.KernelOp
}

func (cs *connState) deliverFirst() {
	pe := cs.exchanges[0]
	ex := &pe.Exchange
	// Shifting down keeps the slice's array for the next exchanges, where
	// reslicing would give it up.
	rest := copy(cs.exchanges, cs.exchanges[1:])
	cs.exchanges[rest] = nil
	cs.exchanges = cs.exchanges[:rest]
	start, end := window(ex.Record)
	// recent is a ring in order of completion, oldest at next; consumers
	// get the ops in order of their start. They are gathered first so
	// that Ops is allocated once, at its size.
	var found [OpsPerExchange]*flow.KernelOp
	k := 0
	for _, part := range [2][]*flow.KernelOp{cs.recent[cs.next:], cs.recent[:cs.next]} {
		for _, op := range part {
			if op.Start <= end && op.End >= start && k < len(found) {
				found[k] = op
				k++
			}
		}
	}
	switch {
	case k > len(pe.ops):
		ex.Ops = make([]*flow.KernelOp, k)
	case k > 0:
		ex.Ops = pe.ops[:k:k]
	}
	copy(ex.Ops, found[:k])
	slices.SortStableFunc(ex.Ops, func(a, b *flow.KernelOp) int { return cmp.Compare(a.Start, b.Start) })
	cs.p.metrics.exchanges.Add(1)
	for _, c := range cs.p.consumers {
		c.Exchange(ex)
	}
}

func (p *pipeline) closeDump() {
	if p.dump != nil {
		p.dump.closeAll()
	}
}
