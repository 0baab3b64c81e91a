// Package walker is the pure-Go twin of the kernel side's capture walk
// (report_data and walk_step in ../c/capture.bpf.c): given the bytes one
// syscall moved, split into the segments the process passed, it makes the
// same decisions the kernel makes — which runs are copied, which are
// skipped and why, how they are cut into data events — and keeps the same
// per-connection state between syscalls, including the HTTP/2 frame
// walker's position.
//
// It exists so that what the kernel does can be tested where the kernel
// cannot go: fuzz targets feed it byte streams split at random points and
// check that the protocol parsers decode the same records from the reduced
// stream as from the whole one, and the eBPF tests check that the kernel's
// events are exactly the ones this package predicts. It lives next to the
// C it mirrors, without importing cilium/ebpf, so that any package can use
// it; a change to one side that is not made to the other fails those tests.
package walker

import (
	"bytes"

	"github.com/weirnet/weir/bpf/event"
)

// Compile-time bounds of the kernel side (c/capture.h).
const (
	MaxChunks    = 32   // events per syscall
	MaxIOVecs    = 16   // iovec segments walked per syscall
	MaxWalkSteps = 4096 // runs walked per syscall
	MaxChunkSize = 16384
	// SmallData is H2_SMALL_DATA: DATA payloads up to this size are
	// copied even past the budget, cheaper than splitting the event.
	SmallData = 256
)

// Config mirrors the kernel side's load-time knobs.
type Config struct {
	ChunkSize    uint32 // 1..MaxChunkSize
	CaptureLimit uint64 // 0: unlimited
	MaxFrameCopy uint32
	NoPayload    bool
}

// Hint mirrors an entry of the h1_hints map: the connection is HTTP/1 and
// [BodyFrom[d], BodyTo[d]) of direction d is a body user space skips.
type Hint struct {
	BodyFrom, BodyTo [2]uint64
}

// Mode is the walker's view of a direction's protocol.
type Mode uint8

const (
	Undecided Mode = iota // no byte walked yet
	H2                    // HTTP/2 frames are followed
	Opaque                // not HTTP/2, or frames stopped making sense
)

// walkState mirrors struct walk_state.
type walkState struct {
	copyLeft, skipLeft uint64
	mode               Mode
	hdrHave            uint8
	skipReason         event.SkipReason
	hdr                [9]byte
}

// Dir mirrors one direction of struct conn_state.
type Dir struct {
	Seq, Bytes, Captured uint64
	w                    walkState
}

// Mode is the direction's walker mode.
func (d *Dir) Mode() Mode { return d.w.mode }

// Counts are the kernel counters the walk increments, by their names in
// bpf.Counters.
type Counts struct {
	CaptureLimit, ChunkTruncated, IOVLimit, ReadUserFailed, MmsgPayload uint64
	H2FrameLimit, H2Desync                                              uint64
}

// Conn is one connection's capture state.
type Conn struct {
	Cfg    Config
	Dirs   [2]Dir
	Hint   *Hint // nil: not hinted
	Counts Counts
}

// Event is one data event as the kernel would emit it.
type Event struct {
	Seq     uint64
	Offset  uint64
	Size    uint32
	Payload []byte // copied prefix; Size - len(Payload) bytes skipped for Skip
	Skip    event.SkipReason
	Last    bool
}

// loop mirrors struct chunk_loop.
type loop struct {
	segs                  [][]byte
	vectored              bool
	cur                   []byte // current segment, from base
	segLeft, left         uint64
	budget                uint64
	seq, offset, captured uint64
	pos                   uint64
	bodyFrom, bodyTo      uint64
	iovIdx, iovCnt        int
	stop                  event.SkipReason
	events                int
	cover                 uint64
	fill                  []byte
	skip                  event.SkipReason
	h1, tail, budgetHit   bool
	w                     walkState
	out                   []Event
	counts                *Counts
	chunk                 uint64
	maxFrameCopy          uint64
}

func (l *loop) emit(last bool) {
	e := Event{Seq: l.seq, Offset: l.offset, Size: uint32(l.cover), Payload: bytes.Clone(l.fill), Last: last}
	if uint64(len(l.fill)) < l.cover {
		e.Skip = l.skip
		if e.Skip == event.SkipNone {
			e.Skip = event.SkipReadFailed
		}
	}
	l.seq++
	l.offset += l.cover
	l.captured += uint64(len(l.fill))
	l.events++
	l.cover, l.fill, l.skip = 0, l.fill[:0:0], event.SkipNone
	l.out = append(l.out, e)
}

func (l *loop) desync() {
	if l.w.mode == H2 {
		l.counts.H2Desync++
	}
	l.w.mode, l.w.copyLeft, l.w.skipLeft, l.w.hdrHave = Opaque, 0, 0, 0
}

