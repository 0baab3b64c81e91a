package skywalking

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/weirnet/weir/daemon/flow"
)

// entry is one unit of export as the pipeline hands it: a kernel operation
// or an HTTP exchange. It is encoded into an item at once (see arena), on
// the pipeline's goroutine, and not kept.
type entry struct {
	op *flow.KernelOp
	ex *flow.Exchange
	// proto is the connection's protocol when op was handed on.
	proto flow.Protocol
}

func (e entry) conn() *flow.Connection {
	if e.op != nil {
		return e.op.Conn
	}
	return e.ex.Conn
}

// item is one queued entry, already encoded: what the sender needs to put it
// in a message, and of the flow values only the connection.
//
// Why: the queue used to hold the flow values themselves (every operation,
// its kernel metrics, every exchange's record and strings) until the OAP
// acknowledged them, and encoded them on the sender's goroutine. The garbage
// collector traced all of it on every cycle, and the encoder met it again
// long after the pipeline had it in cache (BenchmarkDaemonHTTP1Export
// profiled the metric loads of the encoder among its hottest lines).
// Encoding at enqueue touches the values while they are hot and lets them
// go; what stays queued is bytes in pointer-free chunks (see arena) and one
// connection pointer per item, shared by a connection's items.
type item struct {
	// conn is the connection the item belongs to. Its message head (the
	// connection field) is encoded at send time, so that pod names are
	// those known then (see SetIdentity) and conntrack is asked once per
	// batch and connection.
	conn *flow.Connection
	// b is the encoded kernel logs (each a field fMsgKernelLogs of the
	// message), then, for an exchange, its protocol log (fMsgProtocolLog).
	b []byte
	// chunk holds b (nil for items made without an arena, in tests).
	chunk *chunk
	// size is what the item counts against QueueBytes.
	size int64
	// logs is the number of kernel logs in b.
	logs int32
	// exchange says b ends with a protocol log: the item is a message of
	// its own. Otherwise its kernel logs travel with the connection's
	// other kernel logs (a kernel operation, or an exchange that cannot
	// be a protocol log).
	exchange bool
	// closes says b's last kernel log is the connection's close.
	closes bool
	// proto is the connection's protocol as the item says it
	// (ProtoUnknown: it says nothing).
	proto flow.Protocol
}

// sizeItem is an item's own size, counted with its bytes. The Connection
// is not counted: items share it, and the capture layer's connection table
// bounds how many there are.
const sizeItem = int64(unsafe.Sizeof(item{}))

// arenaChunk is the size of the byte chunks items are encoded into. A chunk
// lives as long as one of its items is queued or in flight; since the queue
// is FIFO the live chunks hold at most one chunk more than those items'
// bytes.
const arenaChunk = 64 << 10

// maxFreeChunks bounds the chunks kept for reuse (1 MiB): enough for a
// default batch in flight and the next being filled.
const maxFreeChunks = 16

// chunk is one arena chunk. refs counts its items not yet released, plus
// one while it is the arena's current chunk; at zero it is reused.
type chunk struct {
	b    []byte
	refs atomic.Int32
}

// arena encodes entries into items. Its chunks hold no pointers, so the
// garbage collector never scans them, and a chunk is one allocation for
// hundreds of items. Chunks whose items were all released (acknowledged,
// evicted or dropped) are reused: the encoded bytes were the largest part
// of what the daemon allocated per exported request, and allocation is
// what sets the pace of garbage collection.
type arena struct {
	mu   sync.Mutex
	cur  *chunk // cur.b[:len] is used, the rest free
	free []*chunk
}

// encodeRoom is the free space a chunk must have for an entry to be encoded
// straight into it, besides its strings (see entryRoom). Entries are a few
// hundred bytes; one that outgrows the room left anyway is copied to the
// next chunk (see add).
const encodeRoom = 4 << 10

