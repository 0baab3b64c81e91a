package skywalking

import (
	"sync"
	"unsafe"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
)

// entry is one queued unit of export: a kernel operation or an HTTP exchange.
// It keeps the flow values themselves (they are immutable once delivered);
// conversion to protobuf happens on the sender's goroutine so the pipeline
// pays only for the enqueue.
type entry struct {
	op *flow.KernelOp
	ex *flow.Exchange
	// proto is the connection's protocol when op was handed on.
	proto flow.Protocol
	size  int64 // estimated bytes retained, see entrySize
}

func (e entry) conn() *flow.Connection {
	if e.op != nil {
		return e.op.Conn
	}
	return e.ex.Conn
}

// Estimated retained sizes. The estimate only has to be a stable upper-ish
// bound so that QueueBytes means something when the OAP is away for hours;
// it deliberately ignores the Connection, which entries share and whose
// number is bounded upstream by the capture layer's connection table.
const (
	sizeEntry       = int64(unsafe.Sizeof(entry{}))
	sizeKernelOp    = int64(unsafe.Sizeof(flow.KernelOp{}))
	sizeSend        = int64(unsafe.Sizeof(event.SendMetrics{}))
	sizeRecv        = int64(unsafe.Sizeof(event.RecvMetrics{}))
	sizeSocket      = int64(unsafe.Sizeof(event.SocketStats{}))
	sizeDrop        = int64(unsafe.Sizeof(event.Drop{}))
	sizeExchange    = int64(unsafe.Sizeof(flow.Exchange{}))
	sizeOpPointer   = int64(unsafe.Sizeof((*flow.KernelOp)(nil)))
	sizeRecordFixed = 512 // record.Record without its strings, rounded up
)

func opSize(op *flow.KernelOp) int64 {
	n := sizeKernelOp
	if op.Send != nil {
		n += sizeSend + int64(len(op.Send.Drops))*sizeDrop
	}
	if op.Recv != nil {
		n += sizeRecv
	}
	if op.Socket != nil {
		n += sizeSocket + int64(len(op.Socket.Drops))*sizeDrop
	}
	return n
}

func exchangeSize(ex *flow.Exchange) int64 {
	n := sizeExchange + int64(len(ex.Ops))*sizeOpPointer
	if r := ex.Record; r != nil {
		n += sizeRecordFixed + int64(len(r.Method)+len(r.Path)+len(r.Host)+len(r.Scheme)+len(r.GRPCMessage)+
			len(r.Trace.TraceID)+len(r.Trace.SegmentID)+len(r.Trace.SpanID)+len(r.Trace.ParentSpanID)+len(r.Trace.Raw))
	}
	for _, op := range ex.Ops {
		n += opSize(op)
	}
	return n
}

// queue is the bounded FIFO between the pipeline and the sender. It is bound
// by entries and by estimated bytes; entries the sender has taken but the OAP
// has not yet acknowledged (in flight) count against both bounds, so memory
// stays bounded however long the OAP is away. When a new entry does not fit,
// the oldest queued entries are evicted: during an outage recent data is
// worth more than old data. In-flight entries are never evicted (they are
// the head of the queue and will be resent); if only in-flight entries are
// left, the new entry is the one dropped.
type queue struct {
	mu       sync.Mutex
	buf      []entry // ring; grows by doubling up to maxEntries
	head, n  int
	bytes    int64 // queued, not in flight
	inflight int
	inBytes  int64

	maxEntries int
	maxBytes   int64
}

func newQueue(maxEntries int, maxBytes int64) *queue {
	initial := min(maxEntries, 1024)
	return &queue{buf: make([]entry, initial), maxEntries: maxEntries, maxBytes: maxBytes}
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
func (q *queue) push(e entry, hi int) pushResult {
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
		*old = entry{}
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
	nb := make([]entry, min(2*len(q.buf), q.maxEntries))
	for i := 0; i < q.n; i++ {
		nb[i] = q.buf[(q.head+i)%len(q.buf)]
	}
	q.buf, q.head = nb, 0
}

// take moves up to len(dst[:cap]) entries from the head into dst and marks
// them in flight. It returns the filled slice.
func (q *queue) take(dst []entry) []entry {
	dst = dst[:0]
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n > 0 && len(dst) < cap(dst) {
		slot := &q.buf[q.head]
		dst = append(dst, *slot)
		q.bytes -= slot.size
		q.inBytes += slot.size
		*slot = entry{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		q.inflight++
	}
	return dst
}

// release ends the in-flight state of a batch taken with take (acknowledged,
// or given up at shutdown).
func (q *queue) release(batch []entry) {
	var b int64
	for i := range batch {
		b += batch[i].size
	}
	q.mu.Lock()
	q.inflight -= len(batch)
	q.inBytes -= b
	q.mu.Unlock()
}

// drain empties the queue (not the in-flight batch) and returns how many
// entries it held.
func (q *queue) drain() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.n
	for q.n > 0 {
		q.buf[q.head] = entry{}
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
