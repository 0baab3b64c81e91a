// Package http1 turns the two byte streams of an HTTP/1.0 or HTTP/1.1
// connection into one record per request/response exchange.
//
// It works on captured bytes, not on a socket: bytes arrive per direction in
// order, possibly split anywhere or with gaps whose size is known (Skip). The
// parser therefore never blocks, keeps only what it cannot parse yet (a
// partial header section or chunk-size line, bounded), and counts bodies from
// the message framing without looking at them, so a body larger than the
// capture limit still yields exact sizes.
//
// The parser never invents a message. A direction parses only from a
// position it can prove is a message start: offset 0 of a connection whose
// start was seen (New), or the end of a message whose length it knew. A
// direction that lost its place (a parser started mid-stream with
// NewMidStream, bytes lost where framing was needed, a malformed head)
// hunts, and accepts a new start only by turn-taking:
//
//   - a request: a chunk that starts a syscall of the request direction
//     after the response direction moved bytes since the request
//     direction's last ones (the client speaks after the server answered);
//   - a response: a chunk that starts a syscall of the response direction
//     which began after a complete request ended, the response direction
//     having moved nothing since that request ended. This is judged by the
//     syscalls' times, not by the order events were delivered in (the
//     capture layer may hold one direction back); requests ended at the
//     same time (pipelined) make it ambiguous and refused.
//
// The candidate must then parse as a whole head; anything else is
// discarded and counted (Stats.HTTP1Discarded). Text that looks like a
// request inside a body never satisfies the turn rule while the peer is
// silent, so it never becomes a record. The rule trusts that a peer that
// answered is not still sending the previous message (true of every client
// that does not pipeline); a pipelining client is simply not resynchronised.
package http1

import (
	"bytes"
	"slices"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/record"
	"github.com/weirnet/weir/daemon/protocol/tracectx"
)

// Side is a direction of the connection in HTTP terms.
type Side uint8

const (
	Request  Side = iota // client to server
	Response             // server to client
)

// Switch tells the caller that a direction leaves HTTP/1.
type Switch uint8

const (
	Stay    Switch = iota
	ToHTTP2        // h2c: the rest of the direction is HTTP/2
	ToTCP          // the rest of the connection is opaque (WebSocket, CONNECT, limit hit)
)

// Parser parses one HTTP/1 connection. It is not safe for concurrent use.
type Parser struct {
	lim   record.Limits
	stats *record.Stats
	sink  func(*record.Record)

	dirs [2]dir
	// pending holds exchanges whose response has not completed, oldest
	// first (pipelining). Bounded by Limits.MaxPending.
	pending []*exchange
	// h2c is the exchange whose request asked for an h2c upgrade; it becomes
	// stream 1 of the HTTP/2 connection.
	h2c  *exchange
	dead bool
	// hint, when set, receives each body range [from,to) of at least
	// hintMin bytes that the parser will count by length only.
	hint    func(s Side, from, to uint64, chunked bool)
	hintMin uint64
	// path and host are the last request's target and Host: a client
	// mostly repeats them on a keep-alive connection, and reusing the
	// strings saves two allocations per request.
	path, host string
	// made counts the exchanges made; block holds those not handed out
	// yet of the block allocated last (see newExchange).
	made  int
	block []exchange
	// reuse says the sink copies each record (ReuseRecords): spent holds
	// emitted exchanges newExchange may take back once nothing of the
	// parser refers to them any more.
	reuse bool
	spent []*exchange
}

// maxSpent bounds the emitted exchanges a parser keeps for reuse: a
// keep-alive connection needs one or two; pipelining may emit a few at
// once.
const maxSpent = 4

// ReuseRecords tells the parser that its sink copies each record before it
// returns and keeps no pointer into it, so the memory of an emitted
// exchange may be reused for a later one.
func (p *Parser) ReuseRecords() { p.reuse = true }

// exchangesPerBlock is how many exchanges a keep-alive connection's
// parser allocates at once: its records are handed to the sink and not
// kept, so one allocation per block rather than per request spares most
// of the parser's. A consumer that keeps a record keeps its block.
const exchangesPerBlock = 4

