package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/encoding/protowire"
)

// Receiver is an in-process stand-in for the SkyWalking OAP's
// EBPFAccessLogService on a loopback port. The benchmark measures the cost
// of exporting, not of an OAP: in a cluster the OAP runs off the node, and
// here it shares the node's two cores with the pods and the daemon, so
// whatever it spends is taken from the traffic being measured. It therefore
// does the least an honest receiver can. It speaks gRPC's wire protocol
// itself on one goroutine per connection (HTTP/2 frames through x/net's
// Framer, gRPC's length-prefixed messages), where grpc-go's server spent
// about 3 µs per request on its transport: a reader goroutine, a handoff
// to the handler's goroutine and a buffer per message. Every message's wire
// format is still walked (protowire, no structs built; a malformed message
// fails its stream with INTERNAL) and counted, and each stream is answered
// as the OAP does, with an empty EBPFAccessLogDownstream and grpc-status 0.
//
// What it does not do, because the exporter never asks for it: compressed
// messages (refused with a stream error), server-side flow control of its
// own replies beyond the client's initial window (each reply is a few
// bytes), TLS.
type Receiver struct {
	ln net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	streams  atomic.Int64
	messages atomic.Int64
	http     atomic.Int64 // messages carrying an HTTP protocol log
	kernel   atomic.Int64 // kernel operation logs, summed over messages
	bytes    atomic.Int64 // bytes of the messages, without gRPC's prefixes
}

// collectPath is the :path of EBPFAccessLogService's collect stream.
const collectPath = "/skywalking.v3.EBPFAccessLogService/collect"

// receiverWindow is the receiver's HTTP/2 flow-control window, stream and
// connection: several batches of the exporter's default size. It is given
// back once half of it was read, so a WINDOW_UPDATE (a write) is rare.
const receiverWindow = 8 << 20

// maxReceiverMessage bounds one gRPC message, as grpc-go's server's 4 MiB
// default receive limit does.
const maxReceiverMessage = 4 << 20

// StartReceiver listens on 127.0.0.1 (an ephemeral port) and serves until
// Stop.
func StartReceiver() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the in-process OAP: %w", err)
	}
	r := &Receiver{ln: ln, conns: make(map[net.Conn]struct{})}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the host:port to give the daemon as its OAP address.
func (r *Receiver) Addr() string { return r.ln.Addr().String() }

// Stop closes the listener and every connection, and waits for their
// goroutines.
func (r *Receiver) Stop() {
	r.mu.Lock()
	r.closed = true
	_ = r.ln.Close()
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// ReceiverCounts is what the receiver has seen so far.
type ReceiverCounts struct {
	Streams, Messages, HTTP, Kernel int64
	Bytes                           int64 // of the messages (gRPC's 5-byte prefixes not counted)
}

// Counts returns the running totals.
func (r *Receiver) Counts() ReceiverCounts {
	return ReceiverCounts{r.streams.Load(), r.messages.Load(), r.http.Load(), r.kernel.Load(), r.bytes.Load()}
}

func (r *Receiver) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			_ = c.Close()
			return
		}
		r.conns[c] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			_ = r.serve(c)
			r.mu.Lock()
			delete(r.conns, c)
			r.mu.Unlock()
			_ = c.Close()
		}()
	}
}

// rstream is one collect stream's state: where it is in the gRPC message
// framing of its DATA frames.
type rstream struct {
	prefix  [5]byte // a message's prefix (compressed flag, length) while incomplete
	nprefix int
	need    int    // the current message's length once its prefix is read; -1 before
	partial []byte // the part of a message split over DATA frames
	unacked uint32 // bytes read since the stream's last WINDOW_UPDATE
	failed  bool   // answered with an error; the rest of its data is dropped
}

// rconn is one HTTP/2 connection of the receiver.
type rconn struct {
	r       *Receiver
	w       *bufio.Writer
	fr      *http2.Framer
	enc     *hpack.Encoder
	hbuf    bytes.Buffer
	streams map[uint32]*rstream
	unacked uint32 // connection-level bytes read since the last WINDOW_UPDATE
}

