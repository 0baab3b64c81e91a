package capture

import (
	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
)

// Observer follows what happens to the table's connections apart from
// their data: opens, closes, retransmits and sweeps. Data reaches the
// pipeline by one path only, the connection's Stream, in stream order (see
// Segment), so nothing here is about bytes or the syscalls that moved them.
//
// The Table calls an Observer with its lock held, from whichever goroutine
// drives it (the Sink goroutine, or Run's sweeps), so calls are serialised
// with each other and with the Stream callbacks of the same table. An
// Observer must return quickly and must not call back into the Table.
type Observer interface {
	// ConnOpened is called after a ConnOpen event was applied to c (not
	// for opens of connections already closed, which are dropped).
	ConnOpened(c *Conn, e event.ConnOpen)
	// ConnFinished is called when c leaves the table, after its Stream's
	// Close, with the summary the API keeps. closeEv is the ConnClose
	// event that ended it, nil when it left for another reason (idle,
	// evicted, fd reused, shutdown: see info.CloseReason).
	ConnFinished(c *Conn, info wire.ConnInfo, closeEv *event.ConnClose)
	// Retransmitted is called for a Retransmit event of a connection in
	// the table: a segment TCP resent outside the connection's syscalls.
	Retransmitted(c *Conn, e event.Retransmit)
	// Swept is called at the end of every Sweep with the sweep's time, so
	// the Observer can expire state of its own on the event clock.
	Swept(now event.Timestamp)
}
