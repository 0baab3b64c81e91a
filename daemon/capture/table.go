package capture

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/weirnet/weir/bpf/event"
)

// Close reasons recorded on a connection that left the table.
const (
	ReasonClosed   = "closed"       // the process closed the fd (ConnClose)
	ReasonIdle     = "idle"         // no event for Config.IdleTimeout
	ReasonEvicted  = "evicted"      // the table was full (Config.MaxConns)
	ReasonShutdown = "shutdown"     // CloseAll
	ReasonExited   = "process-exit" // the owning process exited holding the fd; the kernel closed it
)

// Reasons for flushing a reorder buffer early, i.e. declaring the events it
// waits for lost. They key Stats.Flushes and label the metrics.
const (
	FlushReorderEvents = "reorder_events" // Config.ReorderEvents reached
	FlushReorderBytes  = "reorder_bytes"  // Config.ReorderBytes reached
	FlushBufferTotal   = "buffer_total"   // Config.MaxBufferedBytes reached
	FlushTimeout       = "timeout"        // waited Config.ReorderDelay
	FlushClose         = "close"          // the connection left the table
)

type flushReason int

const (
	flushReorderEvents flushReason = iota
	flushReorderBytes
	flushBufferTotal
	flushTimeout
	flushClose
	numFlushReasons
	flushNone flushReason = -1
)

var flushReasons = [numFlushReasons]string{FlushReorderEvents, FlushReorderBytes, FlushBufferTotal, FlushTimeout, FlushClose}

// Stats counts what the Table did, in particular every time a bound was hit
// or input was dropped. Counters only grow; gauges say "current".
type Stats struct {
	EventsOpen, EventsClose, EventsData, EventsRetransmit uint64

	ConnsTracked  int // gauge: connections in the table
	ConnsRetained int // gauge: closed connections kept for the API
	BufferedBytes int // gauge: payload bytes held in reorder buffers

	ConnsCreated uint64 // connections that entered the table
	ConnsDropped uint64 // evicted because the table was full
	ConnsExpired uint64 // expired after IdleTimeout
	FDReused     uint64 // open connections whose (tgid, fd) a new connection took before their close arrived
	ConnsClosed  uint64 // closed by a ConnClose event
	ConnsExited  uint64 // closed because their process exited holding them

	UnknownConnData  uint64 // data events that created a connection never opened
	UnknownConnClose uint64 // closes of a connection never seen (ignored)
	// LateCloses counts close events of a connection that had already
	// ended (ignored): evicted or idle-expired before its close arrived, or
	// ended at its process's exit although the kernel's close followed
	// (Config.KernelCloses unset). Not a loss of data: the connection's
	// bytes and exchanges were delivered when it ended; only the close's
	// kernel totals are not applied.
	LateCloses        uint64
	UnknownRetransmit uint64 // retransmits of a connection not in the table (ignored)
	LateOpen          uint64 // opens for a connection already closed (ignored)
	LateData          uint64 // data events for a connection already closed (dropped)
	BadEvents         uint64 // events with an invalid direction (dropped)

	Reordered   uint64 // events that arrived ahead of a missing one and were held
	OutOfWindow uint64 // events whose place in the stream was already delivered or declared a gap (dropped)
	Duplicates  uint64 // events whose Seq was already held (dropped)
	Overlaps    uint64 // events whose bytes were already covered by the stream (dropped)
	LostEvents  uint64 // events never received: Seq numbers skipped when a gap was declared
	Gaps        uint64 // runs of missing bytes declared to streams
	GapBytes    uint64 // bytes in those runs
	TailGaps    uint64 // of Gaps, those declared at a close (Segment.Tail)
	Truncated   uint64 // events whose payload was shorter than their size
	// PayloadBytes counts the payload bytes of data events received: what
	// was copied out of the kernel.
	PayloadBytes uint64
	// SkippedBytes counts the bytes of events the kernel did not copy,
	// by why (event.SkipReason), whether or not they were delivered.
	SkippedBytes [event.NumSkipReasons]uint64
	// BytesDropped counts bytes of received events that were not
	// delivered: late, out-of-window, duplicate or overlapping data.
	BytesDropped uint64

	// Flushes counts early reorder-buffer flushes by reason (Flush*).
	Flushes map[string]uint64
}

type fdKey struct {
	tgid uint32
	fd   int32
}

// Table tracks connections and reassembles their streams. It implements
// event.Sink: its methods must be called from one goroutine.
// Connections, Stats and Sweep may be called from any goroutine.
type Table struct {
	cfg  Config
	log  *slog.Logger
	pool bufPool
	// seg is the Segment being delivered, reused for every event: a
	// Stream keeps nothing of it past the call.
	seg Segment

	mu       sync.Mutex
	conns    map[event.ConnID]*Conn
	byFD     map[fdKey]*Conn
	perTGID  map[uint32]int     // connections in the table per process
	pending  map[*Conn]struct{} // connections holding reordered events
	lruHead  *Conn              // least recently active
	lruTail  *Conn              // most recently active
	buffered int
	closed   closedRing
	stats    Stats
	flushes  [numFlushReasons]uint64
}