// newExchange returns a zero exchange. A connection's first two come
// alone: most connections that make one request make no more, and a block
// would hold three unused exchanges (about 1 KiB) for each of them.
func (p *Parser) newExchange() *exchange {
	if x := p.reusable(); x != nil {
		*x = exchange{}
		return x
	}
	p.made++
	if p.made <= 2 {
		return &exchange{}
	}
	if len(p.block) == 0 {
		p.block = make([]exchange, exchangesPerBlock)
	}
	x := &p.block[0]
	p.block = p.block[1:]
	return x
}

type exchange struct {
	rec      record.Record
	head     bool // HEAD: response has no body
	connect  bool // CONNECT: 2xx turns the connection into a tunnel
	upgrade  uint8
	reqDone  bool
	respDone bool
	handed   bool // taken over by the HTTP/2 parser
	emitted  bool
}

const (
	upNone uint8 = iota
	upH2C
	upOther
)

type state uint8

const (
	stStart state = iota
	stHeader
	stBody
	stChunkLine
	stChunkData
	stTrailer
	stUntilClose
	stAfterUpgrade // request side: waiting to see whether the upgrade happened
	stResync
	stOpaque
)

type dir struct {
	side      Side
	st        state
	buf       []byte // partial header section / chunk line / trailers
	scan      int    // bytes of buf already searched for the section end
	remaining uint64
	cur       *exchange
	lost      bool // bytes of the current message were lost
	msgStart  event.Timestamp
	msgOff    uint64 // stream offset of the current message's first byte
	lastEnd   event.Timestamp
	trace     tracectx.Collector

	// Position and turn-taking (see the package comment).
	cur0 Cursor
	// candidate: the head being parsed was accepted by turn-taking, not
	// proven by framing; if it fails to parse it is discarded.
	candidate bool
	// msgTurn: the message being parsed started a chunk taken as a turn.
	msgTurn bool
}

// Cursor is where a direction stands: its stream offset (bytes of Data and
// Skip so far) and what turn-taking needs to know about its last bytes.
type Cursor struct {
	Off uint64
	// Turn: the other direction moved bytes since this direction's last.
	Turn bool
	// Seen: this direction moved bytes before; LastStart is the start
	// time of the syscall that moved the last ones.
	Seen      bool
	LastStart event.Timestamp
}

// Advance moves the cursor over n bytes of a syscall that started at
// start, and returns whether they begin a syscall after the other
// direction took its turn.
func (c *Cursor) Advance(other *Cursor, n uint64, start event.Timestamp) (turn bool) {
	turn = c.Turn && (!c.Seen || start != c.LastStart)
	c.Off += n
	c.Turn, c.Seen, c.LastStart = false, true, start
	other.Turn = true
	return turn
}

// New returns a parser that hands each finished exchange to sink. stats must
// not be nil; lim must have passed Validate.
func New(lim record.Limits, stats *record.Stats, sink func(*record.Record)) *Parser {
	p := &Parser{lim: lim, stats: stats, sink: sink}
	p.dirs[Request].side = Request
	p.dirs[Response].side = Response
	return p
}

// NewMidStream returns a parser for a connection whose start was not seen
// (or whose framing is unknown): both directions hunt for a provable
// message start. cur is where each direction (indexed by Side) stands.
func NewMidStream(lim record.Limits, stats *record.Stats, sink func(*record.Record), cur [2]Cursor) *Parser {
	p := New(lim, stats, sink)
	for i := range p.dirs {
		p.dirs[i].st = stResync
		p.dirs[i].cur0 = cur[i]
	}
	return p
}

// SetBodyHint makes the parser report each body (content-length body or
// chunk of a chunked body, chunked set) of at least min bytes as the
// stream-offset range [from,to) it will count by length only, so that the
// capture layer may send those bytes size-only. Only bodies of a direction
// in sync are reported.
func (p *Parser) SetBodyHint(min uint64, fn func(s Side, from, to uint64, chunked bool)) {
	p.hint, p.hintMin = fn, max(min, 1)
}

// Offset returns the stream offset direction s reached.
func (p *Parser) Offset(s Side) uint64 { return p.dirs[s].cur0.Off }

