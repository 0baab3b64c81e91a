package capture

import (
	"math"
	"sort"

	"github.com/weirnet/weir/bpf/event"
)

// half is the reassembly state of one direction of a connection.
//
// Invariant: everything before (nextSeq, nextOff) has been handed to the
// Stream as Segments; held contains only events with Seq > nextSeq-1,
// sorted by Seq, without duplicates.
type half struct {
	dir     event.Direction
	plain   bool // TLS plaintext, delivered to the Stream's Plaintext side
	nextSeq uint64
	nextOff uint64
	lastEnd event.Timestamp // end of the last delivered event: where a gap starts
	held    []chunk
	heldLen int // payload bytes in held

	// Counters shown in wire.ConnInfo.
	hwm       uint64 // highest stream offset covered by a received event
	syscalls  uint64
	events    uint64
	gaps      uint64
	gapBytes  uint64
	truncated uint64
	skipped   [event.NumSkipReasons]uint64 // bytes not copied, by reason

	lastSys                  event.Syscall
	lastSysStart, lastSysEnd event.Timestamp
}

// chunk is an event as reassembly keeps it: held out of order with its
// payload copied into buf, or (buf nil) about to be delivered.
type chunk struct {
	seq        uint64
	off        uint64
	size       uint32
	skip       event.SkipReason // why the bytes past the payload were not copied
	sys        event.Syscall
	last       bool
	buf        *[]byte
	start, end event.Timestamp
	send       *event.SendMetrics
	recv       *event.RecvMetrics
}

// chunkOf is e as reassembly keeps it, without its payload.
func chunkOf(e *event.Data) chunk {
	return chunk{seq: e.Seq, off: e.StreamOffset, size: e.Size, skip: e.Skip, sys: e.Syscall, last: e.Last,
		start: e.Start, end: e.End, send: e.Send, recv: e.Recv}
}

// account updates the per-direction counters on arrival. Chunks of one
// syscall share the syscall's start and end, which is how they are counted
// as one syscall.
func (h *half) account(s *Stats, e *event.Data, captured int) {
	h.events++
	s.PayloadBytes += uint64(captured)
	if h.events == 1 || e.Start != h.lastSysStart || e.End != h.lastSysEnd || e.Syscall != h.lastSys {
		h.syscalls++
		h.lastSys, h.lastSysStart, h.lastSysEnd = e.Syscall, e.Start, e.End
	}
	if e.Truncated || captured < int(e.Size) {
		h.truncated++
		s.Truncated++
		why := e.Skip
		if int(why) >= event.NumSkipReasons || why == event.SkipNone {
			why = event.SkipReadFailed // a suffix without a (known) reason is a loss
		}
		n := uint64(e.Size) - uint64(captured)
		h.skipped[why] += n
		s.SkippedBytes[why] += n
	}
	if end := addClamp(e.StreamOffset, e.Size); end > h.hwm {
		h.hwm = end
	}
}

// reassemble delivers an event now if it is the next one, holds it if it is
// early, drops it if its place has passed, then enforces the reorder bounds.
func (t *Table) reassemble(c *Conn, h *half, k *chunk, payload []byte) {
	seq, end := k.seq, k.end
	switch {
	case seq < h.nextSeq:
		t.stats.OutOfWindow++
		t.stats.BytesDropped += uint64(k.size)
		return
	case seq == h.nextSeq:
		t.deliver(c, h, k, payload)
		t.drain(c, h)
	default:
		i := sort.Search(len(h.held), func(i int) bool { return h.held[i].seq >= seq })
		if i < len(h.held) && h.held[i].seq == seq {
			t.stats.Duplicates++
			t.stats.BytesDropped += uint64(k.size)
			return
		}
		t.stats.Reordered++
		buf := t.pool.get(len(payload))
		copy(*buf, payload)
		h.held = append(h.held, chunk{})
		copy(h.held[i+1:], h.held[i:])
		h.held[i] = *k
		h.held[i].buf = buf
		if t.cfg.StreamsCopyMetrics {
			// The decoder reuses the event's metrics (BorrowsMetrics).
			if k.send != nil {
				m := *k.send
				h.held[i].send = &m
			}
			if k.recv != nil {
				m := *k.recv
				h.held[i].recv = &m
			}
		}
		h.heldLen += len(payload)
		t.buffered += len(payload)
		t.pending[c] = struct{}{}
	}
	for len(h.held) > 0 {
		r := t.overBound(h, end)
		if r == flushNone {
			break
		}
		t.flushOne(c, h, r)
	}
	t.updatePending(c)
}

// overBound says which reorder bound, if any, the direction exceeds now that
// an event with end time now arrived.
func (t *Table) overBound(h *half, now event.Timestamp) flushReason {
	switch {
	case len(h.held) > t.cfg.ReorderEvents:
		return flushReorderEvents
	case h.heldLen > t.cfg.ReorderBytes:
		return flushReorderBytes
	case t.buffered > t.cfg.MaxBufferedBytes:
		return flushBufferTotal
	case t.waitedTooLong(h, now):
		return flushTimeout
	}
	return flushNone
}

