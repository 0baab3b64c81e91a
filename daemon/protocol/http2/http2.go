// Package http2 turns the two byte streams of an HTTP/2 connection (h2c by
// prior knowledge or after an HTTP/1.1 Upgrade) into one record per stream,
// with gRPC status from trailers.
//
// Frames are parsed in place from the captured chunks; only the part of a
// frame the parser needs (header block fragments, SETTINGS, the first bytes of
// RST_STREAM and GOAWAY) is buffered when a frame spans chunks, and DATA
// payloads are only counted, so a body beyond the capture limit costs
// nothing. Each direction has its own HPACK decoder fed every header block in
// wire order, because a single skipped block corrupts every later one.
//
// The parser never misattributes: a stream's record is emitted only when its
// method, path, status and grpc-status are certain, and dropped (counted in
// Stats.HTTP2Dropped) otherwise. Certainty follows these rules:
//
//   - Frame boundaries are known from the preface (or the h2c upgrade) for
//     as long as every frame header is seen. Bytes skipped inside a DATA
//     payload are harmless. A gap where a frame header was (or a parser
//     started mid-stream) makes the direction hunt for a plausible frame
//     boundary. From then on no record of the connection is certain: while
//     hunting, frames of open and new streams go by unseen, and a boundary
//     found by PlausibleFrames is a guess (garbage taken for frames could
//     open, end or reset streams). Streams finished before are reported.
//   - A direction's HPACK state is known good from the connection start
//     until a header block is not decoded in full (a gap inside it, a
//     decoding error, a table larger than Limits.MaxHPACKTable). Then the
//     decoder forgets its table: the entries inserted from then on are the
//     encoder's newest, in order, so they keep resolving exactly, and a
//     reference beyond them is unknown. A block with an unknown field makes
//     its stream uncertain; a block that resolves in full is exact even
//     while the state is lost. The state is known good again after a
//     dynamic table size update to 0 (the encoder emptied its table, so
//     nothing older can be referenced).
//   - A stream is uncertain when one of its header blocks was lost or not
//     resolved in full, or when its request was never seen. grpc-status is taken only from the
//     blocks of the stream that carried it.
package http2

import (
	"encoding/binary"
	"slices"
	"strconv"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/record"
	"github.com/weirnet/weir/daemon/protocol/tracectx"
)

// Side is a direction of the connection: the client sends requests.
type Side uint8

const (
	Client Side = iota
	Server
)

// Preface is the client connection preface (RFC 9113 §3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Frame types (RFC 9113 §6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9
)