// Opaque reports whether the connection stopped being HTTP/1 in both
// directions (tunnel, WebSocket, or a limit was hit).
func (p *Parser) Opaque() bool { return p.dead }

// H2CRequest returns the record of the request that upgraded the connection
// to h2c, for the HTTP/2 parser to continue as stream 1. The HTTP/1 parser
// no longer emits it.
func (p *Parser) H2CRequest() *record.Record {
	if p.h2c == nil {
		return nil
	}
	p.h2c.handed = true
	return &p.h2c.rec
}

// Data feeds captured bytes of one direction. When the direction leaves
// HTTP/1 it returns the switch, the bytes the parser had buffered that belong
// to the new protocol (carry, valid until the next call) and the offset in b
// where the new protocol continues.
func (p *Parser) Data(s Side, b []byte, start, end event.Timestamp) (sw Switch, carry []byte, n int) {
	d := &p.dirs[s]
	if p.dead {
		return ToTCP, nil, 0
	}
	prevEnd := d.lastEnd
	d.lastEnd = end
	total := len(b)
	base := d.cur0.Off
	turn := d.cur0.Advance(&p.dirs[1-s].cur0, uint64(len(b)), start)
	for len(b) > 0 {
		switch d.st {
		case stStart:
			if b[0] == '\r' || b[0] == '\n' { // stray CRLF between messages
				b = b[1:]
				continue
			}
			d.msgStart = start
			d.msgOff = base + uint64(total-len(b))
			d.msgTurn = turn && len(b) == total
			d.st = stHeader
		case stHeader:
			used, sw, carry := p.header(d, b, start, end)
			if sw != Stay {
				return sw, carry, total - len(b) + used
			}
			if used < 0 {
				return p.degrade(), nil, total
			}
			b = b[used:]
			if d.st == stBody {
				p.hintBody(d, base+uint64(total-len(b)), d.remaining, false)
			}
		case stBody, stChunkData:
			k := uint64(len(b))
			if k > d.remaining {
				k = d.remaining
			}
			d.remaining -= k
			b = b[k:]
			p.countBody(d, k)
			if d.remaining == 0 {
				if d.st == stChunkData {
					d.st = stChunkLine
				} else {
					p.done(d, end)
				}
			}
		case stChunkLine:
			used, ok := p.chunkLine(d, b)
			if !ok {
				return p.degrade(), nil, total
			}
			b = b[used:]
			if d.st == stChunkData && d.remaining > 2 {
				p.hintBody(d, base+uint64(total-len(b)), d.remaining-2, true)
			}
		case stTrailer:
			used, ok := p.trailer(d, b, end)
			if !ok {
				return p.degrade(), nil, total
			}
			b = b[used:]
		case stUntilClose:
			p.countBody(d, uint64(len(b)))
			return Stay, nil, total
		case stAfterUpgrade:
			if p.h2c != nil {
				if m := matchPrefix(b, "PRI * HTTP/2.0\r\n"); m == Yes || m == More {
					return ToHTTP2, nil, total - len(b)
				}
			}
			if LooksLikeRequest(b) == No {
				// The peer is already talking the upgraded protocol.
				d.st = stOpaque
				continue
			}
			d.st = stStart
		case stResync:
			if len(b) != total || !p.candidate(d, b, turn, start, prevEnd) {
				p.stats.HTTP1UnsyncedBytes.Add(uint64(len(b)))
				return Stay, nil, total
			}
			p.stats.HTTP1Resyncs.Add(1)
			d.candidate = true
			d.st = stStart
		case stOpaque:
			return Stay, nil, total
		}
	}
	return Stay, nil, total
}

// Skip accounts for n bytes of a direction that were moved but not captured.
func (p *Parser) Skip(s Side, n uint64, start, end event.Timestamp) {
	d := &p.dirs[s]
	if p.dead || n == 0 {
		return
	}
	d.lastEnd = end
	d.cur0.Advance(&p.dirs[1-s].cur0, n, start)
	switch d.st {
	case stBody, stChunkData:
		k := min(n, d.remaining)
		d.remaining -= k
		p.countBody(d, k)
		n -= k
		if d.remaining == 0 {
			if d.st == stChunkData {
				d.st = stChunkLine
			} else {
				p.done(d, end)
			}
		}
		if n > 0 {
			p.lose(d, end)
		}
	case stUntilClose:
		p.countBody(d, n)
	case stResync:
		p.stats.HTTP1UnsyncedBytes.Add(n)
	case stOpaque:
	default:
		p.lose(d, end)
	}
}