func (t *Table) waitedTooLong(h *half, now event.Timestamp) bool {
	return len(h.held) > 0 && now > h.held[0].end && uint64(now-h.held[0].end) > uint64(t.cfg.ReorderDelay)
}

// flushOne gives up waiting for the events before the first held one:
// they are declared lost and the held events up to the next hole are
// delivered.
func (t *Table) flushOne(c *Conn, h *half, reason flushReason) {
	t.flushes[reason]++
	first := h.held[0]
	t.stats.LostEvents += first.seq - h.nextSeq
	h.nextSeq = first.seq
	t.drain(c, h)
}

// drain delivers held events while the first one is the next expected.
func (t *Table) drain(c *Conn, h *half) {
	n := 0
	for n < len(h.held) && h.held[n].seq == h.nextSeq {
		k := &h.held[n]
		t.deliver(c, h, k, *k.buf)
		h.heldLen -= len(*k.buf)
		t.buffered -= len(*k.buf)
		t.pool.put(k.buf)
		*k = chunk{}
		n++
	}
	if n > 0 {
		rest := copy(h.held, h.held[n:])
		clear(h.held[rest:])
		h.held = h.held[:rest]
	}
}

func (t *Table) updatePending(c *Conn) {
	for d := range c.dirs {
		if len(c.dirs[d].held) > 0 {
			return
		}
	}
	delete(t.pending, c)
}

// deliver hands one in-sequence event to the stream as a Segment. The
// stream offsets are the authority on bytes: a hole before the event is its
// Gap, bytes already delivered are trimmed, and the part of the event that
// was not captured is its Suffix, so the Segments always add up to the
// offset. An event whose bytes were all delivered before still goes, with
// none: its syscall's facts (Last, metrics) are news.
func (t *Table) deliver(c *Conn, h *half, k *chunk, payload []byte) {
	h.nextSeq = k.seq + 1
	stream := c.stream
	if h.plain {
		stream = plaintextOf(stream)
	}
	off := k.off
	evEnd := addClamp(off, k.size)
	if uint64(len(payload)) > evEnd-off {
		payload = payload[:evEnd-off] // only when evEnd was clamped
	}
	// Field by field: a composite literal stored through the pointer
	// costs a copy of the whole Segment per event.
	s := &t.seg
	s.Dir, s.Syscall, s.Start, s.End, s.Offset, s.Size = h.dir, k.sys, k.start, k.end, off, evEnd-off
	s.PrevEnd, s.Why, s.Last, s.Send, s.Recv = h.lastEnd, k.skip, k.last, k.send, k.recv
	s.Gap, s.Payload, s.Suffix, s.Tail = 0, nil, 0, false
	if off > h.nextOff {
		gap := off - h.nextOff
		t.countGap(h, gap)
		s.Gap = gap
		h.nextOff = off
	}
	if evEnd <= h.nextOff {
		if k.size > 0 {
			t.stats.Overlaps++
			t.stats.BytesDropped += uint64(k.size)
		}
	} else {
		trim := h.nextOff - off // < size, so it fits an int
		if trim < uint64(len(payload)) {
			s.Payload = payload[trim:]
		}
		capEnd := max(off+uint64(len(payload)), h.nextOff)
		if evEnd > capEnd {
			s.Suffix = evEnd - capEnd
		}
		h.nextOff = evEnd
	}
	h.lastEnd = k.end
	stream.Segment(s)
	s.Payload, s.Send, s.Recv = nil, nil, nil // nothing kept past the call
}

// tailGap declares what the kernel counted in h's direction up to the
// connection's close (end, from the close event) beyond what events
// delivered: events lost at the end of a stream have no later event to
// show their gap (see Segment.Tail). Both tiers count end as the events'
// own stream offsets do (the connection state's byte counter), so the
// difference is exactly the bytes of the lost events.
func (t *Table) tailGap(c *Conn, h *half, end uint64, at event.Timestamp) {
	if end <= h.nextOff {
		return
	}
	gap := end - h.nextOff
	t.countGap(h, gap)
	t.stats.TailGaps++
	s := &t.seg
	s.Dir, s.Syscall, s.Start, s.End, s.Offset, s.Size = h.dir, event.SysUnknown, at, at, end, 0
	s.PrevEnd, s.Why, s.Last, s.Send, s.Recv = h.lastEnd, event.SkipNone, false, nil, nil
	s.Gap, s.Payload, s.Suffix, s.Tail = gap, nil, 0, true
	h.nextOff = end
	c.stream.Segment(s)
	s.Tail = false
}

// countGap counts a gap of n bytes declared in h's direction, for the
// connection and the table.
func (t *Table) countGap(h *half, n uint64) {
	h.gaps++
	h.gapBytes += n
	t.stats.Gaps++
	t.stats.GapBytes += n
}

// addClamp returns off+size, saturating instead of wrapping on input whose
// offsets run off the end of a 64-bit stream.
func addClamp(off uint64, size uint32) uint64 {
	if off > math.MaxUint64-uint64(size) {
		return math.MaxUint64
	}
	return off + uint64(size)
}
