package monitor

import (
	"cmp"
	"log/slog"
	"slices"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/capture"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/podindex"
	"github.com/weirnet/weir/daemon/protocol"
	"github.com/weirnet/weir/daemon/protocol/record"
	"github.com/weirnet/weir/daemon/requests"
	"github.com/weirnet/weir/daemon/streamdump"
)

type pipelineConfig struct {
	log       *slog.Logger
	consumers []flow.Consumer
	pods      *podindex.Index
	requests  *requests.Ring
	pstats    *record.Stats
	limits    record.Limits
	dump      *streamdump.Writer
	metrics   *metrics
	ctl       captureController // nil: the parsers cannot steer the capture
}

// Reasons a read or write reached OpConsumers on its own rather than in an
// exchange's Ops (pipeline_io_unclaimed_total).
const (
	ioNotHTTP        = iota // the connection is not HTTP
	ioBeforeExchange        // HTTP/1: before a later exchange, claimed by none
	ioHeldTooLong           // waited IOHoldDelay without an exchange claiming it
	ioConnBound             // pushed out by OpsPerConn newer operations (bound hit)
	ioExchangeBound         // its exchange already held OpsPerExchange (bound hit)
	ioClosed                // the connection closed with no exchange claiming it
	ioTLS                   // its exchanges were parsed from TLS plaintext, whose offsets are not the socket's
	numIOReasons
)

var ioReasonNames = [numIOReasons]string{"not_http", "before_exchange", "held_too_long", "conn_bound", "exchange_bound", "closed", "tls_plaintext"}

// pipeline is the capture.Observer and StreamFactory of the table. All its
// methods run with the table's lock held (Observer and Stream calls are
// serialised by the table), so its state needs no lock of its own.
//
// Data comes one way: each data event reaches a connection's Stream once,
// in stream order, as a capture.Segment carrying its bytes and its
// syscall. The bytes go to the parser; the syscall becomes an operation
// covering a range of the direction's stream, complete at the syscall's
// last event. A record says which stream ranges its request and response
// took, and claims the operations that overlap them: matching is by
// offset, in one place (deliverFirst).
type pipeline struct {
	pipelineConfig
	conns map[event.ConnID]*connState
	// opConsumers are the consumers that take each operation once (see
	// flow.OpConsumer).
	opConsumers []flow.OpConsumer
	// waiting holds the connections with an operation not complete yet
	// or held for an exchange, for Swept (connState.waiting says which
	// are in it).
	waiting map[*connState]struct{}
	// reuse says every consumer is a flow.Borrower: read and write
	// operations and pending exchanges go back to freeOps and freeEx once
	// consumers are done with them, and newOp and newExchange take from
	// there first (each list bounded by maxFree).
	reuse     bool
	freeOps   []*flow.KernelOp
	freeEx    []*pendingExchange
	freeSends []*event.SendMetrics
	freeRecvs []*event.RecvMetrics
}

// maxFree bounds each of the pipeline's lists of reusable values: enough
// for the operations and exchanges of a drain's worth of requests in
// flight at once, a few KiB each list.
const maxFree = 256

var _ capture.Observer = (*pipeline)(nil)

func newPipeline(cfg pipelineConfig) *pipeline {
	p := &pipeline{
		pipelineConfig: cfg,
		conns:          make(map[event.ConnID]*connState),
		waiting:        make(map[*connState]struct{}),
	}
	p.reuse = len(cfg.consumers) > 0
	for _, c := range cfg.consumers {
		if oc, ok := c.(flow.OpConsumer); ok {
			p.opConsumers = append(p.opConsumers, oc)
		}
		if _, ok := c.(flow.Borrower); !ok {
			p.reuse = false
		}
	}
	return p
}

