// Package protocol classifies the byte streams of a captured TCP connection
// as HTTP/1.x, HTTP/2 or plain TCP, and drives the matching parser so that
// every HTTP exchange becomes one Record.
//
// The capture layer owns connections and feeds each direction's bytes in
// order; this package owns the decision of what those bytes are. Detection
// looks at the first bytes of each direction (a request line, a status line,
// the HTTP/2 client preface, an HTTP/2 server SETTINGS frame) because that is
// the only place where it can be made without guessing; a connection first
// seen mid-way is classified on a later chunk only when the bytes are
// unambiguous. Unknown protocols stay TCP and produce no records.
//
// A connection is "seen from its start" when the capture layer saw its
// connect or accept (WithStartSeen): only then are the first bytes of a
// direction the first bytes of the protocol. Otherwise (a daemon started or
// restarted while the connection was open) the parsers start mid-stream and
// emit nothing until they can prove where they are: see package http1 for
// the turn-taking rule and package http2 for when HPACK state is known good.
package protocol

import (
	"fmt"
	"log/slog"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/http1"
	"github.com/weirnet/weir/daemon/protocol/http2"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// Kind is what a connection was classified as.
type Kind uint8

const (
	KindDetecting Kind = iota // not enough bytes seen yet
	KindHTTP1
	KindHTTP2
	KindTCP // not HTTP, or no longer parsed (limit hit, WebSocket, tunnel)
)

func (k Kind) String() string {
	switch k {
	case KindHTTP1:
		return "http1"
	case KindHTTP2:
		return "http2"
	case KindTCP:
		return "tcp"
	default:
		return "detecting"
	}
}

const (
	// detectBytes is how much of a direction detection may buffer: enough
	// for the HTTP/2 preface and the longest method plus a target byte.
	detectBytes = len(http2.Preface)
	// maxMidStreamTries bounds how many turns (chunks that start a syscall
	// after the other direction moved) of a connection first seen mid-way
	// are examined before it is left as TCP. Chunks without a turn do not
	// count: a large body in flight must not use the tries up.
	maxMidStreamTries = 8
	// DefaultBodyHintMin is the smallest HTTP/1 body (or chunk) reported to
	// the capture layer as skippable. A hint costs one map update from user
	// space (a bpf syscall, ~1-2 µs) and a map lookup per syscall in the
	// kernel; below 16 KiB the copy it saves (at most four 4 KiB ring
	// records) is worth less than that, and most small bodies are in the
	// same syscall as their head anyway, which the kernel copies whole.
	DefaultBodyHintMin = 16 << 10
)

// CaptureControl lets a parser tell the capture layer which bytes of its
// connection it needs. It is per connection: the implementation knows
// which connection it speaks for. Calls are advisory: a hint that arrives
// after the bytes moved changes nothing, and an error only costs copying.
//
// HTTP/1 uses it so: with the first body of at least the hint threshold,
// HTTP1 (copy the connection whole, past the capture budget, so that heads
// and chunk lines anywhere in a syscall are seen), then SkipBody for that
// and each later content-length body and chunk of a chunked body of at
// least the threshold. Until then the capture budget applies. The part of
// a body moved before its hint lands is copied (the syscall that carried
// its head or chunk line, and more while the daemon catches up); the rest
// goes size-only. A chunked body of small chunks is therefore copied
// nearly whole: exact, at the cost of its size in the ring buffer (an
// overflow is counted as ringbuf_full).
type CaptureControl interface {
	// HTTP1 says the connection carries HTTP/1: copy it whole (and do
	// not walk it as HTTP/2).
	HTTP1() error
	// SkipBody says the bytes [from,to) of direction dir (stream offsets,
	// counted from the connection's first byte in that direction) are
	// body the parser counts by length: they may be sent size-only. It
	// implies HTTP1.
	SkipBody(dir event.Direction, from, to uint64) error
}

type mode uint8

const (
	modeDetect mode = iota
	modeH1
	modeH2
	modeTCP
)

// Option configures a Conn.
type Option func(*Conn) error

// WithLimits sets the per-connection bounds (default DefaultLimits).
func WithLimits(l record.Limits) Option {
	return func(c *Conn) error {
		if err := l.Validate(); err != nil {
			return err
		}
		c.lim = l
		return nil
	}
}

// WithLogger sets the logger for classification decisions (default: none).
func WithLogger(l *slog.Logger) Option {
	return func(c *Conn) error {
		if l == nil {
			return fmt.Errorf("protocol: nil logger")
		}
		c.log = l
		return nil
	}
}

// WithStartSeen says whether the connection's start (connect or accept)
// was seen, i.e. whether the first bytes delivered are the first bytes the
// connection carried (default true). When false the connection is parsed
// as mid-stream: nothing is reported until a message start is proven.
func WithStartSeen(seen bool) Option {
	return func(c *Conn) error {
		c.midStream = !seen
		return nil
	}
}

// WithCaptureControl hands the parsers a CaptureControl (nil: none) to
// report HTTP/1 and skippable HTTP/1 bodies of at least minBody bytes
// (0: DefaultBodyHintMin).
func WithCaptureControl(ctl CaptureControl, minBody uint64) Option {
	return func(c *Conn) error {
		c.ctl = ctl
		c.hintMin = minBody
		if minBody == 0 {
			c.hintMin = DefaultBodyHintMin
		}
		return nil
	}
}

// WithSinkCopies says the sink copies each record before it returns and
// keeps no pointer into it (default: the sink may keep records). The
// parsers may then reuse a record's memory for a later exchange, which
// spares the HTTP/1 parser an allocation per exchange.
func WithSinkCopies() Option {
	return func(c *Conn) error {
		c.sinkCopies = true
		return nil
	}
}

// Conn parses one connection. Methods must be called from one goroutine, in
// the order the bytes moved within each direction.
type Conn struct {
	role  event.Role
	lim   record.Limits
	stats *record.Stats
	sink  func(*record.Record)
	log   *slog.Logger

	kind Kind
	// midStream: the connection's start was not seen.
	midStream bool
	ctl       CaptureControl
	hintMin   uint64
	// sinkCopies: see WithSinkCopies.
	sinkCopies bool
	saidHTTP1  bool // CaptureControl.HTTP1 was called
	// cur is where each direction stands (stream offset, turn-taking).
	cur [2]http1.Cursor
	// reqDir is the direction carrying requests; known from the role, or
	// learned from detection when the role is unknown.
	reqDir   event.Direction
	reqKnown bool
	mode     [2]mode
	det      [2]detBuf
	tries    int

	h1 *http1.Parser
	h2 *http2.Parser
}

type detBuf struct {
	b          []byte
	start, end event.Timestamp
	skipped    uint64 // bytes lost before detection: connection seen mid-way
}

// NewConn returns a Conn for a connection whose monitored side has the given
// role. sink receives every finished record and owns it from then on: the
// parser never touches a record after emitting it. stats must not be nil and
// is normally shared by all connections.
func NewConn(role event.Role, stats *record.Stats, sink func(*record.Record), opts ...Option) (*Conn, error) {
	if stats == nil || sink == nil {
		return nil, fmt.Errorf("protocol: NewConn needs non-nil stats and sink")
	}
	c := &Conn{role: role, lim: record.DefaultLimits(), stats: stats, sink: sink, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, fmt.Errorf("protocol: %w", err)
		}
	}
	switch role {
	case event.RoleServer:
		c.reqDir, c.reqKnown = event.Ingress, true
	case event.RoleClient:
		c.reqDir, c.reqKnown = event.Egress, true
	}
	return c, nil
}