// FramePlausible mirrors frame_plausible: checks that catch a walker out of
// step, never frames a peer may send (RFC 9113 section 6).
func FramePlausible(length uint32, typ uint8, sid uint32) bool {
	switch typ {
	case 0x0, 0x1, 0x9:
		return sid != 0
	case 0x2:
		return sid != 0 && length == 5
	case 0x3:
		return sid != 0 && length == 4
	case 0x4:
		return sid == 0 && length%6 == 0
	case 0x5:
		return sid != 0 && length >= 4
	case 0x6:
		return sid == 0 && length == 8
	case 0x7:
		return sid == 0 && length >= 8
	case 0x8:
		return length == 4
	}
	return true
}

func (l *loop) frameBegin() {
	w := &l.w
	length := uint32(w.hdr[0])<<16 | uint32(w.hdr[1])<<8 | uint32(w.hdr[2])
	typ, flags := w.hdr[3], w.hdr[4]
	sid := (uint32(w.hdr[5])<<24 | uint32(w.hdr[6])<<16 | uint32(w.hdr[7])<<8 | uint32(w.hdr[8])) & 0x7fffffff
	if !FramePlausible(length, typ, sid) {
		l.desync()
		return
	}
	w.skipLeft, w.skipReason = 0, event.SkipNone
	switch {
	case typ == 0x0 && length > SmallData && uint64(length) > l.budget:
		w.copyLeft = 0
		if flags&0x8 != 0 {
			w.copyLeft = 1
		}
		w.skipLeft = uint64(length) - w.copyLeft
		w.skipReason = event.SkipH2Data
	case typ != 0x0 && uint64(length) > l.maxFrameCopy:
		w.copyLeft, w.skipLeft, w.skipReason = 0, uint64(length), event.SkipFrameLimit
		l.counts.H2FrameLimit++
	default:
		w.copyLeft = uint64(length)
	}
	l.budget -= min(l.budget, w.copyLeft)
	w.hdrHave = 0
	if length != 0 {
		w.hdrHave = 9
	}
}

// step mirrors walk_run (one step of the walk); false ends the walk.
func (l *loop) step() bool {
	w := &l.w
	if l.left == 0 {
		return false
	}
	if l.segLeft == 0 {
		if !l.vectored || l.iovIdx >= l.iovCnt {
			l.stop = event.SkipIOVLimit
			return false
		}
		l.cur = l.segs[l.iovIdx]
		l.iovIdx++
		l.segLeft = min(uint64(len(l.cur)), l.left)
		if l.segLeft == 0 {
			return true // a zero-length segment uses up a step
		}
		// Else its first run is walked in this same step.
	}
	avail := min(l.segLeft, l.left)
	var n uint64
	skip := event.SkipNone
	hdr := false
	switch {
	case w.mode == H2:
		switch {
		case w.hdrHave < 9:
			n, hdr = min(avail, 9-uint64(w.hdrHave)), true
		case w.copyLeft != 0:
			n = min(avail, w.copyLeft)
		default:
			n, skip = min(avail, w.skipLeft), w.skipReason
		}
	case l.h1:
		switch {
		case l.pos >= l.bodyFrom && l.pos < l.bodyTo:
			n, skip = min(avail, l.bodyTo-l.pos), event.SkipBody
		case l.pos < l.bodyFrom:
			n = min(avail, l.bodyFrom-l.pos)
		default:
			n = avail
		}
	case l.budget != 0:
		n = min(avail, l.budget)
	default:
		n, skip = avail, event.SkipBudget
	}
	if l.tail {
		skip = event.SkipChunkLimit
	}
	if skip == event.SkipNone {
		if l.skip != event.SkipNone || uint64(len(l.fill)) >= l.chunk {
			if l.events+1 >= MaxChunks {
				l.tail = true
				return true
			}
			l.emit(false)
		}
		n = min(n, l.chunk-uint64(len(l.fill)))
		l.fill = append(l.fill, l.cur[:n]...)
		if w.mode != H2 {
			l.budget -= min(l.budget, n)
		}
	} else if l.skip != skip && l.skip != event.SkipNone {
		if l.events+1 >= MaxChunks {
			l.tail = true
			skip = event.SkipChunkLimit
		} else {
			l.emit(false)
		}
	}
	if skip != event.SkipNone {
		l.skip = skip
	}
	if skip == event.SkipBudget {
		l.budgetHit = true
	}
	if hdr {
		copy(w.hdr[w.hdrHave:], l.cur[:n])
	}
	l.cover += n
	l.pos += n
	l.cur = l.cur[n:]
	l.segLeft -= n
	l.left -= n
	if w.mode == H2 {
		switch {
		case hdr:
			w.hdrHave += uint8(n)
			if w.hdrHave == 9 {
				l.frameBegin()
			}
		case w.copyLeft != 0:
			w.copyLeft -= n
		default:
			w.skipLeft -= n
		}
		if w.hdrHave == 9 && w.copyLeft == 0 && w.skipLeft == 0 {
			w.hdrHave = 0
		}
	}
	return true
}