// ioOp is a read or write with the range of its direction's stream its
// syscall moved, [from, to): what exchanges claim it by. The range stays
// with the pipeline, beside the operation consumers get (a nil KernelOp is
// no operation).
type ioOp struct {
	*flow.KernelOp
	from, to uint64
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
	shown *requests.Conn
	// waiting says the connection is in the pipeline's waiting set.
	waiting bool
	// sniffed says the first data chunk was looked at; tls that it began
	// a TLS handshake (or its plaintext arrived); decrypted that a TLS
	// library's plaintext of it arrived, which the parser then reads.
	sniffed, tls, decrypted bool

	// pending is the operation of the syscall being delivered in each
	// direction. It is complete at the syscall's last event (event.Data.Last);
	// only when events were lost is it completed without it: when the
	// next syscall's first event comes, the connection ends, or (nothing
	// following) after IOHoldDelay, counted in opsIncomplete.
	pending [2]ioOp
	// held are the complete reads and writes no exchange has claimed yet,
	// in order of completion (at most OpsPerConn): each goes either into
	// one exchange's Ops or, on its own, to OpConsumers (releaseHeld).
	held []ioOp
	// opened is the connect or accept held back from OpConsumers until the
	// connection's protocol is known (see flow.OpConsumer).
	opened *flow.KernelOp
	// opBlock holds the read/write operations not handed out yet of the
	// block allocated last (see newOp); exBlock the same of exchanges.
	opBlock []flow.KernelOp
	exBlock []pendingExchange
	// exchanges wait, in record order, until the operations covering the
	// ends of their request and response are complete.
	exchanges []*pendingExchange

	dump *streamdump.Conn
}

func (p *pipeline) newStream(c *capture.Conn) capture.Stream {
	cs := &connState{p: p, c: c}
	if p.dump != nil {
		cs.dump = p.dump.Open(c.ID)
	}
	p.conns[c.ID] = cs
	return cs
}

// Segment implements capture.Stream: the event's syscall goes into its
// operation, its bytes to the parser, and the operation is complete once
// its last event's bytes are parsed (so the records they finish find it).
func (cs *connState) Segment(s *capture.Segment) {
	if s.Tail {
		// The stream's last events were lost: no syscall goes with
		// the gap (all the Segment carries), and an operation still
		// pending missed its last event.
		cs.complete(s.Dir, false)
	} else {
		cs.track(s)
	}
	if s.Gap > 0 {
		cs.skip(s.Dir, s.Gap, s.PrevEnd, s.Start)
	}
	if len(s.Payload) > 0 {
		cs.data(s.Dir, s.Payload, s.Start, s.End)
	}
	if s.Suffix > 0 {
		cs.skip(s.Dir, s.Suffix, s.Start, s.End)
	}
	if s.Last {
		cs.complete(s.Dir, true)
	}
}

// data feeds the parser the next captured bytes of dir.
func (cs *connState) data(dir event.Direction, b []byte, start, end event.Timestamp) {
	cs.dump.Data(dir, b)
	if !cs.sniffed {
		cs.sniffed = true
		cs.tls = isTLSHandshake(b)
	}
	if cs.tls {
		// Ciphertext is never parsed: the parser is kept for the
		// plaintext a probed TLS library reports (Plaintext).
		return
	}
	if pc := cs.ensureParser(); pc != nil {
		pc.Data(dir, b, start, end)
		cs.parsed()
	}
}

// skip tells the parser n bytes of dir were not captured.
func (cs *connState) skip(dir event.Direction, n uint64, start, end event.Timestamp) {
	cs.dump.Skip(dir, n)
	if cs.tls {
		return
	}
	if pc := cs.ensureParser(); pc != nil {
		pc.Skip(dir, n, start, end)
		cs.parsed()
	}
}

// track adds the event's syscall to the operation of its direction: a
// syscall is one operation carrying its total bytes and the stream range
// they took. The first event of another syscall ends a pending operation
// whose last event was lost.
func (cs *connState) track(s *capture.Segment) {
	d := s.Dir
	op := &cs.pending[d]
	if op.KernelOp != nil && (op.Syscall != s.Syscall || op.Start != s.Start || op.End != s.End) {
		cs.complete(d, false)
	}
	if op.KernelOp == nil {
		kind := flow.OpWrite
		if d == event.Ingress {
			kind = flow.OpRead
		}
		// newOp's operations are zero: setting the fields spares a copy
		// of the whole KernelOp.
		k := cs.newOp()
		k.Conn, k.Kind, k.Syscall, k.Start, k.End, k.Success = cs.flow(), kind, s.Syscall, s.Start, s.End, true
		*op = ioOp{KernelOp: k, from: s.Offset, to: s.Offset}
		if !cs.waiting {
			cs.waiting = true
			cs.p.waiting[cs] = struct{}{}
		}
	}
	op.Bytes += s.Size
	op.to = max(op.to, s.Offset+s.Size)
	if s.Send != nil || s.Recv != nil {
		if cs.p.reuse {
			// The decoder reuses the segment's metrics
			// (capture.Config.StreamsCopyMetrics): the operation
			// takes a copy, which comes back with it.
			cs.p.copyMetrics(op.KernelOp, s.Send, s.Recv)
			return
		}
		op.Send, op.Recv = s.Send, s.Recv
	}
}