// Kind reports the connection's classification so far.
func (c *Conn) Kind() Kind { return c.kind }

// Data feeds bytes captured in direction dir; b is only read during the call.
func (c *Conn) Data(dir event.Direction, b []byte, start, end event.Timestamp) {
	if len(b) == 0 || dir > event.Ingress {
		return
	}
	before := c.cur[dir]
	turn := c.cur[dir].Advance(&c.cur[1-dir], uint64(len(b)), start)
	if c.mode[dir] == modeDetect {
		c.detect(dir, b, start, end, before, turn)
		return
	}
	c.dispatch(dir, b, before.Off, start, end)
}

// dispatch hands bytes to the direction's parser (the cursor is already
// past them); off is the stream offset of b[0]. The HTTP/1 parser follows
// the offsets itself (it starts where the stream stands); the HTTP/2 one is
// told, since it may take over mid-way (h2c upgrade).
func (c *Conn) dispatch(dir event.Direction, b []byte, off uint64, start, end event.Timestamp) {
	switch c.mode[dir] {
	case modeH1:
		c.dataH1(dir, b, off, start, end)
	case modeH2:
		c.h2.At(c.h2Side(dir), off)
		c.h2.Data(c.h2Side(dir), b, start, end)
		if c.h2.Opaque() {
			c.toTCP("http2 limit")
		}
	}
}