// Flags.
const (
	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

const (
	frameHeaderLen = 9
	// maxUnknownFields bounds Record.UnknownFields.
	maxUnknownFields = 16
	// maxGRPCMessage bounds the grpc-message kept per record.
	maxGRPCMessage = 256
	// maxPlausibleFrame bounds the frame length accepted while
	// re-synchronising (16 MiB is the protocol maximum; real peers stay far
	// below 1 MiB).
	maxPlausibleFrame = 1 << 20
)

type state uint8

const (
	stPreface state = iota
	stHeader
	stPayload
	stLost
	stOpaque
)

// Parser parses one HTTP/2 connection. It is not safe for concurrent use.
type Parser struct {
	lim   record.Limits
	stats *record.Stats
	sink  func(*record.Record)

	dirs    [2]dir
	streams map[uint32]*stream
	// lastClient is the highest client-initiated stream opened so far; a
	// HEADERS on a lower id belongs to a stream already finished.
	lastClient uint32
	dead       bool
	// framingLost: a direction lost its frame boundaries (and hunted or
	// guessed them since); no record is certain any more.
	framingLost bool

	// field callback context
	emit    fieldFunc
	fStream *stream
	// reuse says the sink copies each record (ReuseRecords): spent holds
	// finished streams open may take back once nothing refers to them.
	reuse bool
	spent []*stream
	fSide Side
	fKind blockKind
	trace tracectx.Collector

	// path and host are the last request's :path and :authority (or
	// Host): the streams of a connection mostly repeat them, and reusing
	// the strings saves allocations per stream.
	path, host string
}

type blockKind uint8

const (
	blockRequest blockKind = iota
	blockResponse
	blockTrailers
	blockIgnored
)

type stream struct {
	// rec is &own, except for stream 1 of an upgraded connection, where it
	// is the HTTP/1 parser's record of the upgrade request.
	rec      *record.Record
	own      record.Record
	reqSeen  bool // request headers decoded
	respSeen bool // final response headers decoded
	reqDone  bool
	// respAt: rec.RespOff holds the offset of the response's first frame.
	respAt bool
	// uncertain: a field of the record could be wrong or missing.
	uncertain bool
}

type dir struct {
	side  Side
	st    state
	pre   int // preface bytes matched
	hdr   [frameHeaderLen]byte
	hn    int
	ftype uint8
	flags uint8
	sid   uint32
	flen  uint32
	// got counts payload bytes consumed; want is how many leading payload
	// bytes the parser needs (the rest is counted and dropped).
	got, want uint32
	buf       []byte
	// gap: some wanted payload bytes of the current frame were not captured.
	gap        bool
	frameStart event.Timestamp
	// off is the stream offset of the direction's next byte; frameOff
	// that of the current frame's header.
	off, frameOff uint64

	// Header block being assembled (HEADERS/PUSH_PROMISE + CONTINUATION).
	hb       []byte
	hbOpen   bool
	hbStream uint32 // stream the block's fields go to
	hbSid    uint32 // stream of the HEADERS/PUSH_PROMISE frame
	hbFrame  uint8  // frameHeaders or framePushPromise
	hbEnd    bool   // END_STREAM on the HEADERS frame
	hbBytes  uint64
	hbStart  event.Timestamp
	hbOff    uint64 // stream offset of the block's HEADERS/PUSH_PROMISE frame
	hbLost   bool

	dec *hpackDecoder
}

// New returns a parser for a connection whose client starts with the
// preface (h2c prior knowledge). stats must not be nil; lim must have passed
// Validate.
func New(lim record.Limits, stats *record.Stats, sink func(*record.Record)) *Parser {
	p := &Parser{lim: lim, stats: stats, sink: sink, streams: make(map[uint32]*stream)}
	for s := range p.dirs {
		d := &p.dirs[s]
		d.side = Side(s)
		d.dec = newHPACKDecoder(uint32(lim.MaxHPACKTable))
		d.st = stHeader
	}
	p.dirs[Client].st = stPreface
	p.emit = p.field
	return p
}

// NewUpgraded returns a parser for a connection upgraded from HTTP/1.1 (h2c
// Upgrade): req, the upgrade request already parsed, continues as stream 1
// whose request is complete (RFC 9113 §3.2 of RFC 7540).
func NewUpgraded(lim record.Limits, stats *record.Stats, sink func(*record.Record), req *record.Record) *Parser {
	p := New(lim, stats, sink)
	req.Protocol = record.HTTP2
	req.StreamID = 1
	s := &stream{rec: req, reqSeen: true, reqDone: true}
	p.streams[1] = s
	p.lastClient = 1
	return p
}

// NewMidStream returns a parser for a connection first seen after it
// started: both directions look for a frame boundary and both HPACK decoders
// start with unknown state.
func NewMidStream(lim record.Limits, stats *record.Stats, sink func(*record.Record)) *Parser {
	p := New(lim, stats, sink)
	for s := range p.dirs {
		p.dirs[s].st = stLost
		p.dirs[s].dec.markLost()
	}
	p.framingLost = true
	return p
}

// Opaque reports whether the parser gave up on the connection (a limit was
// hit); the caller then treats it as TCP.
func (p *Parser) Opaque() bool { return p.dead }

// At says the next bytes of side s (Data or Skip) begin at stream offset
// off. The parser counts offsets from 0 by itself; a caller whose parser
// started after the stream did (mid-stream, h2c upgrade) says where it is.
func (p *Parser) At(s Side, off uint64) { p.dirs[s].off = off }

// frameEnd is the stream offset past the current frame.
func (d *dir) frameEnd() uint64 { return d.frameOff + frameHeaderLen + uint64(d.flen) }

// Data feeds captured bytes of one direction.
func (p *Parser) Data(s Side, b []byte, start, end event.Timestamp) {
	d := &p.dirs[s]
	base, total := d.off, len(b)
	d.off += uint64(len(b))
	if p.dead {
		return
	}
	if d.st == stLost {
		if !PlausibleFrames(b) {
			return
		}
		p.stats.HTTP2Resyncs.Add(1)
		d.st, d.hn = stHeader, 0
	}
	for len(b) > 0 && !p.dead {
		switch d.st {
		case stPreface:
			n := min(len(b), len(Preface)-d.pre)
			if string(b[:n]) != Preface[d.pre:d.pre+n] {
				p.stats.ProtocolErrors.Add(1)
				p.loseFraming(d)
				return
			}
			d.pre += n
			b = b[n:]
			if d.pre == len(Preface) {
				d.st = stHeader
			}
		case stHeader:
			if d.hn == 0 {
				d.frameStart = start
				d.frameOff = base + uint64(total-len(b))
				if len(b) >= frameHeaderLen { // fast path: whole header here
					d.beginFrame(b[:frameHeaderLen])
					b = b[frameHeaderLen:]
					if !p.checkFrame(d) {
						return
					}
					if d.flen == 0 {
						p.endFrame(d, nil, end)
					}
					continue
				}
			}
			n := copy(d.hdr[d.hn:], b)
			d.hn += n
			b = b[n:]
			if d.hn == frameHeaderLen {
				d.hn = 0
				d.beginFrame(d.hdr[:])
				if !p.checkFrame(d) {
					return
				}
				if d.flen == 0 {
					p.endFrame(d, nil, end)
				}
			}
		case stPayload:
			rest := d.flen - d.got
			n := uint32(min(uint64(len(b)), uint64(rest)))
			chunk := b[:n]
			b = b[n:]
			if d.ftype == frameData && d.flags&flagPadded != 0 && d.got == 0 {
				d.buf = append(d.buf[:0], chunk[0])
			}
			if d.got < d.want && d.ftype != frameData {
				w := min(d.want-d.got, n)
				if d.got == 0 && w == d.want {
					// The wanted part is all in this chunk: no copy.
					d.got += n
					if d.got == d.flen {
						p.endFrame(d, chunk[:w], end)
						continue
					}
					d.buf = append(d.buf[:0], chunk[:w]...)
					continue
				}
				d.buf = append(d.buf, chunk[:w]...)
			}
			d.got += n
			if d.got == d.flen {
				p.endFrame(d, d.buf, end)
			}
		case stLost, stOpaque:
			return
		}
	}
}

// Skip accounts for n bytes of a direction that were moved but not captured.
func (p *Parser) Skip(s Side, n uint64, start, end event.Timestamp) {
	d := &p.dirs[s]
	d.off += n
	if p.dead || n == 0 {
		return
	}
	for n > 0 {
		switch d.st {
		case stPayload:
			rest := uint64(d.flen - d.got)
			k := min(n, rest)
			if d.ftype == frameData && d.flags&flagPadded != 0 && d.got == 0 {
				d.gap = true // pad length lost: body size is an estimate
			} else if d.got < d.want {
				d.gap = true
			}
			d.got += uint32(k)
			n -= k
			if d.got == d.flen {
				p.endFrame(d, d.buf, end)
			}
		case stLost, stOpaque:
			return
		default: // frame header or preface: framing lost
			p.loseFraming(d)
			return
		}
	}
}

// loseFraming handles a gap where the frame boundaries were: the direction
// waits for a plausible frame boundary, and the HPACK state is lost.
func (p *Parser) loseFraming(d *dir) {
	p.stats.HTTP2FrameLost.Add(1)
	p.framingLost = true
	p.loseHPACK(d)
	d.st, d.hn, d.buf = stLost, 0, d.buf[:0]
	d.hbOpen, d.hb = false, d.hb[:0]
}

func (p *Parser) loseHPACK(d *dir) {
	p.stats.HPACKStateLost.Add(1)
	d.dec.markLost()
	for _, s := range p.streams {
		s.rec.Incomplete = true
	}
}

func (d *dir) beginFrame(h []byte) {
	d.flen = uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
	d.ftype, d.flags = h[3], h[4]
	d.sid = binary.BigEndian.Uint32(h[5:]) & 0x7fffffff
	d.got, d.gap = 0, false
	d.buf = d.buf[:0]
	switch d.ftype {
	case frameHeaders, framePushPromise, frameContinuation, frameSettings:
		d.want = d.flen
	case frameRSTStream:
		d.want = 4
	case frameGoAway:
		d.want = 8
	default:
		d.want = 0
	}
	d.want = min(d.want, d.flen)
	d.st = stPayload
}

// checkFrame applies the bounds before any payload is buffered.
func (p *Parser) checkFrame(d *dir) bool {
	switch d.ftype {
	case frameHeaders, framePushPromise, frameContinuation:
		if int(d.flen)+len(d.hb) > p.lim.MaxHeaderBytes {
			p.stats.HeaderLimit.Add(1)
			p.degrade()
			return false
		}
	case frameSettings:
		if int(d.flen) > p.lim.MaxBuffered {
			p.stats.BufferLimit.Add(1)
			p.degrade()
			return false
		}
	}
	if d.hbOpen && d.ftype != frameContinuation {
		// RFC 9113 §6.10: only CONTINUATION may follow an open block.
		p.stats.ProtocolErrors.Add(1)
		d.hbOpen, d.hb = false, d.hb[:0]
		p.loseHPACK(d)
	}
	return true
}

func (p *Parser) degrade() {
	p.stats.DegradedToTCP.Add(1)
	p.Close(max(p.dirs[0].frameStart, p.dirs[1].frameStart))
	p.dead = true
}

// endFrame processes a frame whose payload has been consumed. payload holds
// the wanted leading bytes (all of them unless d.gap).
func (p *Parser) endFrame(d *dir, payload []byte, end event.Timestamp) {
	d.st = stHeader
	switch d.ftype {
	case frameData:
		s := p.streams[d.sid]
		if s == nil {
			return
		}
		body := uint64(d.flen)
		if d.flags&flagPadded != 0 && body > 0 {
			if len(d.buf) == 1 && !d.gap {
				body -= min(body, 1+uint64(d.buf[0]))
			} else {
				body-- // pad length lost: the padding is counted as body
				s.rec.Incomplete = true
			}
		}
		if d.side == Client {
			s.rec.ReqBodyBytes += body
			s.rec.ReqEnd, s.rec.ReqEndOff = end, d.frameEnd()
			if d.flags&flagEndStream != 0 {
				s.reqDone = true
			}
		} else {
			s.respFrom(d.frameOff)
			s.rec.RespBodyBytes += body
			s.rec.RespEnd, s.rec.RespEndOff = end, d.frameEnd()
			if d.flags&flagEndStream != 0 {
				p.finish(s)
			}
		}
	case frameHeaders, framePushPromise:
		p.headersFrame(d, payload, end)
	case frameContinuation:
		if !d.hbOpen || d.sid != d.hbSid {
			if d.hbOpen || !d.dec.lost {
				p.stats.ProtocolErrors.Add(1)
			}
			return // a fragment of a block whose start was lost
		}
		d.hbBytes += uint64(frameHeaderLen) + uint64(d.flen)
		if d.gap {
			d.hbLost = true
		} else {
			d.hb = append(d.hb, payload...)
		}
		if d.flags&flagEndHeaders != 0 {
			p.block(d, d.hb, end)
		}
	case frameSettings:
		if d.flags&flagAck != 0 || d.gap {
			return
		}
		for i := 0; i+6 <= len(payload); i += 6 {
			if binary.BigEndian.Uint16(payload[i:]) == 0x1 { // HEADER_TABLE_SIZE
				v := binary.BigEndian.Uint32(payload[i+2:])
				if v > uint32(p.lim.MaxHPACKTable) {
					p.stats.HPACKLimit.Add(1)
				}
				// The setting bounds the table of the opposite direction's
				// encoder, i.e. the decoder of frames sent to us.
				p.dirs[1-d.side].dec.setAllowed(v)
			}
		}
	case frameRSTStream:
		s := p.streams[d.sid]
		if s == nil {
			return
		}
		s.rec.Reset = true
		if len(payload) == 4 && !d.gap {
			s.rec.ResetCode = binary.BigEndian.Uint32(payload)
		}
		if d.side == Server {
			s.respFrom(d.frameOff)
			s.rec.RespEnd, s.rec.RespEndOff = end, d.frameEnd()
		} else {
			s.rec.ReqEnd, s.rec.ReqEndOff = end, d.frameEnd()
		}
		p.finish(s)
	case frameGoAway:
		if len(payload) < 8 || d.gap {
			return
		}
		last := binary.BigEndian.Uint32(payload) & 0x7fffffff
		code := binary.BigEndian.Uint32(payload[4:])
		// Streams initiated by the receiver above last were not processed.
		for _, id := range p.sortedStreams() {
			s := p.streams[id]
			initiatedByReceiver := (id%2 == 1) == (d.side == Server)
			if id > last && initiatedByReceiver {
				s.rec.Reset, s.rec.ResetCode = true, code
				p.finish(s)
			}
		}
	}
}

// headersFrame handles HEADERS and PUSH_PROMISE: strips padding, priority
// and promised id, then starts a header block.
func (p *Parser) headersFrame(d *dir, payload []byte, end event.Timestamp) {
	d.hbOpen, d.hb, d.hbLost = true, d.hb[:0], d.gap
	d.hbFrame = d.ftype
	d.hbStream, d.hbSid = d.sid, d.sid
	d.hbEnd = d.ftype == frameHeaders && d.flags&flagEndStream != 0
	d.hbBytes = uint64(frameHeaderLen) + uint64(d.flen)
	d.hbStart, d.hbOff = d.frameStart, d.frameOff
	frag := payload
	if !d.gap {
		pad := 0
		if d.flags&flagPadded != 0 {
			if len(frag) < 1 {
				p.badBlock(d)
				return
			}
			pad = int(frag[0])
			frag = frag[1:]
		}
		if d.ftype == framePushPromise {
			if len(frag) < 4 {
				p.badBlock(d)
				return
			}
			d.hbStream = binary.BigEndian.Uint32(frag) & 0x7fffffff
			frag = frag[4:]
		} else if d.flags&flagPriority != 0 {
			if len(frag) < 5 {
				p.badBlock(d)
				return
			}
			frag = frag[5:]
		}
		if pad > len(frag) {
			p.badBlock(d)
			return
		}
		frag = frag[:len(frag)-pad]
	}
	if d.flags&flagEndHeaders != 0 {
		p.block(d, frag, end)
		return
	}
	d.hb = append(d.hb, frag...)
}

func (p *Parser) badBlock(d *dir) {
	p.stats.ProtocolErrors.Add(1)
	d.hbOpen = false
	p.loseHPACK(d)
}

// block decodes a complete header block and applies it to its stream.
func (p *Parser) block(d *dir, frag []byte, end event.Timestamp) {
	d.hbOpen = false
	s, kind := p.target(d)
	if d.hbLost {
		// Part of the block was not captured: it cannot be decoded and the
		// decoder missed its insertions.
		p.loseHPACK(d)
		if s != nil {
			s.uncertain = true
			s.rec.Incomplete = true
			s.rec.UnknownFields = appendUnknown(s.rec.UnknownFields, "?")
		}
	} else {
		p.fStream, p.fSide, p.fKind = s, d.side, kind
		if kind == blockRequest {
			p.trace.Reset()
		}
		if err := d.dec.decode(frag, p.emit); err != nil {
			p.stats.ProtocolErrors.Add(1)
			p.loseHPACK(d)
			if s != nil {
				s.uncertain = true
				s.rec.Incomplete = true
			}
		}
		if d.dec.overAllowed > 0 {
			p.stats.ProtocolErrors.Add(uint64(d.dec.overAllowed))
			d.dec.overAllowed = 0
		}
		p.fStream = nil
		if kind == blockRequest && s != nil {
			ctx, bad := p.trace.Result()
			if bad > 0 {
				p.stats.TraceMalformed.Add(uint64(bad))
			}
			s.rec.Trace = ctx
		}
	}
	if s == nil {
		return
	}
	switch d.side {
	case Client:
		s.rec.ReqHeaderBytes += d.hbBytes
		s.rec.ReqEnd, s.rec.ReqEndOff = end, d.frameEnd()
		if d.hbFrame == framePushPromise {
			return
		}
		if d.hbEnd {
			s.reqDone = true
		}
	case Server:
		if d.hbFrame == framePushPromise {
			// The promised request: its header bytes are the server's.
			s.rec.ReqHeaderBytes += d.hbBytes
			return
		}
		s.respFrom(d.hbOff)
		s.rec.RespHeaderBytes += d.hbBytes
		s.rec.RespEnd, s.rec.RespEndOff = end, d.frameEnd()
		if kind == blockResponse && s.respSeen {
			s.rec.RespStart = d.hbStart
		}
		if d.hbEnd {
			p.finish(s)
		}
	}
}

// target finds (or opens) the stream a header block belongs to.
func (p *Parser) target(d *dir) (*stream, blockKind) {
	id := d.hbStream
	s := p.streams[id]
	if d.hbFrame == framePushPromise {
		if d.side != Server || s != nil {
			return nil, blockIgnored
		}
		// The promised request's bytes are the server's, not in the
		// request direction: it claims none (ReqEndOff stays 0).
		s = p.open(id, d.hbStart, d.hbOff)
		if s == nil {
			return nil, blockIgnored
		}
		s.reqSeen, s.reqDone = true, true
		return s, blockRequest
	}
	if d.side == Client {
		if s != nil {
			if s.reqSeen {
				return s, blockTrailers
			}
			s.reqSeen = true
			return s, blockRequest
		}
		if id%2 == 0 || id <= p.lastClient {
			return nil, blockIgnored // trailers of a finished stream
		}
		p.lastClient = id
		s = p.open(id, d.hbStart, d.hbOff)
		if s == nil {
			return nil, blockIgnored
		}
		s.reqSeen = true
		return s, blockRequest
	}
	if s == nil {
		if id%2 == 1 && id <= p.lastClient {
			return nil, blockIgnored // response after the stream was reset
		}
		// A response whose request was not seen.
		s = p.open(id, 0, 0)
		if s == nil {
			return nil, blockIgnored
		}
		s.rec.Incomplete = true
		s.uncertain = true
		s.reqDone = true
	}
	if s.respSeen {
		return s, blockTrailers
	}
	return s, blockResponse
}

// respFrom records off as where the stream's response begins, unless an
// earlier frame of it did.
func (s *stream) respFrom(off uint64) {
	if !s.respAt {
		s.respAt = true
		s.rec.RespOff = off
	}
}

// open starts the record of stream id, whose request began at time t and
// stream offset off.
func (p *Parser) open(id uint32, t event.Timestamp, off uint64) *stream {
	if len(p.streams) >= p.lim.MaxStreams {
		p.stats.StreamLimit.Add(1)
		p.degrade()
		return nil
	}
	s := p.reusable()
	if s == nil {
		s = &stream{}
	}
	s.rec = &s.own
	s.rec.Protocol = record.HTTP2
	s.rec.StreamID = id
	s.rec.GRPCStatus = -1
	s.rec.ReqStart, s.rec.ReqOff = t, off
	p.streams[id] = s
	return s
}

// field applies one decoded header field to the stream being decoded.
func (p *Parser) field(name, value []byte, unknown bool) {
	s := p.fStream
	if s == nil {
		return
	}
	r := s.rec
	if name == nil || unknown {
		s.uncertain = true
		r.Incomplete = true
		n := "?"
		if name != nil {
			n = string(name)
		}
		r.UnknownFields = appendUnknown(r.UnknownFields, n)
		return
	}
	switch p.fKind {
	case blockRequest:
		switch string(name) {
		case ":method":
			r.Method = internMethod(value)
		case ":path":
			r.Path = reuse(&p.path, value)
		case ":authority":
			r.Host = reuse(&p.host, value)
		case "host":
			if r.Host == "" {
				r.Host = reuse(&p.host, value)
			}
		case ":scheme":
			switch string(value) {
			case "http":
				r.Scheme = "http"
			case "https":
				r.Scheme = "https"
			default:
				r.Scheme = string(value)
			}
		case "content-type":
			r.GRPC = isGRPC(value)
		default:
			p.trace.Observe(name, value)
		}
	case blockResponse:
		switch string(name) {
		case ":status":
			st, err := strconv.Atoi(string(value))
			if err != nil || st < 100 || st > 999 {
				p.stats.ProtocolErrors.Add(1)
				return
			}
			if st >= 200 {
				s.respSeen = true
			}
			r.Status = st
		case "content-type":
			if isGRPC(value) {
				r.GRPC = true
			}
		case "grpc-status", "grpc-message":
			p.grpcField(r, name, value)
		}
	case blockTrailers:
		if p.fSide == Server {
			p.grpcField(r, name, value)
		}
	}
}

// reuse returns b as a string: the one in *last when they are equal, else
// a new one that replaces it.
func reuse(last *string, b []byte) string {
	if string(b) != *last {
		*last = string(b)
	}
	return *last
}

func (p *Parser) grpcField(r *record.Record, name, value []byte) {
	switch string(name) {
	case "grpc-status":
		if st, err := strconv.Atoi(string(value)); err == nil && st >= 0 {
			r.GRPCStatus = st
		} else {
			p.stats.ProtocolErrors.Add(1)
		}
	case "grpc-message":
		r.GRPCMessage = percentDecode(value, maxGRPCMessage)
	}
}

func isGRPC(v []byte) bool {
	const ct = "application/grpc"
	return len(v) >= len(ct) && string(v[:len(ct)]) == ct && (len(v) == len(ct) || v[len(ct)] == '+' || v[len(ct)] == ';')
}

var methods = [...]string{"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"}

func internMethod(m []byte) string {
	for _, s := range methods {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}

// percentDecode decodes grpc-message's percent-encoding, keeping at most
// limit bytes.
func percentDecode(v []byte, limit int) string {
	out := make([]byte, 0, min(len(v), limit))
	for i := 0; i < len(v) && len(out) < limit; i++ {
		c := v[i]
		if c == '%' && i+2 < len(v) {
			if n, err := strconv.ParseUint(string(v[i+1:i+3]), 16, 8); err == nil {
				out = append(out, byte(n))
				i += 2
				continue
			}
		}
		out = append(out, c)
	}
	return string(out)
}

func appendUnknown(u []string, name string) []string {
	if len(u) >= maxUnknownFields {
		return u
	}
	return append(u, name)
}

// finish emits a stream's record, if it is certain, and forgets the
// stream.
func (p *Parser) finish(s *stream) {
	delete(p.streams, s.rec.StreamID)
	if p.reuse && len(p.spent) < maxSpent && !slices.Contains(p.spent, s) {
		p.spent = append(p.spent, s)
	}
	if s.uncertain || p.framingLost {
		p.stats.HTTP2Dropped.Add(1)
		return
	}
	p.stats.Finish(s.rec, p.sink)
}

// maxSpent bounds the finished streams a parser keeps for reuse.
const maxSpent = 8

// ReuseRecords tells the parser that its sink copies each record before it
// returns and keeps no pointer into it, so a finished stream's memory may
// be reused for a later stream.
func (p *Parser) ReuseRecords() { p.reuse = true }

// reusable takes from spent a finished stream nothing refers to any more
// (not open again under its id, not the stream whose header block is
// being decoded), cleared; nil when there is none.
func (p *Parser) reusable() *stream {
	for i, s := range p.spent {
		if s == p.fStream || p.streams[s.own.StreamID] == s {
			continue
		}
		last := len(p.spent) - 1
		p.spent[i] = p.spent[last]
		p.spent[last] = nil
		p.spent = p.spent[:last]
		*s = stream{}
		return s
	}
	return nil
}

func (p *Parser) sortedStreams() []uint32 {
	ids := make([]uint32, 0, len(p.streams))
	for id := range p.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Close ends the connection: every stream still open is emitted as
// incomplete, in stream order.
func (p *Parser) Close(t event.Timestamp) {
	if p.dead {
		return
	}
	for _, id := range p.sortedStreams() {
		s := p.streams[id]
		s.rec.Incomplete = true
		p.finish(s)
	}
	p.dead = true
}

// PlausibleFrames reports whether b starts on a frame boundary, judged by
// the frame headers it contains: valid types and lengths, stream ids where
// the type requires them, chaining to the end of b or over at least two
// frames. Used only to resynchronise after framing was lost.
func PlausibleFrames(b []byte) bool {
	n := 0
	for len(b) >= frameHeaderLen {
		l := uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
		t := b[3]
		sid := binary.BigEndian.Uint32(b[5:])
		if sid&0x80000000 != 0 || t > frameContinuation || l > maxPlausibleFrame {
			return false
		}
		switch t {
		case frameData, frameHeaders, framePriority, frameRSTStream, framePushPromise, frameContinuation:
			if sid == 0 {
				return false
			}
		case frameSettings, framePing, frameGoAway:
			if sid != 0 {
				return false
			}
		}
		switch {
		case t == frameSettings && l%6 != 0, t == framePing && l != 8,
			t == frameRSTStream && l != 4, t == framePriority && l != 5, t == frameWindowUpdate && l != 4:
			return false
		}
		n++
		if uint64(len(b)) < frameHeaderLen+uint64(l) {
			return n >= 2
		}
		b = b[frameHeaderLen+l:]
	}
	return (n >= 1 && len(b) == 0) || n >= 2
}