// copyMetrics sets op's metrics to copies of send and recv, in memory of
// the pipeline's that freeOp takes back.
func (p *pipeline) copyMetrics(op *flow.KernelOp, send *event.SendMetrics, recv *event.RecvMetrics) {
	copyInto(&op.Send, send, &p.freeSends)
	copyInto(&op.Recv, recv, &p.freeRecvs)
}

// copyInto sets *dst to a copy of src (nil for nil): into *dst itself when
// it already points somewhere, else into a value taken from free, else
// into a new one.
func copyInto[T any](dst **T, src *T, free *[]*T) {
	switch {
	case src == nil:
		*dst = nil
	case *dst != nil:
		**dst = *src
	case len(*free) > 0:
		*dst = (*free)[len(*free)-1]
		*free = (*free)[:len(*free)-1]
		**dst = *src
	default:
		m := *src
		*dst = &m
	}
}

// Plaintext implements capture.TLSStream: the TLS plaintext of the
// connection feeds the parser, as clear text would.
func (cs *connState) Plaintext() capture.Stream { return (*plainStream)(cs) }

// plainStream is a connection's TLS plaintext side.
type plainStream connState

// begin makes the parser the plaintext's: a connection whose first bytes
// were not seen as a TLS handshake may have fed ciphertext to a parser,
// which is then dropped.
func (ps *plainStream) begin() *protocol.Conn {
	cs := (*connState)(ps)
	if !cs.decrypted {
		cs.decrypted = true
		if !cs.tls {
			cs.sniffed, cs.tls = true, true
			cs.parser = nil
		}
		// Records now come from the plaintext stream, whose offsets say
		// nothing about the socket's: no exchange claims its reads and
		// writes.
		cs.releaseHeld(len(cs.held), ioTLS)
	}
	return cs.ensureParser()
}

// Segment feeds the plaintext's bytes to the parser. Its syscalls are no
// kernel operations: the socket reads and writes that carried the
// ciphertext are.
func (ps *plainStream) Segment(s *capture.Segment) {
	pc := ps.begin()
	if pc == nil {
		return
	}
	if s.Gap > 0 {
		pc.Skip(s.Dir, s.Gap, s.PrevEnd, s.Start)
	}
	if len(s.Payload) > 0 {
		pc.Data(s.Dir, s.Payload, s.Start, s.End)
	}
	if s.Suffix > 0 {
		pc.Skip(s.Dir, s.Suffix, s.Start, s.End)
	}
	(*connState)(ps).parsed()
}

// Close: the connection's Close closes the parser.
func (ps *plainStream) Close(event.Timestamp) {}