var _ event.Sink = (*Table)(nil)

// NewTable returns an empty table. It fails only on an invalid Config.
func NewTable(cfg Config) (*Table, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Table{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "capture"),
		conns:   make(map[event.ConnID]*Conn),
		byFD:    make(map[fdKey]*Conn),
		perTGID: make(map[uint32]int),
		pending: make(map[*Conn]struct{}),
		closed:  newClosedRing(cfg.ClosedRing),
	}, nil
}

// ConnOpen implements event.Sink.
func (t *Table) ConnOpen(e event.ConnOpen) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.EventsOpen++
	if t.closed.has(e.Conn) {
		t.stats.LateOpen++
		return
	}
	c := t.conns[e.Conn]
	if c == nil {
		c = t.newConn(e.Conn, e.Proc, e.FD, e.Start)
	} else {
		// Data overtook the open (or the open was re-reported): the
		// connection keeps its streams and gains what the open knows.
		t.setProc(c, e.Proc, e.FD)
	}
	c.opened = true
	c.Role = e.Role
	c.Local, c.Remote = e.Local, e.Remote
	c.openSyscall = e.Syscall
	c.openStart, c.openEnd = e.Start, e.End
	c.success, c.inProgress, c.errno = e.Success, e.InProgress, e.Errno
	if e.Start < c.firstSeen {
		c.firstSeen = e.Start
	}
	t.touch(c, e.End)
	if t.cfg.Observer != nil {
		t.cfg.Observer.ConnOpened(c, e)
	}
}

// ConnClose implements event.Sink.
func (t *Table) ConnClose(e event.ConnClose) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.EventsClose++
	c := t.conns[e.Conn]
	if c == nil {
		if t.closed.has(e.Conn) {
			t.stats.LateCloses++
		} else {
			t.stats.UnknownConnClose++
		}
		return
	}
	c.closeTime = e.End
	c.kernelSent, c.kernelRecv = e.BytesSent, e.BytesRecv
	c.haveClose = true
	c.closeEvent = &e
	if e.End > c.lastSeen {
		c.lastSeen = e.End
	}
	t.stats.ConnsClosed++
	t.finish(c, e.End, ReasonClosed)
}

// Retransmit implements event.Sink: the retransmit goes to the Observer.
// It is not activity of the connection's process, so it does not keep the
// connection from expiring.
func (t *Table) Retransmit(e event.Retransmit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.EventsRetransmit++
	c := t.conns[e.Conn]
	if c == nil {
		t.stats.UnknownRetransmit++
		return
	}
	if t.cfg.Observer != nil {
		t.cfg.Observer.Retransmitted(c, e)
	}
}

// BorrowsMetrics implements event.MetricsBorrower: the table keeps no
// event's metrics past its Data call when its streams copy them
// (Config.StreamsCopyMetrics); it copies a held chunk's own.
func (t *Table) BorrowsMetrics() bool { return t.cfg.StreamsCopyMetrics }

// Data implements event.Sink.
func (t *Table) Data(e event.Data) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.EventsData++
	if e.Direction > event.Ingress {
		t.stats.BadEvents++
		return
	}
	// A tracked connection is never in the closed ring (it enters the
	// ring when it leaves the table, and a closed id does not come back),
	// so the ring is looked at only for ids not tracked.
	c := t.conns[e.Conn]
	if c == nil && t.closed.has(e.Conn) {
		t.stats.LateData++
		t.stats.BytesDropped += uint64(e.Size)
		return
	}
	if c == nil {
		t.stats.UnknownConnData++
		c = t.newConn(e.Conn, e.Proc, e.FD, e.Start)
		c.discoveredByData = true
		c.openSyscall = e.Syscall
	}
	t.touch(c, e.End)

	payload := e.Payload
	if uint64(len(payload)) > uint64(e.Size) {
		payload = payload[:e.Size]
	}
	h := &c.dirs[e.Direction]
	if e.Syscall.TLS() {
		// TLS plaintext: a stream of its own, for the Stream's
		// Plaintext side (see TLSStream).
		h = &c.dirs[plainHalf+int(e.Direction)]
		c.TLSLibrary = e.Syscall.TLSLibrary()
	}
	h.account(&t.stats, &e, len(payload))
	k := chunkOf(&e)
	t.reassemble(c, h, &k, payload)
}