// serve runs one connection until the client or Stop closes it.
func (r *Receiver) serve(c net.Conn) error {
	br := bufio.NewReaderSize(c, 256<<10)
	var preface [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(br, preface[:]); err != nil {
		return err
	}
	if string(preface[:]) != http2.ClientPreface {
		return errors.New("not an HTTP/2 client preface")
	}
	w := bufio.NewWriterSize(c, 16<<10)
	rc := &rconn{r: r, w: w, fr: http2.NewFramer(w, br), streams: make(map[uint32]*rstream)}
	rc.fr.SetReuseFrames()
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.enc = hpack.NewEncoder(&rc.hbuf)
	if err := rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: receiverWindow}); err != nil {
		return err
	}
	// The connection's window starts at 65535 whatever SETTINGS say.
	if err := rc.fr.WriteWindowUpdate(0, receiverWindow-65535); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				delete(rc.streams, se.StreamID)
				if err := rc.fr.WriteRSTStream(se.StreamID, se.Code); err != nil {
					return err
				}
				if err := w.Flush(); err != nil {
					return err
				}
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				_ = rc.fr.WriteGoAway(0, http2.ErrCode(ce), nil)
				_ = w.Flush()
			}
			return err
		}
		if err := rc.frame(f); err != nil {
			return err
		}
	}
}

// frame handles one frame read from the client.
func (rc *rconn) frame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if err := rc.fr.WriteSettingsAck(); err != nil {
			return err
		}
		return rc.w.Flush()
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		if err := rc.fr.WritePing(true, f.Data); err != nil {
			return err
		}
		return rc.w.Flush()
	case *http2.MetaHeadersFrame:
		return rc.headers(f)
	case *http2.DataFrame:
		return rc.data(f)
	case *http2.RSTStreamFrame:
		delete(rc.streams, f.StreamID)
	case *http2.GoAwayFrame:
		return io.EOF
	}
	// WINDOW_UPDATE: the replies are a few bytes, well inside any window.
	// PRIORITY and unknown frames: nothing to do.
	return nil
}

// headers opens a stream; a second HEADERS on an open stream (trailers,
// which a gRPC client never sends) ends it.
func (rc *rconn) headers(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if s, ok := rc.streams[id]; ok {
		if f.StreamEnded() {
			return rc.end(id, s)
		}
		return nil
	}
	rc.r.streams.Add(1)
	if f.PseudoValue("path") != collectPath || !isGRPC(f) {
		delete(rc.streams, id)
		return rc.reply(id, 12, "the receiver serves only "+collectPath+" over application/grpc") // UNIMPLEMENTED
	}
	s := &rstream{need: -1}
	rc.streams[id] = s
	if f.StreamEnded() {
		return rc.end(id, s)
	}
	return nil
}

// isGRPC says whether a request's content-type is gRPC's.
func isGRPC(f *http2.MetaHeadersFrame) bool {
	for _, h := range f.RegularFields() {
		if h.Name == "content-type" {
			return h.Value == "application/grpc" || strings.HasPrefix(h.Value, "application/grpc+") ||
				strings.HasPrefix(h.Value, "application/grpc;")
		}
	}
	return false
}

// data reads a DATA frame's messages and gives the flow-control window back
// once half of it was read.
func (rc *rconn) data(f *http2.DataFrame) error {
	n := f.Header().Length // padding included, as flow control counts it
	rc.unacked += n
	if rc.unacked >= receiverWindow/2 {
		if err := rc.fr.WriteWindowUpdate(0, rc.unacked); err != nil {
			return err
		}
		rc.unacked = 0
		if err := rc.w.Flush(); err != nil {
			return err
		}
	}
	id := f.StreamID
	s, ok := rc.streams[id]
	if !ok { // reset or answered already
		return nil
	}
	if !s.failed {
		if err := s.feed(f.Data(), rc.r); err != nil {
			s.failed = true
			if err := rc.reply(id, 13, err.Error()); err != nil { // INTERNAL
				return err
			}
			// The client may still be sending: end its half too.
			delete(rc.streams, id)
			if err := rc.fr.WriteRSTStream(id, http2.ErrCodeNo); err != nil {
				return err
			}
			return rc.w.Flush()
		}
	}
	if f.StreamEnded() {
		return rc.end(id, s)
	}
	s.unacked += n
	if s.unacked >= receiverWindow/2 {
		if err := rc.fr.WriteWindowUpdate(id, s.unacked); err != nil {
			return err
		}
		s.unacked = 0
		return rc.w.Flush()
	}
	return nil
}

// end answers a stream the client has closed: OK with the OAP's empty
// reply, or INTERNAL if it ended inside a message.
func (rc *rconn) end(id uint32, s *rstream) error {
	delete(rc.streams, id)
	if s.failed {
		return nil
	}
	if s.nprefix > 0 || s.need >= 0 {
		return rc.reply(id, 13, "stream ended inside a message")
	}
	return rc.reply(id, 0, "")
}