// candidate decides whether a chunk b of a direction that lost its place
// may be parsed as a message start (see the package comment); turn says it
// starts a syscall after the other direction moved (in delivery order),
// start is when its syscall started and prevEnd when the direction's
// previous bytes were moved. Look-alikes refused are counted as discarded.
func (p *Parser) candidate(d *dir, b []byte, turn bool, start, prevEnd event.Timestamp) bool {
	var m Match
	if d.side == Request {
		m = LooksLikeRequest(b)
	} else {
		m = LooksLikeResponse(b)
	}
	if m == No {
		return false
	}
	ok := turn
	if d.side == Response {
		ok = p.answers(start, prevEnd)
	}
	if !ok {
		p.stats.HTTP1Discarded.Add(1)
	}
	return ok
}

// answers finds the request a response starting a syscall at start
// answers, by the syscalls' times rather than the order events were
// delivered in (the capture layer may hold one direction back while it
// waits for a lost event): the latest complete request that ended before
// the response's syscall started, provided the response direction moved
// nothing since that request ended (prevEnd) and no other request ended
// at the same time (requests written together, pipelined: which one is
// answered is not known). Older requests waiting are ended as requests
// whose response went by unseen, and the one answered becomes the
// first.
func (p *Parser) answers(start, prevEnd event.Timestamp) bool {
	i := -1
	for k, x := range p.pending {
		if x.reqDone && !x.respDone && x.rec.ReqEnd <= start {
			i = k
		}
	}
	if i < 0 {
		return false
	}
	x := p.pending[i]
	if prevEnd > x.rec.ReqEnd || i > 0 && p.pending[i-1].rec.ReqEnd == x.rec.ReqEnd {
		return false
	}
	if i > 0 {
		for _, y := range p.pending[:i] {
			p.stats.HTTP1LostResponses.Add(1)
			y.rec.Incomplete = true
			y.reqDone, y.respDone = true, true
			p.emit(y)
		}
		n := copy(p.pending, p.pending[i:])
		clear(p.pending[n:])
		p.pending = p.pending[:n]
	}
	return true
}

// hintBody reports n body bytes from stream offset from, when worth it.
func (p *Parser) hintBody(d *dir, from, n uint64, chunked bool) {
	if p.hint != nil && n >= p.hintMin {
		p.hint(d.side, from, from+n, chunked)
	}
}

// lose handles bytes lost where framing was needed: the current message ends
// here, incomplete, and the direction waits for the next plausible start line.
func (p *Parser) lose(d *dir, end event.Timestamp) {
	switch d.st {
	case stHeader:
		if d.candidate {
			// Not proven to be a start: nothing of it is reported.
			p.stats.HTTP1Discarded.Add(1)
			d.candidate = false
			break
		}
		// A message had started; salvage its start line if it is buffered.
		x := p.begin(d)
		if x == nil {
			d.buf = d.buf[:0]
			break
		}
		if i := bytes.IndexByte(d.buf, '\n'); i > 0 {
			p.startLine(d, x, trimCR(d.buf[:i]))
		}
		d.buf = d.buf[:0]
		d.cur.rec.Incomplete = true
		p.done(d, end)
	case stChunkLine, stTrailer, stBody, stChunkData:
		if d.cur != nil {
			d.cur.rec.Incomplete = true
			p.done(d, end)
		}
	}
	d.buf, d.scan = d.buf[:0], 0
	d.st = stResync
}