// Skip accounts for n bytes moved in direction dir but not captured.
func (c *Conn) Skip(dir event.Direction, n uint64, start, end event.Timestamp) {
	if n == 0 || dir > event.Ingress {
		return
	}
	off := c.cur[dir].Off
	c.cur[dir].Advance(&c.cur[1-dir], n, start)
	switch c.mode[dir] {
	case modeDetect:
		c.det[dir].skipped += n
		c.det[dir].b = c.det[dir].b[:0]
	case modeH1:
		c.h1.Skip(c.h1Side(dir), n, start, end)
	case modeH2:
		c.h2.At(c.h2Side(dir), off)
		c.h2.Skip(c.h2Side(dir), n, start, end)
	}
}

// Close ends the connection at time t, emitting what is still open.
func (c *Conn) Close(t event.Timestamp) {
	if c.h1 != nil {
		c.h1.Close(t)
	}
	if c.h2 != nil {
		c.h2.Close(t)
	}
	c.mode = [2]mode{modeTCP, modeTCP}
}

func (c *Conn) h1Side(dir event.Direction) http1.Side {
	if dir == c.reqDir {
		return http1.Request
	}
	return http1.Response
}

func (c *Conn) h2Side(dir event.Direction) http2.Side {
	if dir == c.reqDir {
		return http2.Client
	}
	return http2.Server
}

func (c *Conn) dataH1(dir event.Direction, b []byte, off uint64, start, end event.Timestamp) {
	sw, carry, n := c.h1.Data(c.h1Side(dir), b, start, end)
	switch sw {
	case http1.ToHTTP2:
		if c.h2 == nil {
			req := c.h1.H2CRequest()
			if req == nil {
				c.toTCP("h2c switch without upgrade request")
				return
			}
			c.h2 = http2.NewUpgraded(c.lim, c.stats, c.sink, req)
			if c.sinkCopies {
				c.h2.ReuseRecords()
			}
		}
		c.mode[dir] = modeH2
		c.kind = KindHTTP2
		c.log.Debug("h2c upgrade", "direction", dir)
		// carry is what the HTTP/1 parser held of the bytes just
		// before b[n:].
		c.h2.At(c.h2Side(dir), off+uint64(n)-min(uint64(len(carry)), off+uint64(n)))
		if len(carry) > 0 {
			c.h2.Data(c.h2Side(dir), carry, start, end)
		}
		if n < len(b) {
			c.h2.Data(c.h2Side(dir), b[n:], start, end)
		}
	case http1.ToTCP:
		c.toTCP("http1 switched to opaque")
	}
}

func (c *Conn) toTCP(why string) {
	if c.kind != KindTCP {
		c.log.Debug("connection left as tcp", "reason", why)
	}
	c.kind = KindTCP
	c.mode = [2]mode{modeTCP, modeTCP}
}