// add encodes e. The item's bytes never move and are not written again
// until the item is released.
//
// It encodes straight into the current chunk rather than into a scratch
// buffer that is then copied: the bytes are written once, while the flow
// values are hot. A chunk with less than encodeRoom left is retired first,
// which wastes at most that much of each chunk.
func (a *arena) add(e entry) item {
	a.mu.Lock()
	it := item{conn: e.conn(), proto: e.proto}
	if need := entryRoom(e); a.cur == nil || cap(a.cur.b)-len(a.cur.b) < need {
		a.next(need)
	}
	c := a.cur
	n := len(c.b)
	buf := appendEntry(c.b, e, &it)
	if cap(buf) != cap(c.b) {
		// Outgrew the chunk (append moved it): an unusually large
		// exchange. Its bytes go to the next chunk, or to one of their
		// own; the chunk itself is left as it was.
		enc := buf[n:]
		a.next(len(enc))
		c = a.cur
		n = len(c.b)
		buf = append(c.b, enc...)
	}
	c.b = buf
	c.refs.Add(1)
	it.b, it.chunk = c.b[n:len(c.b):len(c.b)], c
	a.mu.Unlock()
	it.size = sizeItem + int64(len(it.b))
	return it
}

// entryRoom is the room add makes sure of before encoding e: encodeRoom,
// plus an exchange's strings, which alone may be long (a path up to the
// parser's header bound). An entry that needs more still outgrows it
// safely, at the cost of a copy.
func entryRoom(e entry) int {
	n := encodeRoom
	if e.ex != nil && e.ex.Record != nil {
		r := e.ex.Record
		n += len(r.Path) + len(r.Host) + len(r.Trace.TraceID) + len(r.Trace.SegmentID) + len(r.Trace.SpanID)
	}
	return n
}

// appendEntry appends e's encoding (see item.b) to buf and fills in what
// it says of it.
func appendEntry(buf []byte, e entry, it *item) []byte {
	if e.op != nil {
		it.logs = 1
		it.closes = e.op.Kind == flow.OpClose
		return appendKernelLog(buf, fMsgKernelLogs, e.op)
	}
	for _, op := range e.ex.Ops {
		if op != nil {
			buf = appendKernelLog(buf, fMsgKernelLogs, op)
			it.logs++
			it.closes = op.Kind == flow.OpClose
		}
	}
	it.proto = recordProto(e.ex.Record)
	if unexportable(e.ex.Record) == "" {
		// Not a protocol log otherwise: its kernel operations are
		// still sent (see builder.assemble).
		buf = appendHTTPLog(buf, fMsgProtocolLog, e.ex.Record)
		it.exchange = true
	}
	return buf
}

// next makes a chunk with room for n bytes current. a.mu is held.
func (a *arena) next(n int) {
	if c := a.cur; c != nil && c.refs.Add(-1) == 0 {
		a.recycleLocked(c)
	}
	var c *chunk
	switch {
	case n > arenaChunk:
		// An unusually large exchange gets a chunk of its own, never
		// reused.
		c = &chunk{b: make([]byte, 0, n)}
	case len(a.free) > 0:
		c = a.free[len(a.free)-1]
		a.free[len(a.free)-1] = nil
		a.free = a.free[:len(a.free)-1]
	default:
		c = &chunk{b: make([]byte, 0, arenaChunk)}
	}
	c.refs.Store(1) // the arena's own reference while current
	a.cur = c
}

// release ends the use of items' bytes; a chunk none of whose items is left
// is kept for reuse. Call it once per item, when the item leaves the queue
// for good (acknowledged, evicted, dropped) or was never queued.
func (a *arena) release(items []item) {
	for i := range items {
		a.releaseOne(&items[i])
	}
}

func (a *arena) releaseOne(it *item) {
	c := it.chunk
	if a == nil || c == nil || c.refs.Add(-1) != 0 {
		return
	}
	a.mu.Lock()
	a.recycleLocked(c)
	a.mu.Unlock()
}