// Close ends the connection at time t: a read-until-close response completes,
// and every exchange still open is emitted as incomplete.
func (p *Parser) Close(t event.Timestamp) {
	r := &p.dirs[Response]
	if r.st == stUntilClose && r.cur != nil {
		p.done(r, r.lastEnd)
	}
	for _, x := range p.pending {
		x.rec.Incomplete = true
		x.reqDone, x.respDone = true, true
		p.emit(x)
	}
	p.pending = p.pending[:0]
	if q := p.dirs[Request].cur; q != nil {
		q.rec.Incomplete = true
		q.reqDone = true
		p.emit(q)
	}
	p.dirs[Request].cur, p.dirs[Response].cur = nil, nil
	p.dead = true
}

// degrade turns the connection into plain TCP after a bound was hit,
// flushing what is open as incomplete records.
func (p *Parser) degrade() Switch {
	p.stats.DegradedToTCP.Add(1)
	p.Close(p.dirs[Response].lastEnd)
	return ToTCP
}

// header consumes bytes of a header section. It returns how many bytes of b
// were used, or -1 when a limit was hit.
func (p *Parser) header(d *dir, b []byte, start, end event.Timestamp) (int, Switch, []byte) {
	var sec []byte
	used := 0
	fromBuf := len(d.buf) > 0
	var h fields
	pre := false // h holds sec's fields, parsed by scanHead
	if !fromBuf {
		d.trace.Reset()
		// A section longer than the limit is refused below whichever
		// path finds it: scanHead need not look further.
		i := h.scanHead(b[:min(len(b), p.lim.MaxHeaderBytes)], &d.trace)
		if pre = i >= 0; !pre {
			i = sectionEnd(b, 0)
		}
		if i < 0 {
			if len(b) > p.lim.MaxHeaderBytes {
				p.stats.HeaderLimit.Add(1)
				return -1, Stay, nil
			}
			d.buf = append(d.buf, b...)
			d.scan = len(d.buf)
			return len(b), Stay, nil
		}
		sec, used = b[:i], i
	} else {
		old := len(d.buf)
		d.buf = append(d.buf, b...)
		i := sectionEnd(d.buf, max(0, d.scan-3))
		if i < 0 {
			if len(d.buf) > p.lim.MaxHeaderBytes {
				p.stats.HeaderLimit.Add(1)
				return -1, Stay, nil
			}
			d.scan = len(d.buf)
			return len(b), Stay, nil
		}
		sec, used = d.buf[:i], i-old
	}
	if len(sec) > p.lim.MaxHeaderBytes {
		p.stats.HeaderLimit.Add(1)
		return -1, Stay, nil
	}
	var hp *fields
	if pre {
		hp = &h
	}
	sw, ok := p.message(d, sec, hp, end)
	d.buf, d.scan = d.buf[:0], 0
	if sw == ToHTTP2 && d.side == Request {
		// The HTTP/2 preface starts this section: hand over all of it.
		if fromBuf {
			return used, sw, sec // valid until the next append to d.buf
		}
		return 0, sw, nil
	}
	if sw != Stay {
		return used, sw, nil
	}
	if !ok {
		if d.candidate {
			p.stats.HTTP1Discarded.Add(1)
		} else {
			p.stats.ProtocolErrors.Add(1)
		}
		d.st = stResync
	}
	d.candidate = false
	return used, Stay, nil
}

// sectionEnd returns the length of the header section at the start of b
// (through its blank line: CRLF CRLF, or a bare LF LF), searching from
// offset from, or -1. It visits each line feed once: the section ends at
// the first one that ends a blank line.
func sectionEnd(b []byte, from int) int {
	for i := from; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		k := i + j
		switch {
		case k+1 < len(b) && b[k+1] == '\n':
			return k + 2
		case k > from && b[k-1] == '\r' && k+2 < len(b) && b[k+1] == '\r' && b[k+2] == '\n':
			return k + 3
		}
		i = k + 1
	}
}

// begin starts the exchange of a request message (nil for a response that
// has no request to pair with is handled by the caller).
func (p *Parser) begin(d *dir) *exchange {
	if d.side == Request {
		if len(p.pending) >= p.lim.MaxPending {
			p.stats.PendingLimit.Add(1)
			return nil
		}
		x := p.newExchange()
		x.rec.GRPCStatus = -1
		x.rec.ReqStart = d.msgStart
		x.rec.ReqOff = d.msgOff
		p.pending = append(p.pending, x)
		d.cur = x
		return x
	}
	if len(p.pending) > 0 {
		d.cur = p.pending[0]
	} else {
		// A response whose request was not seen (lost or connection seen
		// mid-way): reported with what is known.
		x := p.newExchange()
		x.reqDone = true
		x.rec.GRPCStatus = -1
		x.rec.Incomplete = true
		p.pending = append(p.pending, x)
		d.cur = x
	}
	return d.cur
}