// detect buffers the first bytes of a direction until they identify the
// protocol, then starts the parser and replays what was held.
func (c *Conn) detect(dir event.Direction, b []byte, start, end event.Timestamp, before http1.Cursor, turn bool) {
	d := &c.det[dir]
	if d.skipped > 0 || c.midStream || c.det[1-dir].skipped > 0 && !c.reqKnown {
		c.detectMidStream(dir, b, start, end, before, turn)
		return
	}
	if len(d.b) == 0 {
		d.start = start
	}
	d.end = end
	take := min(len(b), detectBytes-len(d.b))
	d.b = append(d.b, b[:take]...)
	k, isReq, more := c.classify(dir, d.b)
	switch {
	case k != KindDetecting:
		c.start(k, dir, isReq)
		c.replay(dir, b[take:], start, end)
	case !more || len(d.b) >= detectBytes:
		c.stats.UnknownProtocol.Add(1)
		c.toTCP("unknown protocol")
	}
}

// classify looks at the first bytes of a direction. isReq says whether the
// match was a request-side pattern; more whether more bytes could decide.
func (c *Conn) classify(dir event.Direction, b []byte) (k Kind, isReq bool, more bool) {
	canReq := !c.reqKnown || dir == c.reqDir
	canResp := !c.reqKnown || dir != c.reqDir
	if canReq {
		switch prefix(b, "PRI * HTTP/2.0\r\n") {
		case http1.Yes:
			return KindHTTP2, true, false
		case http1.More:
			more = true
		}
		switch http1.LooksLikeRequest(b) {
		case http1.Yes:
			return KindHTTP1, true, false
		case http1.More:
			more = true
		}
	}
	if canResp {
		switch http1.LooksLikeResponse(b) {
		case http1.Yes:
			return KindHTTP1, false, false
		case http1.More:
			more = true
		}
		// An HTTP/2 server speaks first with SETTINGS on stream 0.
		if len(b) < 9 {
			if len(b) < 4 || b[3] == 0x4 {
				more = true
			}
		} else if b[3] == 0x4 && b[4]&^0x1 == 0 && b[5]|b[6]|b[7]|b[8] == 0 &&
			(uint32(b[0])<<16|uint32(b[1])<<8|uint32(b[2]))%6 == 0 {
			return KindHTTP2, false, false
		}
	}
	return KindDetecting, false, more
}

func prefix(b []byte, s string) http1.Match {
	if len(b) >= len(s) {
		if string(b[:len(s)]) == s {
			return http1.Yes
		}
		return http1.No
	}
	if string(b) == s[:len(b)] {
		return http1.More
	}
	return http1.No
}

// detectMidStream classifies a connection whose first bytes were not seen:
// only a chunk that starts a syscall after the other direction took its
// turn counts, and only with a start line or a plausible run of HTTP/2
// frames. When the role is unknown, only a request line tells the client
// side. The parser then starts mid-stream: classification is not proof of
// a message start, the parser applies its own rules (before is where dir
// stood before b).
func (c *Conn) detectMidStream(dir event.Direction, b []byte, start, end event.Timestamp, before http1.Cursor, turn bool) {
	if !turn {
		return
	}
	c.tries++
	k, isReq, _ := c.classify(dir, b)
	if k == KindHTTP2 && !isReq {
		k = KindDetecting // a SETTINGS frame mid-stream is not a start
	}
	if k == KindHTTP1 && !isReq && !c.reqKnown {
		k = KindDetecting // a status line may be body text: not a proof of sides
	}
	if k == KindDetecting && http2.PlausibleFrames(b) {
		k = KindHTTP2
		if !c.reqKnown {
			k = KindDetecting // which side is the client cannot be told
		}
	}
	if k == KindDetecting {
		if c.tries >= maxMidStreamTries {
			c.stats.UnknownProtocol.Add(1)
			c.toTCP("no recognisable start mid-stream")
		}
		return
	}
	// What detection held is dropped: the parser starts where each
	// direction stands, dir just before b.
	c.det[0].b, c.det[1].b = nil, nil
	cur := c.cur
	cur[dir] = before
	c.startMid(k, dir, isReq, cur)
	c.dispatch(dir, b, before.Off, start, end)
}

