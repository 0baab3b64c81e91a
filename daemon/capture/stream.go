package capture

import "github.com/weirnet/weir/bpf/event"

// Stream consumes the two byte streams of one connection. The protocol
// parsers implement it; the Table calls it from the Sink goroutine only, so an
// implementation needs no locking of its own.
//
// For each direction the calls describe the stream without holes or overlaps:
// the sum of len(b) over Data calls plus n over Skip calls equals the stream
// offset reached. Skip marks bytes that were moved by the process but are not
// available (lost events or truncated captures); a parser that cannot
// resynchronise over n unknown bytes should drop its state for that direction.
type Stream interface {
	// Data delivers the next bytes of direction dir. b is only valid during
	// the call: keep a copy if needed. start and end bracket the syscall
	// that moved the bytes.
	Data(dir event.Direction, b []byte, start, end event.Timestamp)
	// Skip says the next n bytes of direction dir are missing. start and
	// end bound when they were moved as far as the Table knows.
	Skip(dir event.Direction, n uint64, start, end event.Timestamp)
	// Close is called once, when the connection is closed, expired or
	// evicted; no call follows it.
	Close(t event.Timestamp)
}

// ReasonedSkipper is implemented by a Stream that wants to know why bytes
// were skipped. The Table then calls SkipBecause in place of Skip (the
// Stream interface is unchanged): why is the kernel's reason for an
// event's uncopied suffix (event.SkipH2Data and event.SkipBody are bytes
// the kernel left out on purpose, see event.SkipReason.Benign), or
// event.SkipNone for a hole where events were lost on the way (ring buffer
// overflow, reorder timeout): bytes nobody knows anything about. Whether a
// skip hurts is still the parser's to decide from its own framing state.
type ReasonedSkipper interface {
	SkipBecause(dir event.Direction, n uint64, why event.SkipReason, start, end event.Timestamp)
}

// skipTo tells s that n bytes of dir were skipped for why.
func skipTo(s Stream, dir event.Direction, n uint64, why event.SkipReason, start, end event.Timestamp) {
	if r, ok := s.(ReasonedSkipper); ok {
		r.SkipBecause(dir, n, why, start, end)
		return
	}
	s.Skip(dir, n, start, end)
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

func (NopStream) Data(event.Direction, []byte, event.Timestamp, event.Timestamp) {}
func (NopStream) Skip(event.Direction, uint64, event.Timestamp, event.Timestamp) {}
func (NopStream) Close(event.Timestamp)                                          {}

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