// reply sends a unary response and the stream's end: response headers, for
// status 0 an empty message (EBPFAccessLogDownstream has no fields set), and
// the trailers with grpc-status.
func (rc *rconn) reply(id uint32, code int, msg string) error {
	rc.hbuf.Reset()
	_ = rc.enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	_ = rc.enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hbuf.Bytes(), EndHeaders: true}); err != nil {
		return err
	}
	if code == 0 {
		if err := rc.fr.WriteData(id, false, []byte{0, 0, 0, 0, 0}); err != nil {
			return err
		}
	}
	rc.hbuf.Reset()
	_ = rc.enc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: strconv.Itoa(code)})
	if msg != "" {
		_ = rc.enc.WriteField(hpack.HeaderField{Name: "grpc-message", Value: percentEncode(msg)})
	}
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.hbuf.Bytes(), EndHeaders: true, EndStream: true}); err != nil {
		return err
	}
	return rc.w.Flush()
}

// percentEncode encodes a grpc-message as gRPC's protocol asks: bytes
// outside printable ASCII, and '%', as %XX.
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// feed takes the next bytes of a stream's DATA: gRPC messages, each a 5-byte
// prefix (compressed flag, big-endian length) and the message, split over
// frames anywhere. A message inside one frame is scanned where it lies; one
// split over frames is gathered first.
func (s *rstream) feed(b []byte, r *Receiver) error {
	for len(b) > 0 {
		if s.need < 0 {
			n := copy(s.prefix[s.nprefix:], b)
			s.nprefix += n
			b = b[n:]
			if s.nprefix < len(s.prefix) {
				return nil
			}
			s.nprefix = 0
			if s.prefix[0] != 0 {
				return errors.New("compressed message: the receiver accepts none")
			}
			l := binary.BigEndian.Uint32(s.prefix[1:])
			if l > maxReceiverMessage {
				return fmt.Errorf("message of %d bytes, more than %d", l, maxReceiverMessage)
			}
			s.need = int(l)
			s.partial = s.partial[:0]
		}
		if len(s.partial) == 0 && len(b) >= s.need {
			msg := b[:s.need]
			b = b[s.need:]
			s.need = -1
			if err := r.count(msg); err != nil {
				return err
			}
			continue
		}
		n := min(len(b), s.need-len(s.partial))
		s.partial = append(s.partial, b[:n]...)
		b = b[n:]
		if len(s.partial) == s.need {
			s.need = -1
			if err := r.count(s.partial); err != nil {
				return err
			}
			s.partial = s.partial[:0]
		}
	}
	return nil
}

// count scans one EBPFAccessLogMessage and adds it to the totals.
func (r *Receiver) count(msg []byte) error {
	var m messageScan
	if err := m.Scan(msg); err != nil {
		return fmt.Errorf("EBPFAccessLogMessage: %w", err)
	}
	r.messages.Add(1)
	r.bytes.Add(int64(len(msg)))
	if m.HTTP {
		r.http.Add(1)
	}
	r.kernel.Add(m.Kernel)
	return nil
}

// Field numbers of skywalking.v3.EBPFAccessLogMessage and
// AccessLogProtocolLogs (goapi collect/ebpf/accesslog/v3).
const (
	fieldKernelLogs  = 3 // EBPFAccessLogMessage.kernelLogs, repeated
	fieldProtocolLog = 4 // EBPFAccessLogMessage.protocolLog
	fieldHTTP        = 1 // AccessLogProtocolLogs.http (oneof protocol)
)

// messageScan is what the receiver counts of one EBPFAccessLogMessage.
type messageScan struct {
	HTTP   bool  // protocolLog carries an http log
	Kernel int64 // number of kernelLogs
}

// Scan walks b, the wire form of one EBPFAccessLogMessage: every top-level
// field and every field of protocolLog must parse.
func (m *messageScan) Scan(b []byte) error {
	*m = messageScan{}
	return walkFields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fieldKernelLogs:
			m.Kernel++
		case fieldProtocolLog:
			return walkFields(v, func(num protowire.Number, _ []byte) error {
				if num == fieldHTTP {
					m.HTTP = true
				}
				return nil
			})
		}
		return nil
	})
}

// walkFields calls f with each length-delimited field of the message b and
// skips the others; it fails on the first field that does not parse.
func walkFields(b []byte, f func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("field tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		if err := f(num, v); err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
		b = b[n:]
	}
	return nil
}