// startMid is start for a connection parsed mid-stream; cur says where
// each direction stands.
func (c *Conn) startMid(k Kind, dir event.Direction, isReq bool, cur [2]http1.Cursor) {
	c.learnSides(dir, isReq)
	c.kind = k
	m := modeH1
	if k == KindHTTP1 {
		var sc [2]http1.Cursor
		sc[http1.Request], sc[http1.Response] = cur[c.reqDir], cur[1-c.reqDir]
		c.h1 = http1.NewMidStream(c.lim, c.stats, c.sink, sc)
		if c.sinkCopies {
			c.h1.ReuseRecords()
		}
		c.controlHTTP1()
	} else {
		m = modeH2
		c.h2 = http2.NewMidStream(c.lim, c.stats, c.sink)
		if c.sinkCopies {
			c.h2.ReuseRecords()
		}
	}
	c.mode = [2]mode{m, m}
	c.log.Debug("protocol detected mid-stream", "kind", k, "request_direction", c.reqDir)
}

func (c *Conn) learnSides(dir event.Direction, isReq bool) {
	if !c.reqKnown {
		c.reqDir = dir
		if !isReq {
			c.reqDir = 1 - dir
		}
		c.reqKnown = true
	}
}

// controlHTTP1 tells the capture layer the connection is HTTP/1 and has
// the parser report the bodies it may skip.
func (c *Conn) controlHTTP1() {
	if c.ctl == nil {
		return
	}
	c.h1.SetBodyHint(c.hintMin, func(s http1.Side, from, to uint64, _ bool) {
		dir := c.reqDir
		if s == http1.Response {
			dir = 1 - dir
		}
		if !c.saidHTTP1 {
			// Said with the first body hint, not at classification: until
			// then the capture budget bounds what is copied, so bytes
			// moved before a hint can land are not copied whole.
			c.saidHTTP1 = true
			if err := c.ctl.HTTP1(); err != nil {
				c.stats.BodyHintErrors.Add(1)
			}
		}
		if err := c.ctl.SkipBody(dir, from, to); err != nil {
			c.stats.BodyHintErrors.Add(1)
			return
		}
		c.stats.BodyHints.Add(1)
	})
}

// start creates the parser for kind k, learned from direction dir.
func (c *Conn) start(k Kind, dir event.Direction, isReq bool) {
	c.learnSides(dir, isReq)
	c.kind = k
	m := modeH1
	if k == KindHTTP1 {
		c.h1 = http1.New(c.lim, c.stats, c.sink)
		if c.sinkCopies {
			c.h1.ReuseRecords()
		}
		c.controlHTTP1()
	} else {
		m = modeH2
		if c.det[c.reqDir].skipped > 0 || c.det[1-c.reqDir].skipped > 0 {
			c.h2 = http2.NewMidStream(c.lim, c.stats, c.sink)
		} else {
			c.h2 = http2.New(c.lim, c.stats, c.sink)
		}
		if c.sinkCopies {
			c.h2.ReuseRecords()
		}
	}
	c.mode = [2]mode{m, m}
	c.log.Debug("protocol detected", "kind", k, "request_direction", c.reqDir)
}

// replay feeds the parser what detection held for both directions, then the
// rest of the current chunk. What a direction held are its last bytes
// before rest (dir) or before where it stands (the other direction).
func (c *Conn) replay(dir event.Direction, rest []byte, start, end event.Timestamp) {
	restOff := c.cur[dir].Off - uint64(len(rest))
	for _, dd := range [2]event.Direction{1 - dir, dir} {
		d := &c.det[dd]
		held := d.b
		d.b = nil
		if d.skipped > 0 && c.mode[dd] == modeH1 {
			c.h1.Skip(c.h1Side(dd), d.skipped, d.start, d.start)
		}
		if len(held) > 0 {
			to := c.cur[dd].Off
			if dd == dir {
				to = restOff
			}
			c.dispatch(dd, held, to-uint64(len(held)), d.start, d.end)
		}
	}
	if len(rest) > 0 {
		c.dispatch(dir, rest, restOff, start, end)
	}
}
