package capture

import "github.com/weirnet/weir/bpf/event"

// Segment is one data event as the Table delivers it: once, in stream
// order, with everything known about it. It carries the event's bytes as
// the stream's next bytes (Gap, Payload, Suffix: they add up to where the
// direction's stream stands) and the facts of the syscall that moved them
// (Syscall, Start, End, Last, the kernel's metrics), so a reader that wants
// per-syscall operations builds them from the same ordered calls the
// parsers read bytes from.
//
// For each direction the Segments describe the stream without holes or
// overlaps: the sum of Gap + len(Payload) + Suffix over the Segments equals
// the stream offset reached.
type Segment struct {
	Dir     event.Direction
	Syscall event.Syscall
	// Start and End bracket the syscall that moved the bytes.
	Start, End event.Timestamp
	// Offset and Size place the event in the direction's stream:
	// [Offset, Offset+Size). Bytes of it already delivered by an earlier
	// event (an overlap) are not delivered again, so the bytes below may
	// be fewer than Size, or none.
	Offset uint64
	Size   uint64
	// Gap is how many bytes just before this event's new bytes no event
	// delivered: events lost on the way (ring buffer overflow, reorder
	// timeout), bytes nobody knows anything about. PrevEnd is the End of
	// the event delivered before in this direction, where the gap starts.
	Gap     uint64
	PrevEnd event.Timestamp
	// Payload is the event's captured bytes not delivered before. It is
	// only valid during the call: keep a copy if needed.
	Payload []byte
	// Suffix is how many of the event's bytes after Payload were not
	// captured, and Why the kernel's reason (event.SkipH2Data and
	// event.SkipBody are left out on purpose, see event.SkipReason.Benign).
	Suffix uint64
	Why    event.SkipReason
	// Last marks the syscall's last event (event.Data.Last); Send and Recv
	// are the kernel's measurements of the syscall, on its last event.
	Last bool
	Send *event.SendMetrics
	Recv *event.RecvMetrics
	// Tail marks the Segment the Table delivers at a connection's close
	// when the kernel counted more bytes in this direction (the close
	// event's totals) than events delivered: the stream's last events
	// were lost, so no later event could show them as a Gap. It carries
	// only that Gap, at the stream's end (Offset, Size 0); no syscall goes
	// with it, and Close follows.
	Tail bool
}

// Stream consumes the two directions of one connection, Segment by
// Segment. The pipeline (package monitor) implements it; the Table calls it
// with its lock held, from one goroutine at a time, so an implementation
// needs no locking of its own and must not call back into the Table.
type Stream interface {
	// Segment delivers the next event of direction s.Dir. s and its
	// Payload are only valid during the call.
	Segment(s *Segment)
	// Close is called once, when the connection is closed, expired or
	// evicted; no call follows it.
	Close(t event.Timestamp)
}

// StreamFactory creates the Stream for a newly tracked connection. It is
// called from the Sink goroutine when the Table first sees the connection; c
// stays valid (and is updated, e.g. when a late ConnOpen fills in the role)
// until the Stream's Close. The factory may return nil to ignore the
// connection's bytes.
type StreamFactory func(c *Conn) Stream

// NopStream discards everything. It is the default when no StreamFactory is
// configured.
type NopStream struct{}

func (NopStream) Segment(*Segment)      {}
func (NopStream) Close(event.Timestamp) {}

// TLSStream is a Stream that also takes its connection's TLS plaintext
// (event.Syscall.TLS): Plaintext returns the Stream those bytes go to,
// in their own stream offsets. A Stream that is not a TLSStream gets none
// of them.
type TLSStream interface {
	Plaintext() Stream
}

func plaintextOf(s Stream) Stream {
	if ts, ok := s.(TLSStream); ok {
		if p := ts.Plaintext(); p != nil {
			return p
		}
	}
	return NopStream{}
}
