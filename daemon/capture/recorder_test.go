package capture

import (
	"sync"

	"github.com/weirnet/weir/bpf/event"
)

// The test doubles of the Stream interface: they were exported from
// stream.go although only this package's tests use them.

// RecordedOp is one call a RecordingStream received.
type RecordedOp struct {
	Kind  string // "data", "skip" or "close"
	Dir   event.Direction
	Bytes []byte           // copy of the data for "data"
	N     uint64           // length for "data", count for "skip"
	Why   event.SkipReason // "skip": the reason (SkipNone for lost events)
	Start event.Timestamp
	End   event.Timestamp
}

// RecordingStream records every call, for tests of the Table: each
// Segment as it came (without its payload) and as the bytes it delivers,
// a "skip" of its Gap, a "data" of its Payload and a "skip" of its Suffix,
// each only when not empty. It is safe for concurrent use, so a test may
// inspect it while events are still being fed.
type RecordingStream struct {
	mu     sync.Mutex
	ops    []RecordedOp
	segs   []Segment
	closed bool
}

func (s *RecordingStream) Segment(g *Segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := *g
	kept.Payload = nil
	s.segs = append(s.segs, kept)
	if g.Gap > 0 {
		s.ops = append(s.ops, RecordedOp{Kind: "skip", Dir: g.Dir, N: g.Gap, Why: event.SkipNone, Start: g.PrevEnd, End: g.Start})
	}
	if len(g.Payload) > 0 {
		s.ops = append(s.ops, RecordedOp{Kind: "data", Dir: g.Dir, Bytes: append([]byte(nil), g.Payload...),
			N: uint64(len(g.Payload)), Start: g.Start, End: g.End})
	}
	if g.Suffix > 0 {
		s.ops = append(s.ops, RecordedOp{Kind: "skip", Dir: g.Dir, N: g.Suffix, Why: g.Why, Start: g.Start, End: g.End})
	}
}

// Segments returns a copy of the Segments received so far, without their
// payloads.
func (s *RecordingStream) Segments() []Segment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Segment(nil), s.segs...)
}

func (s *RecordingStream) Close(t event.Timestamp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.ops = append(s.ops, RecordedOp{Kind: "close", Start: t, End: t})
}

// Ops returns a copy of the calls received so far.
func (s *RecordingStream) Ops() []RecordedOp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RecordedOp(nil), s.ops...)
}

// Closed reports whether Close was called.
func (s *RecordingStream) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Bytes returns the delivered bytes of direction dir concatenated, with each
// skipped byte replaced by fill, so a test can compare a stream with what was
// sent.
func (s *RecordingStream) Bytes(dir event.Direction, fill byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []byte
	for _, op := range s.ops {
		if op.Dir != dir {
			continue
		}
		switch op.Kind {
		case "data":
			out = append(out, op.Bytes...)
		case "skip":
			for range op.N {
				out = append(out, fill)
			}
		}
	}
	return out
}

// Recorder is a StreamFactory source that keeps a RecordingStream per
// connection.
type Recorder struct {
	mu      sync.Mutex
	streams map[event.ConnID]*RecordingStream
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{streams: make(map[event.ConnID]*RecordingStream)}
}

// Factory is the StreamFactory to put in Config.
func (r *Recorder) Factory(c *Conn) Stream {
	s := &RecordingStream{}
	r.mu.Lock()
	r.streams[c.ID] = s
	r.mu.Unlock()
	return s
}

// Stream returns the stream recorded for id, or nil.
func (r *Recorder) Stream(id event.ConnID) *RecordingStream {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.streams[id]
}