// message parses a complete header section. ok is false for a malformed
// section or when the pending limit was hit (the direction is then opaque).
// pre, when not nil, holds the section's fields already parsed (scanHead),
// their trace headers in d.trace.
func (p *Parser) message(d *dir, sec []byte, pre *fields, end event.Timestamp) (Switch, bool) {
	var nl int
	if pre != nil {
		nl = pre.lineLF
	} else {
		nl = bytes.IndexByte(sec, '\n')
	}
	line := trimCR(sec[:nl])
	if d.side == Request && bytes.HasPrefix(line, []byte("PRI * HTTP/2.0")) && p.h2c != nil {
		return ToHTTP2, true
	}
	if d.side == Request {
		if LooksLikeRequest(line) != Yes && !plausibleExtensionRequest(line) {
			return Stay, false
		}
	} else if LooksLikeResponse(line) != Yes {
		return Stay, false
	}
	x := p.begin(d)
	if x == nil {
		p.dead = true
		p.stats.DegradedToTCP.Add(1)
		p.Close(end)
		return ToTCP, true
	}
	if d.lost {
		x.rec.Incomplete = true
		d.lost = false
	}
	if !p.startLine(d, x, line) {
		// Unparsable start line after a plausible prefix: drop the exchange.
		if d.side == Request {
			p.pending = p.pending[:len(p.pending)-1]
		}
		d.cur = nil
		return Stay, false
	}
	h := pre
	if h == nil {
		h = new(fields)
		d.trace.Reset()
		if !h.parse(sec[nl+1:], &d.trace) {
			if d.side == Request {
				p.pending = p.pending[:len(p.pending)-1]
			}
			d.cur = nil
			return Stay, false
		}
	}
	if d.side == Request {
		if d.msgTurn && p.dirs[Response].st == stResync {
			p.flushLost(end)
		}
		return p.request(d, x, h, len(sec), end), true
	}
	return p.response(d, x, h, len(sec), end), true
}

// flushLost ends the exchanges older than the request just begun: the
// client spoke again after the server did while the response direction had
// lost its place, so their responses went by unseen. Without this a lost
// response would leave the direction unable to resynchronise.
func (p *Parser) flushLost(end event.Timestamp) {
	n := len(p.pending) - 1
	for _, x := range p.pending[:n] {
		p.stats.HTTP1LostResponses.Add(1)
		x.rec.Incomplete = true
		x.reqDone, x.respDone = true, true
		p.emit(x)
	}
	copy(p.pending, p.pending[n:])
	clear(p.pending[1:])
	p.pending = p.pending[:1]
}