func (a *arena) recycleLocked(c *chunk) {
	if cap(c.b) != arenaChunk || len(a.free) >= maxFreeChunks {
		return // left to the garbage collector
	}
	c.b = c.b[:0]
	a.free = append(a.free, c)
}

// queue is the bounded FIFO between the pipeline and the sender. It is bound
// by entries and by bytes (item.size); entries the sender has taken but the OAP
// has not yet acknowledged (in flight) count against both bounds, so memory
// stays bounded however long the OAP is away. When a new entry does not fit,
// the oldest queued entries are evicted: during an outage recent data is
// worth more than old data. In-flight entries are never evicted (they are
// the head of the queue and will be resent); if only in-flight entries are
// left, the new entry is the one dropped.
type queue struct {
	mu       sync.Mutex
	buf      []item // ring; grows by doubling up to maxEntries
	head, n  int
	bytes    int64 // queued, not in flight
	inflight int
	inBytes  int64

	maxEntries int
	maxBytes   int64
	// arena, when set, gets back the items that leave the queue for good
	// (evicted, drained, released after their batch).
	arena *arena
}

func newQueue(maxEntries int, maxBytes int64) *queue {
	initial := min(maxEntries, 1024)
	return &queue{buf: make([]item, initial), maxEntries: maxEntries, maxBytes: maxBytes}
}

// pushResult says what push did besides queueing.
type pushResult struct {
	queued    bool // false: e itself was dropped (too large, or everything else in flight)
	tooLarge  bool
	evicted   int // oldest entries evicted to make room
	reachedHi bool
}

// push appends e, evicting the oldest queued entries while e does not fit.
// hi is a depth at which the result reports reachedHi (the sender's batch
// size), so the caller can wake the sender without a second lock.
func (q *queue) push(e item, hi int) pushResult {
	var r pushResult
	if e.size > q.maxBytes {
		r.tooLarge = true
		return r
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n+q.inflight+1 > q.maxEntries || q.bytes+q.inBytes+e.size > q.maxBytes {
		if q.n == 0 {
			return r // only in-flight entries left: they win
		}
		old := &q.buf[q.head]
		q.bytes -= old.size
		q.arena.releaseOne(old)
		*old = item{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		r.evicted++
	}
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)%len(q.buf)] = e
	q.n++
	q.bytes += e.size
	r.queued = true
	r.reachedHi = q.n >= hi
	return r
}

func (q *queue) grow() {
	nb := make([]item, min(2*len(q.buf), q.maxEntries))
	for i := 0; i < q.n; i++ {
		nb[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = nb, 0
}

// take moves up to len(dst[:cap]) entries from the head into dst and marks
// them in flight. It returns the filled slice.
func (q *queue) take(dst []item) []item {
	dst = dst[:0]
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n > 0 && len(dst) < cap(dst) {
		slot := &q.buf[q.head]
		dst = append(dst, *slot)
		q.bytes -= slot.size
		q.inBytes += slot.size
		*slot = item{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		q.inflight++
	}
	return dst
}

// release ends the in-flight state of a batch taken with take (acknowledged,
// or given up at shutdown).
func (q *queue) release(batch []item) {
	var b int64
	for i := range batch {
		b += batch[i].size
	}
	q.mu.Lock()
	q.inflight -= len(batch)
	q.inBytes -= b
	q.mu.Unlock()
	q.arena.release(batch)
}

// drain empties the queue (not the in-flight batch) and returns how many
// entries it held.
func (q *queue) drain() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.n
	for q.n > 0 {
		q.arena.releaseOne(&q.buf[q.head])
		q.buf[q.head] = item{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	q.bytes = 0
	return n
}

// depth returns queued plus in-flight entries and bytes.
func (q *queue) depth() (entries int, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n + q.inflight, q.bytes + q.inBytes
}

// len returns the number of queued entries, in-flight ones excluded.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}