// Preface is the HTTP/2 client connection preface.
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// detect mirrors walk_detect.
func (c *Conn) detect(l *loop, dir event.Direction) {
	l.w.mode = Opaque
	first := l.cur
	if l.vectored {
		if l.iovCnt == 0 {
			return
		}
		first = l.segs[0]
	}
	first = first[:min(uint64(len(first)), l.left, uint64(len(Preface)))]
	if len(first) < 4 {
		return
	}
	b := first
	if len(b) >= 9 && b[3] == 0x4 && b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 0 && b[8] == 0 &&
		(uint32(b[0])<<16|uint32(b[1])<<8|uint32(b[2]))%6 == 0 {
		l.w.mode = H2
		return
	}
	if string(first) != Preface[:len(first)] {
		return
	}
	l.w.mode = H2
	l.w.hdrHave = 9
	l.w.copyLeft = uint64(len(Preface))
	if o := &c.Dirs[dir^1]; o.w.mode == Undecided && o.Bytes == 0 {
		o.w.mode = H2
	}
}

func (l *loop) addSuffix(why event.SkipReason, n uint64) {
	if l.skip != event.SkipNone && l.skip != why {
		if l.events+1 < MaxChunks {
			l.emit(false)
		} else {
			why = event.SkipChunkLimit
		}
	}
	l.skip = why
	l.cover += n
	l.pos += n
}

// Syscall walks one data syscall of direction dir that moved the bytes of
// segs: the iovec segments in order when vectored (readv, writev,
// sendmsg, recvmsg), else one buffer (read, write, sendto, recvfrom). It
// returns the events the kernel emits for it and updates the connection.
func (c *Conn) Syscall(dir event.Direction, segs [][]byte, vectored bool) []Event {
	return c.syscall(dir, segs, vectored, 0, event.SkipNone)
}

// Sendfile walks a sendfile of n bytes: reported size-only.
func (c *Conn) Sendfile(n uint64) []Event {
	return c.syscall(event.Egress, nil, false, n, event.SkipSendfile)
}

func (c *Conn) syscall(dir event.Direction, segs [][]byte, vectored bool, rest uint64, restReason event.SkipReason) []Event {
	dir &= 1
	d := &c.Dirs[dir]
	chunk := uint64(c.Cfg.ChunkSize)
	l := &loop{
		segs: segs, vectored: vectored, counts: &c.Counts, chunk: chunk, maxFrameCopy: uint64(c.Cfg.MaxFrameCopy),
		seq: d.Seq, offset: d.Bytes, pos: d.Bytes, captured: d.Captured, w: d.w, budget: ^uint64(0),
	}
	if lim := c.Cfg.CaptureLimit; lim != 0 {
		l.budget = 0
		if lim > l.captured {
			l.budget = lim - l.captured
		}
	}
	if c.Hint != nil {
		l.h1 = true
		l.bodyFrom, l.bodyTo = c.Hint.BodyFrom[dir], c.Hint.BodyTo[dir]
	} else if c.Cfg.CaptureLimit != 0 && l.w.mode != H2 && l.budget < chunk {
		l.budget = chunk
	}
	if restReason != event.SkipSendfile {
		for _, s := range segs {
			l.left += uint64(len(s))
		}
		if vectored {
			l.iovCnt = min(len(segs), MaxIOVecs)
		} else if len(segs) > 0 {
			l.cur = segs[0]
			l.segLeft = l.left
		}
	}
	if c.Cfg.NoPayload {
		rest += l.left
		l.left = 0
		restReason = event.SkipNoPayload
	}
	if l.w.mode == Undecided && l.left != 0 {
		if l.offset == 0 && c.Hint == nil {
			c.detect(l, dir)
		} else {
			l.w.mode = Opaque
		}
	}
	for i := 0; i < MaxWalkSteps && l.step(); i++ {
	}
	if l.left != 0 {
		why := l.stop
		if why == event.SkipNone {
			why = event.SkipChunkLimit
		}
		switch why {
		case event.SkipIOVLimit:
			c.Counts.IOVLimit++
		case event.SkipReadFailed:
			c.Counts.ReadUserFailed++
		default:
			c.Counts.ChunkTruncated++
		}
		l.desync()
		l.addSuffix(why, l.left)
		l.left = 0
	}
	if l.tail {
		c.Counts.ChunkTruncated++
	}
	if l.budgetHit {
		c.Counts.CaptureLimit++
	}
	if rest != 0 {
		if l.w.mode == H2 {
			l.desync()
		}
		l.addSuffix(restReason, rest)
	}
	if l.cover != 0 {
		l.emit(true)
	}
	d.Seq, d.Bytes, d.Captured, d.w = l.seq, l.offset, l.captured, l.w
	return l.out
}