// parsed releases what waited for the parser's classification: the held
// connect or accept once the protocol is known, and held reads and writes
// once the connection turned out not to be HTTP (TLS plaintext can
// classify a connection after its first socket operations completed).
func (cs *connState) parsed() {
	if cs.opened == nil && len(cs.held) == 0 {
		return
	}
	switch cs.parser.Kind() {
	case protocol.KindDetecting:
	case protocol.KindTCP:
		cs.releaseOpened()
		if len(cs.exchanges) == 0 {
			cs.releaseHeld(len(cs.held), ioNotHTTP)
		}
	default:
		cs.releaseOpened()
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
	version := pods.Current()
	if fc := cs.fc; fc != nil && version == cs.fcPods && c.PodID == cs.fcPodID && fc.Role == c.Role &&
		fc.Local.Addr == c.Local && fc.Remote.Addr == c.Remote && fc.Process.PID == c.Proc.TGID &&
		fc.Process.ContainerID == c.ContainerID && fc.TLS == c.TLSLibrary &&
		(fc.Process.ContainerName != "" || !pods.NamesContainers(c.ContainerID)) {
		// Nothing the identity is made of changed, so the lookups below
		// would find what fc holds.
		return fc
	}
	cs.fcPods, cs.fcPodID = version, c.PodID
	local := pods.ByPodID(c.PodID) // renamed pods are new values
	// A container's name never changes: once the runtime has named this
	// container id, the resolver is not asked again (this runs per
	// operation).
	var container string
	if fc := cs.fc; fc != nil && fc.Process.ContainerID == c.ContainerID && fc.Process.ContainerName != "" {
		container = fc.Process.ContainerName
	} else {
		container = pods.ContainerName(c.PodID, c.ContainerID)
	}
	if fc := cs.fc; fc != nil && fc.Role == c.Role && fc.Local.Addr == c.Local && fc.Remote.Addr == c.Remote &&
		fc.Process.PID == c.Proc.TGID && fc.Process.ContainerID == c.ContainerID &&
		fc.Local.Pod == local && fc.Process.ContainerName == container && fc.TLS == c.TLSLibrary {
		return fc
	}
	fc := &flow.Connection{
		ID:     c.ID,
		Role:   c.Role,
		Local:  flow.Peer{Addr: c.Local, Pod: local},
		Remote: flow.Peer{Addr: c.Remote},
		Process: flow.Process{PID: c.Proc.TGID, Comm: c.Proc.Comm, ContainerID: c.ContainerID,
			ContainerName: container},
		TLS: c.TLSLibrary,
	}
	if c.Remote.IsValid() {
		fc.Remote.Pod = pods.ByAddr(c.Remote.Addr())
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
	op := &flow.KernelOp{
		Conn: cs.flow(), Kind: kind, Syscall: e.Syscall, Start: e.Start, End: e.End,
		Success: e.Success, Errno: e.Errno,
	}
	p.emitOp(op)
	if len(p.opConsumers) == 0 {
		return
	}
	cs.opened = op
	switch {
	case !e.Success || (cs.parser != nil && cs.parser.Kind() != protocol.KindDetecting):
		// A failed connect carries no data to wait for; a late open
		// event comes after the data that classified the connection.
		cs.releaseOpened()
	case !cs.waiting:
		// Swept releases it if no data comes within IOHoldDelay (an
		// idle pooled connection).
		cs.waiting = true
		p.waiting[cs] = struct{}{}
	}
}

// ConnFinished implements capture.Observer.
func (p *pipeline) ConnFinished(c *capture.Conn, info wire.ConnInfo, ev *event.ConnClose) {
	cs := p.conns[c.ID]
	if cs == nil {
		return
	}
	delete(p.conns, c.ID)
	cs.complete(event.Egress, false)
	cs.complete(event.Ingress, false)
	delete(p.waiting, cs)
	cs.waiting = false
	cs.deliver(true)
	cs.releaseOpened()
	cs.releaseHeld(len(cs.held), ioClosed)
	if ev != nil {
		op := &flow.KernelOp{
			Conn: cs.flow(), Kind: flow.OpClose, Syscall: event.SysClose, Start: ev.Start, End: ev.End,
			Success: ev.Success, Socket: ev.Socket,
		}
		p.emitOp(op)
		cs.connOp(op, -1)
	}
	cs.dump.Close(info)
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

// Swept implements capture.Observer: held reads and writes no exchange
// claimed within IOHoldDelay go on their own, and so does an operation
// still waiting for its syscall's last event after IOHoldDelay (the event
// was lost and nothing followed it to tell). Connections that
// have nothing pending or held any more leave the waiting set here rather
// than at every completed operation, which would cost two map updates per
// syscall.
func (p *pipeline) Swept(now event.Timestamp) {
	for cs := range p.waiting {
		for d := range cs.pending {
			if op := cs.pending[d]; op.KernelOp != nil && now > op.End && time.Duration(now-op.End) >= IOHoldDelay {
				cs.complete(event.Direction(d), false)
			}
		}
		old := 0
		for _, op := range cs.held {
			if now <= op.End || time.Duration(now-op.End) < IOHoldDelay {
				break
			}
			old++
		}
		cs.releaseHeld(old, ioHeldTooLong)
		if op := cs.opened; op != nil && now > op.End && time.Duration(now-op.End) >= IOHoldDelay {
			cs.releaseOpened()
		}
		if cs.pending[0].KernelOp == nil && cs.pending[1].KernelOp == nil && len(cs.held) == 0 && cs.opened == nil {
			delete(p.waiting, cs)
			cs.waiting = false
		}
	}
}

// complete delivers the pending operation of direction d; last says its
// syscall's last event arrived (otherwise events were lost: counted).
func (cs *connState) complete(d event.Direction, last bool) {
	op := cs.pending[d]
	if op.KernelOp == nil {
		return
	}
	cs.pending[d] = ioOp{}
	if !last {
		cs.p.metrics.opsIncomplete.Add(1)
	}
	cs.p.emitOp(op.KernelOp)
	if cs.decrypted {
		cs.connOp(op.KernelOp, ioTLS)
		return
	}
	if len(cs.exchanges) == 0 && cs.parser != nil && cs.parser.Kind() == protocol.KindTCP {
		// No exchange can claim it: the connection is not HTTP (or the
		// parser gave up on it).
		cs.releaseOpened()
		cs.releaseHeld(len(cs.held), ioNotHTTP)
		cs.connOp(op.KernelOp, ioNotHTTP)
		return
	}
	cs.hold(op)
	cs.deliver(false)
}

// isTLSHandshake says b starts with a TLS handshake record header: content
// type 22, a 3.x record version (TLS 1.0 to 1.3 all use 3.1 or 3.3 here;
// 3.0 is SSL 3). A connection that starts so is TLS whatever the parser
// makes of it.
func isTLSHandshake(b []byte) bool {
	return len(b) >= 3 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04
}

// protocol is what the connection's parser classified it as so far.
func (cs *connState) protocol() flow.Protocol {
	if cs.tls && !cs.decrypted {
		return flow.ProtoTLS
	}
	if cs.parser == nil {
		return flow.ProtoUnknown
	}
	switch cs.parser.Kind() {
	case protocol.KindHTTP1:
		return flow.ProtoHTTP1
	case protocol.KindHTTP2:
		return flow.ProtoHTTP2
	case protocol.KindTCP:
		return flow.ProtoTCP
	}
	return flow.ProtoUnknown
}

// connOp hands op to the OpConsumers; a read or write counts why it goes
// on its own (reason; -1 for connect, accept and close).
// It is the operation's last delivery: a reused op goes back to the free
// list after it.
func (cs *connState) connOp(op *flow.KernelOp, reason int) {
	if len(cs.p.opConsumers) == 0 {
		cs.p.freeOp(op)
		return
	}
	if reason >= 0 {
		cs.p.metrics.ioUnclaimed[reason].Add(1)
	}
	proto := cs.protocol()
	for _, c := range cs.p.opConsumers {
		c.ConnOp(op, proto)
	}
	cs.p.freeOp(op)
}

// freeOp takes back an operation consumers are done with, when they are
// all Borrowers.
//
// With reuse every read's and write's metrics are the pipeline's copies
// (copyMetrics); a close's Socket is not, and is left alone.
func (p *pipeline) freeOp(op *flow.KernelOp) {
	if !p.reuse {
		return
	}
	if m := op.Send; m != nil && len(p.freeSends) < maxFree {
		p.freeSends = append(p.freeSends, m)
	}
	if m := op.Recv; m != nil && len(p.freeRecvs) < maxFree {
		p.freeRecvs = append(p.freeRecvs, m)
	}
	if len(p.freeOps) < maxFree {
		*op = flow.KernelOp{}
		p.freeOps = append(p.freeOps, op)
	}
}

// releaseOpened hands the held connect or accept to OpConsumers.
func (cs *connState) releaseOpened() {
	if op := cs.opened; op != nil {
		cs.opened = nil
		cs.connOp(op, -1)
	}
}

// hold keeps op for the exchanges that may claim it. At the bound the
// oldest held operation goes on its own, counted.
func (cs *connState) hold(op ioOp) {
	if len(cs.held) >= OpsPerConn {
		cs.releaseHeld(1, ioConnBound)
	}
	cs.held = append(cs.held, op)
	if !cs.waiting {
		// Swept releases what no exchange claims in time.
		cs.waiting = true
		cs.p.waiting[cs] = struct{}{}
	}
}

// releaseHeld hands the n oldest held operations to OpConsumers on their
// own.
func (cs *connState) releaseHeld(n int, reason int) {
	if n == 0 {
		return
	}
	for _, op := range cs.held[:n] {
		cs.connOp(op.KernelOp, reason)
	}
	// Shifting down keeps the slice's array for the next operations.
	rest := copy(cs.held, cs.held[n:])
	clear(cs.held[rest:])
	cs.held = cs.held[:rest]
}

// opsPerBlock is how many read/write operations a connection allocates at
// once: a request's and its response's syscall, twice. A consumer that
// keeps an operation keeps its block alive, at most three operations more
// than it asked for; the connection itself holds at most OpsPerConn.
const opsPerBlock = 4

// newOp returns a zero operation for the connection. Operations are made
// once per syscall, and taking them from blocks spares most of their
// allocations.
func (cs *connState) newOp() *flow.KernelOp {
	if p := cs.p; len(p.freeOps) > 0 {
		op := p.freeOps[len(p.freeOps)-1]
		p.freeOps = p.freeOps[:len(p.freeOps)-1]
		return op
	}
	if len(cs.opBlock) == 0 {
		cs.opBlock = make([]flow.KernelOp, opsPerBlock)
	}
	op := &cs.opBlock[0]
	cs.opBlock = cs.opBlock[1:]
	return op
}

// newExchange returns a zero pending exchange for the connection, from a
// block of opsPerBlock as newOp does: a request and its response make an
// exchange on each end of a connection, so a block lasts a few requests.
func (cs *connState) newExchange() *pendingExchange {
	if p := cs.p; len(p.freeEx) > 0 {
		pe := p.freeEx[len(p.freeEx)-1]
		p.freeEx = p.freeEx[:len(p.freeEx)-1]
		return pe
	}
	if len(cs.exBlock) == 0 {
		cs.exBlock = make([]pendingExchange, opsPerBlock)
	}
	pe := &cs.exBlock[0]
	cs.exBlock = cs.exBlock[1:]
	return pe
}

func (p *pipeline) emitOp(op *flow.KernelOp) {
	p.metrics.ops[op.Kind].Add(1)
	for _, c := range p.consumers {
		c.KernelOp(op)
	}
}

// record is the parsers' sink: the exchange goes to the requests ring at
// once and to consumers when its operations are complete.
func (cs *connState) record(r *record.Record) {
	fc := cs.flow()
	if cs.shown == nil || cs.shown.Flow() != fc {
		cs.shown = requests.Show(fc)
	}
	cs.p.requests.Add(cs.shown, r)
	pe := cs.newExchange()
	if cs.p.reuse {
		// The parser reuses r's memory once this returns (see
		// protocol.WithSinkCopies); consumers borrow the copy, which
		// comes back with the exchange.
		pe.rec = *r
		r = &pe.rec
	}
	pe.Exchange = flow.Exchange{Conn: fc, Record: r}
	cs.exchanges = append(cs.exchanges, pe)
	if len(cs.exchanges) > PendingExchangesPerConn {
		cs.p.metrics.exchangesForced.Add(1)
		cs.deliverFirst()
	}
	cs.deliver(false)
}

// deliver hands waiting exchanges to consumers in order, as long as the
// operations covering the ends of their bytes are complete (all when
// force).
func (cs *connState) deliver(force bool) {
	for len(cs.exchanges) > 0 {
		if !force && !cs.settled(cs.exchanges[0].Record) {
			return
		}
		cs.deliverFirst()
	}
}

// settled says no operation that may carry r's bytes is pending: in each
// direction, the pending operation (if any) starts at or after the end of
// r's range there. The parser made r from bytes already delivered, so
// every operation before the pending one is complete.
func (cs *connState) settled(r *record.Record) bool {
	if cs.decrypted {
		return true // r's offsets are the plaintext's: no socket operation is r's
	}
	req, resp := cs.directions()
	return before(r.ReqOff, r.ReqEndOff, cs.pending[req]) && before(r.RespOff, r.RespEndOff, cs.pending[resp])
}

// before says the stream range [from, to) ends before op begins (or is
// empty, or there is no op).
func before(from, to uint64, op ioOp) bool {
	return to <= from || op.KernelOp == nil || to <= op.from
}

// directions returns the directions of the connection's requests and
// responses: the monitored process reads requests as a server (or when
// its role is unknown) and writes them as a client.
func (cs *connState) directions() (req, resp event.Direction) {
	if cs.c.Role == event.RoleClient {
		return event.Egress, event.Ingress
	}
	return event.Ingress, event.Egress
}

// pendingExchange is an exchange with room for the operations an exchange
// usually has (its request's and its response's syscall, or a few when
// they took several), so that it and its Ops take one allocation.
type pendingExchange struct {
	flow.Exchange
	ops [4]*flow.KernelOp
	// rec is the record's copy when the pipeline reuses values.
	rec record.Record
}

func (cs *connState) deliverFirst() {
	pe := cs.exchanges[0]
	ex := &pe.Exchange
	// Shifting down keeps the slice's array for the next exchanges, where
	// reslicing would give it up.
	rest := copy(cs.exchanges, cs.exchanges[1:])
	cs.exchanges[rest] = nil
	cs.exchanges = cs.exchanges[:rest]
	c := claim(ex.Conn.Role, ex.Record)
	inOrder := ex.Record.Protocol != record.HTTP2
	// Held operations are in order of completion; consumers get the
	// claimed ones in order of their start. They are counted first so that
	// Ops is allocated once, at its size.
	k := 0
	for _, op := range cs.held {
		if c.claims(&op) {
			k++
		}
	}
	over := max(k-OpsPerExchange, 0)
	k -= over
	switch {
	case k > len(pe.ops):
		ex.Ops = make([]*flow.KernelOp, 0, k)
	case k > 0:
		ex.Ops = pe.ops[:0:k]
	}
	// One pass moves the claimed operations into Ops and keeps the rest
	// held, in order. HTTP/1 exchanges come in order of their messages, so
	// an operation before this exchange's bytes in its direction that none
	// claimed never will be: it goes on its own.
	kept := cs.held[:0]
	for _, op := range cs.held {
		switch {
		case c.claims(&op) && len(ex.Ops) < k:
			ex.Ops = append(ex.Ops, op.KernelOp)
		case c.claims(&op):
			cs.connOp(op.KernelOp, ioExchangeBound)
		case inOrder && c.precedes(&op):
			cs.connOp(op.KernelOp, ioBeforeExchange)
		default:
			kept = append(kept, op)
		}
	}
	clear(cs.held[len(kept):])
	cs.held = kept
	sortByStart(ex.Ops)
	p := cs.p
	p.metrics.exchanges.Add(1)
	for _, c := range p.consumers {
		c.Exchange(ex)
	}
	if p.reuse {
		// The exchange's Ops were their last delivery.
		for _, op := range ex.Ops {
			p.freeOp(op)
		}
		if len(p.freeEx) < maxFree {
			*pe = pendingExchange{}
			p.freeEx = append(p.freeEx, pe)
		}
	}
}

// sortByStart orders ops by their start, stably. An exchange has a few,
// nearly always in order already: an insertion sort checks that with a
// compare per operation, without the generic sort's calls through a
// closure (1.5% of BenchmarkPipelineHTTP1KeepAlive).
func sortByStart(ops []*flow.KernelOp) {
	if len(ops) > 16 {
		slices.SortStableFunc(ops, func(a, b *flow.KernelOp) int { return cmp.Compare(a.Start, b.Start) })
		return
	}
	for i := 1; i < len(ops); i++ {
		for j := i; j > 0 && ops[j].Start < ops[j-1].Start; j-- {
			ops[j], ops[j-1] = ops[j-1], ops[j]
		}
	}
}

// claimer says which operations carried an exchange's bytes: those of the
// request's direction whose stream range overlaps the request's bytes, and
// those of the response's direction that overlap the response's. Ranges of
// the stream, not times, keep the other exchanges of a connection
// (concurrent HTTP/2 streams, pipelined HTTP/1 requests) from claiming each
// other's syscalls; an operation several exchanges' bytes share goes to the
// first delivered.
type claimer struct {
	reqKind, respKind flow.OpKind
	reqOff, reqEnd    uint64
	respOff, respEnd  uint64
}

func claim(role event.Role, r *record.Record) claimer {
	c := claimer{
		reqKind: flow.OpRead, respKind: flow.OpWrite,
		reqOff: r.ReqOff, reqEnd: r.ReqEndOff, respOff: r.RespOff, respEnd: r.RespEndOff,
	}
	if role == event.RoleClient {
		c.reqKind, c.respKind = flow.OpWrite, flow.OpRead
	}
	return c
}

func (c *claimer) claims(op *ioOp) bool {
	switch op.Kind {
	case c.reqKind:
		return c.reqEnd > c.reqOff && op.from < c.reqEnd && op.to > c.reqOff
	case c.respKind:
		return c.respEnd > c.respOff && op.from < c.respEnd && op.to > c.respOff
	}
	return false
}

// precedes says op ended before the exchange's bytes in its direction
// began (only a range that was seen counts).
func (c *claimer) precedes(op *ioOp) bool {
	switch op.Kind {
	case c.reqKind:
		return c.reqEnd > c.reqOff && op.to <= c.reqOff
	case c.respKind:
		return c.respEnd > c.respOff && op.to <= c.respOff
	}
	return false
}

func (p *pipeline) closeDump() {
	if p.dump != nil {
		p.dump.CloseAll()
	}
}