// Sweep flushes reorder buffers that waited longer than ReorderDelay and
// expires connections idle for longer than IdleTimeout, as of now (event
// clock). The owner calls it periodically; Run does so.
func (t *Table) Sweep(now event.Timestamp) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.pending {
		for d := range c.dirs {
			h := &c.dirs[d]
			for t.waitedTooLong(h, now) {
				t.flushOne(c, h, flushTimeout)
			}
		}
		t.updatePending(c)
	}
	// The LRU list is in order of event arrival, which follows event time
	// closely; stopping at the first connection still active keeps the
	// sweep proportional to what expires.
	if idle := event.Timestamp(t.cfg.IdleTimeout); now > idle {
		for c := t.lruHead; c != nil && c.lastSeen < now-idle; c = t.lruHead {
			t.stats.ConnsExpired++
			t.finish(c, now, ReasonIdle)
		}
	}
	if t.cfg.Observer != nil {
		t.cfg.Observer.Swept(now)
	}
}

// Run calls Sweep every SweepInterval until ctx is done.
func (t *Table) Run(ctx context.Context) error {
	tick := time.NewTicker(t.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			t.Sweep(t.cfg.Clock())
		}
	}
}

// CloseAll closes every tracked connection (flushing reorder buffers and
// calling Stream.Close) as of now, e.g. at daemon shutdown after the reader
// stopped.
func (t *Table) CloseAll(now event.Timestamp) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := t.lruHead; c != nil; c = t.lruHead {
		t.finish(c, now, ReasonShutdown)
	}
}

// Stats returns a copy of the counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.ConnsTracked = len(t.conns)
	s.ConnsRetained = t.closed.len()
	s.BufferedBytes = t.buffered
	s.Flushes = make(map[string]uint64, len(flushReasons))
	for i, r := range flushReasons {
		s.Flushes[r] = t.flushes[i]
	}
	return s
}

func (t *Table) newConn(id event.ConnID, p event.Process, fd int32, ts event.Timestamp) *Conn {
	if len(t.conns) >= t.cfg.MaxConns && t.lruHead != nil {
		victim := t.lruHead
		t.stats.ConnsDropped++
		t.log.Debug("connection table full, evicting least recently active", "max", t.cfg.MaxConns, "evicted", uint64(victim.ID))
		t.finish(victim, ts, ReasonEvicted)
	}
	c := &Conn{ID: id, firstSeen: ts, lastSeen: ts}
	for d := range c.dirs {
		c.dirs[d].dir = event.Direction(d & 1)
		c.dirs[d].plain = d >= plainHalf
		c.dirs[d].lastEnd = ts
	}
	t.setProc(c, p, fd)
	t.conns[id] = c
	t.lruPush(c)
	t.stats.ConnsCreated++
	if s := t.cfg.StreamFactory(c); s != nil {
		c.stream = s
	} else {
		c.stream = NopStream{}
	}
	return c
}

// setProc records the owning process and indexes the connection by
// (tgid, fd).
//
// A new connection on a (tgid, fd) that an open connection still holds
// takes the index over, but does not end the old one: the kernel side
// reports a close at the closing thread's sys_exit_close, and another
// thread can have reused the fd (socket, connect) in between, so the old
// connection's close is usually still on its way. It is found by its
// ConnID when it arrives; a close that was truly lost ends it by idle
// expiry or at the process's exit.
func (t *Table) setProc(c *Conn, p event.Process, fd int32) {
	if t.cfg.ContainerID != nil && (!c.indexed || p.CgroupID != c.Proc.CgroupID) {
		c.ContainerID = ""
		if p.CgroupID != 0 {
			c.ContainerID = t.cfg.ContainerID(p.CgroupID)
		}
	}
	k := fdKey{p.TGID, fd}
	if oldKey := c.fdKey(); c.indexed && oldKey != k && t.byFD[oldKey] == c {
		delete(t.byFD, oldKey)
	}
	if c.counted && c.Proc.TGID != p.TGID {
		t.uncount(c)
	}
	c.Proc, c.PodID, c.FD = p, p.PodID, fd
	if !c.counted {
		t.perTGID[p.TGID]++
		c.counted = true
	}
	if old := t.byFD[k]; old != nil && old != c {
		t.stats.FDReused++
		old.indexed = false
	}
	t.byFD[k] = c
	c.indexed = true
}

// uncount removes c from the per-process connection count.
func (t *Table) uncount(c *Conn) {
	c.counted = false
	if t.perTGID[c.Proc.TGID]--; t.perTGID[c.Proc.TGID] <= 0 {
		delete(t.perTGID, c.Proc.TGID)
	}
}