func plausibleExtensionRequest(line []byte) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !bytes.HasSuffix(line, []byte(" HTTP/1.1")) && !bytes.HasSuffix(line, []byte(" HTTP/1.0")) {
		return false
	}
	for _, c := range line[:sp] {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// startLine fills the record from a request or status line.
func (p *Parser) startLine(d *dir, x *exchange, line []byte) bool {
	r := &x.rec
	if d.side == Request {
		sp1 := bytes.IndexByte(line, ' ')
		if sp1 <= 0 {
			return false
		}
		rest := line[sp1+1:]
		sp2 := bytes.LastIndexByte(rest, ' ')
		if sp2 <= 0 {
			return false
		}
		r.Method = internMethod(line[:sp1])
		r.Path = reuse(&p.path, rest[:sp2])
		switch string(rest[sp2+1:]) {
		case "HTTP/1.1":
			r.Protocol = record.HTTP11
		case "HTTP/1.0":
			r.Protocol = record.HTTP10
		default:
			return false
		}
		x.head = r.Method == "HEAD"
		x.connect = r.Method == "CONNECT"
		return true
	}
	if len(line) < 12 {
		return false
	}
	st := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if len(line) > 12 && line[12] != ' ' {
		return false
	}
	r.Status = st
	if r.Protocol == "" {
		if line[7] == '0' {
			r.Protocol = record.HTTP10
		} else {
			r.Protocol = record.HTTP11
		}
	}
	return true
}

// reuse returns b as a string: the one in *last when they are equal, else
// a new one that replaces it.
func reuse(last *string, b []byte) string {
	if string(b) != *last {
		*last = string(b)
	}
	return *last
}

func internMethod(m []byte) string {
	for _, s := range methods {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}

func (p *Parser) request(d *dir, x *exchange, h *fields, n int, end event.Timestamp) Switch {
	r := &x.rec
	r.ReqHeaderBytes += uint64(n)
	r.ReqEnd = end
	r.ReqEndOff = d.cur0.Off
	if len(h.host) > 0 {
		r.Host = reuse(&p.host, h.host)
	}
	p.trace(d, r)
	if h.upgrade != nil && h.connUpgrade {
		if containsToken(h.upgrade, "h2c") {
			x.upgrade = upH2C
			p.h2c = x
		} else {
			x.upgrade = upOther
		}
	}
	switch {
	case h.chunked:
		d.st = stChunkLine
	case h.contentLength > 0:
		d.st, d.remaining = stBody, uint64(h.contentLength)
	default:
		p.done(d, end)
	}
	return Stay
}

func (p *Parser) trace(d *dir, r *record.Record) {
	if d.trace.Empty() {
		// No trace header, as in most requests: the context is the zero
		// one, and a context Result returns is zero unless its Kind is set.
		if r.Trace.Kind != tracectx.KindNone {
			r.Trace = tracectx.Context{}
		}
		return
	}
	ctx, bad := d.trace.Result()
	if bad > 0 {
		p.stats.TraceMalformed.Add(uint64(bad))
	}
	if r.Trace != ctx { // mostly both empty: spare the write
		r.Trace = ctx
	}
}

func (p *Parser) response(d *dir, x *exchange, h *fields, n int, end event.Timestamp) Switch {
	r := &x.rec
	if r.RespHeaderBytes == 0 {
		// The response's bytes begin with its first message, an
		// interim 1xx one included (its bytes are counted too).
		r.RespOff = d.msgOff
	}
	r.RespHeaderBytes += uint64(n)
	r.RespEnd = end
	r.RespEndOff = d.cur0.Off
	st := r.Status
	if st >= 100 && st < 200 && st != 101 {
		// Interim (100 Continue, 103 Early Hints): not the final response.
		r.Status = 0
		d.cur = nil
		d.st = stStart
		return Stay
	}
	r.RespStart = d.msgStart
	if st == 101 {
		p.pending = p.pending[1:]
		d.cur = nil
		x.respDone = true
		if x.upgrade == upH2C && containsToken(h.upgrade, "h2c") {
			x.handed = true
			return ToHTTP2
		}
		x.reqDone = true
		p.emit(x)
		p.dead = true
		return ToTCP
	}
	if x.connect && st/100 == 2 {
		p.pending = p.pending[1:]
		d.cur = nil
		x.respDone, x.reqDone = true, true
		p.emit(x)
		p.dead = true
		return ToTCP
	}
	if x.upgrade != upNone {
		// Upgrade refused: the client keeps talking HTTP/1.
		if p.h2c == x {
			p.h2c = nil
		}
		if q := &p.dirs[Request]; q.st == stAfterUpgrade {
			q.st = stStart
		}
	}
	if x.rec.Method == "" && st != 204 && st != 304 && (h.chunked || h.contentLength != 0) {
		// The request was not seen: had it been HEAD the response has no
		// body, so where the next response starts is unknown.
		x.rec.Incomplete = true
		p.done(d, end)
		d.st = stResync
		return Stay
	}
	switch {
	case x.head || st == 204 || st == 304:
		p.done(d, end)
	case h.chunked:
		d.st = stChunkLine
	case h.contentLength >= 0:
		if h.contentLength == 0 {
			p.done(d, end)
		} else {
			d.st, d.remaining = stBody, uint64(h.contentLength)
		}
	default:
		d.st = stUntilClose
	}
	return Stay
}

func (p *Parser) countBody(d *dir, n uint64) {
	if d.cur == nil {
		return
	}
	if d.side == Request {
		d.cur.rec.ReqBodyBytes += n
	} else {
		d.cur.rec.RespBodyBytes += n
	}
}

// done completes the current message of a direction at time end.
func (p *Parser) done(d *dir, end event.Timestamp) {
	x := d.cur
	d.cur = nil
	d.st = stStart
	if x == nil {
		return
	}
	// Where the direction stands is past the bytes that ended the message.
	if d.side == Request {
		x.rec.ReqEnd, x.rec.ReqEndOff = end, d.cur0.Off
		x.reqDone = true
		if x.upgrade != upNone && !x.respDone {
			d.st = stAfterUpgrade
		}
	} else {
		x.rec.RespEnd, x.rec.RespEndOff = end, d.cur0.Off
		x.respDone = true
		if len(p.pending) > 0 && p.pending[0] == x {
			// Shifting down (at most MaxPending pointers, usually
			// none) keeps the array for the next requests.
			n := copy(p.pending, p.pending[1:])
			p.pending[n] = nil
			p.pending = p.pending[:n]
		}
	}
	if x.reqDone && x.respDone {
		p.emit(x)
	}
}

func (p *Parser) emit(x *exchange) {
	if x.handed || x.emitted {
		return
	}
	x.emitted = true
	p.stats.Finish(&x.rec, p.sink)
	if p.reuse && len(p.spent) < maxSpent {
		p.spent = append(p.spent, x)
	}
}

// reusable takes from spent an emitted exchange nothing of the parser
// refers to any more: not pending, not a direction's current message, not
// the h2c upgrade. An exchange can be emitted while still referred to (a
// request still sending its body after an early response); it waits in
// spent until it is not.
func (p *Parser) reusable() *exchange {
	for i, x := range p.spent {
		if x == p.dirs[Request].cur || x == p.dirs[Response].cur || x == p.h2c || slices.Contains(p.pending, x) {
			continue
		}
		last := len(p.spent) - 1
		p.spent[i] = p.spent[last]
		p.spent[last] = nil
		p.spent = p.spent[:last]
		return x
	}
	return nil
}

// chunkLine consumes a chunk-size line.
func (p *Parser) chunkLine(d *dir, b []byte) (int, bool) {
	line, used, ok := p.line(d, b)
	if !ok || line == nil {
		return used, ok
	}
	p.countBody(d, uint64(len(line))+1)
	line = trimCR(line)
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	size, valid := parseHex(line)
	if !valid {
		p.stats.ProtocolErrors.Add(1)
		p.lose(d, d.lastEnd)
		return used, true
	}
	if size == 0 {
		d.st = stTrailer
		return used, true
	}
	d.st, d.remaining = stChunkData, size+2 // data and its CRLF
	return used, true
}

// line returns one line (without its LF, possibly ending in CR) once it is
// complete, buffering a partial line. used is the bytes of b consumed.
func (p *Parser) line(d *dir, b []byte) (line []byte, used int, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(d.buf)+len(b) > 4096 {
			p.stats.BufferLimit.Add(1)
			return nil, 0, false
		}
		d.buf = append(d.buf, b...)
		return nil, len(b), true
	}
	if len(d.buf) == 0 {
		return b[:i], i + 1, true
	}
	d.buf = append(d.buf, b[:i]...)
	line = d.buf
	d.buf = d.buf[:0]
	return line, i + 1, true
}

// trailer consumes the trailer section after the last chunk.
func (p *Parser) trailer(d *dir, b []byte, end event.Timestamp) (int, bool) {
	for used := 0; used < len(b); {
		line, n, ok := p.line(d, b[used:])
		if !ok {
			return used, false
		}
		used += n
		if line == nil {
			return used, true
		}
		p.countBody(d, uint64(len(line)+1))
		if len(trimCR(line)) == 0 {
			p.done(d, end)
			return used, true
		}
	}
	return len(b), true
}

func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		case 'A' <= c && c <= 'F':
			v = v<<4 | uint64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

func trimCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}