// Process implements event.ProcessSink. A process that exits holding
// sockets makes no close syscall: the kernel closes them. The kernel side
// reports a process's exit once, when its last thread exits (whichever
// thread that is), and the process's connections end here, with a close
// at the exit time (kernel byte totals unknown) -- unless Config.KernelCloses
// says the kernel's own close of each socket follows.
func (t *Table) Process(e event.ProcessEvent) {
	if e.Kind != event.ProcessExit || t.cfg.KernelCloses {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.perTGID[e.Proc.TGID] == 0 {
		return
	}
	for _, c := range t.conns {
		if c.Proc.TGID != e.Proc.TGID {
			continue
		}
		c.closeEvent = &event.ConnClose{Conn: c.ID, Proc: c.Proc, FD: c.FD, Start: e.Time, End: e.Time, Success: true}
		if e.Time > c.lastSeen {
			c.lastSeen = e.Time
		}
		t.stats.ConnsExited++
		t.finish(c, e.Time, ReasonExited)
	}
}

// finish removes c from the table: its reorder buffers are flushed, its
// Stream closed, and its summary kept in the closed ring.
func (t *Table) finish(c *Conn, now event.Timestamp, reason string) {
	for d := range c.dirs {
		h := &c.dirs[d]
		for len(h.held) > 0 {
			t.flushOne(c, h, flushClose)
		}
	}
	if c.haveClose {
		t.tailGap(c, &c.dirs[event.Egress], c.kernelSent, c.closeTime)
		t.tailGap(c, &c.dirs[event.Ingress], c.kernelRecv, c.closeTime)
	}
	delete(t.pending, c)
	c.stream.Close(now)
	c.closeReason = reason
	if !c.haveClose {
		c.closeTime = now
	}
	delete(t.conns, c.ID)
	if t.byFD[c.fdKey()] == c {
		delete(t.byFD, c.fdKey())
	}
	if c.counted {
		t.uncount(c)
	}
	t.lruRemove(c)
	info := c.info(t.cfg.BootTime, false)
	t.closed.push(info)
	c.stream = nil
	if t.cfg.Observer != nil {
		t.cfg.Observer.ConnFinished(c, info, c.closeEvent)
	}
	c.closeEvent = nil
}

func (t *Table) touch(c *Conn, ts event.Timestamp) {
	if ts > c.lastSeen {
		c.lastSeen = ts
	}
	if t.lruTail != c {
		t.lruRemove(c)
		t.lruPush(c)
	}
}

func (t *Table) lruPush(c *Conn) {
	c.prev, c.next = t.lruTail, nil
	if t.lruTail != nil {
		t.lruTail.next = c
	} else {
		t.lruHead = c
	}
	t.lruTail = c
}

func (t *Table) lruRemove(c *Conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else if t.lruHead == c {
		t.lruHead = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else if t.lruTail == c {
		t.lruTail = c.prev
	}
	c.prev, c.next = nil, nil
}

// Conn is one tracked connection. The exported fields are written by the
// Table from the Sink goroutine; a Stream may read them from its callbacks
// (which run on that goroutine), anything else must use Table.Connections.
type Conn struct {
	ID          event.ConnID
	PodID       uint32
	Proc        event.Process // the process that opened it (or was first seen using it)
	FD          int32
	Local       netip.AddrPort
	Remote      netip.AddrPort
	Role        event.Role // may change from RoleUnknown when a late ConnOpen arrives
	ContainerID string
	// TLSLibrary names the library whose plaintext of this connection
	// was captured ("openssl", "boringssl", "go"), "" when none was.
	TLSLibrary string

	opened           bool // ConnOpen seen
	discoveredByData bool // created by a Data event
	openSyscall      event.Syscall
	openStart        event.Timestamp
	openEnd          event.Timestamp
	success          bool
	inProgress       bool
	errno            int32

	firstSeen, lastSeen    event.Timestamp
	haveClose              bool
	closeTime              event.Timestamp
	kernelSent, kernelRecv uint64
	closeReason            string
	closeEvent             *event.ConnClose // the close being applied, for the Observer

	// dirs are the socket's bytes by direction, then (from plainHalf)
	// the TLS plaintext by direction.
	dirs    [4]half
	stream  Stream
	indexed bool
	counted bool // in Table.perTGID under Proc.TGID

	prev, next *Conn
}

// plainHalf is the index in Conn.dirs of the first TLS plaintext half.
const plainHalf = 2

func (c *Conn) fdKey() fdKey { return fdKey{c.Proc.TGID, c.FD} }

// OpenSeen reports whether the connection's connect or accept was seen, so
// its streams are known from their first byte. It is false for a
// connection first seen through data: one that existed before the daemon
// started (the kernel reports it with the data syscall that revealed it),
// was inherited, or whose open event was lost.
func (c *Conn) OpenSeen() bool {
	if !c.opened {
		return false
	}
	switch c.openSyscall {
	case event.SysConnect, event.SysAccept, event.SysAccept4:
		return true
	}
	return false
}

// Stream returns the Stream of the connection: the one its StreamFactory
// made (NopStream when that returned nil), or nil once the connection has
// left the table.
func (c *Conn) Stream() Stream { return c.stream }
