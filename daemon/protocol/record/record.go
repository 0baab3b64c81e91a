// Package record defines what Weir's protocol parsers produce — one Record per
// HTTP exchange — and the bounds and counters they share.
//
// It is separate from package protocol so that the per-protocol parsers
// (http1, http2) and the dispatcher that drives them can all use the same
// types without an import cycle. Callers normally use the aliases exported by
// package protocol.
package record

import (
	"fmt"
	"sync/atomic"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/protocol/tracectx"
)

// Protocol is the application protocol version of a record.
type Protocol string

const (
	HTTP10 Protocol = "HTTP/1.0"
	HTTP11 Protocol = "HTTP/1.1"
	HTTP2  Protocol = "HTTP/2"
)

// Record is one request/response exchange.
//
// Sizes are exact whenever the message framing was seen, even if the bytes
// themselves were not captured. Header sizes are the wire size of the header
// section: for HTTP/1 the start line, fields and blank line (of the final
// response and any interim 1xx responses); for HTTP/2 every HEADERS/CONTINUATION frame of the stream in that
// direction, frame headers included. Body sizes are the wire size of the
// message body for HTTP/1 (chunk framing and trailers included) and the DATA payload
// without padding for HTTP/2.
//
// Timestamps come from the syscalls that moved the bytes: ReqStart is the
// start of the syscall that carried the first byte of the request, RespEnd the
// end of the one that carried the last byte of the response.
//
// Offsets place the exchange in the connection's byte streams, the request
// in the request direction's and the response in the response direction's
// (the stream offsets of package capture): [ReqOff, ReqEndOff) holds the
// request's bytes and [RespOff, RespEndOff) the response's. A range starts
// at its message's first byte (HTTP/1 start line, HTTP/2 first HEADERS
// frame) and ends past its last (HTTP/2: the frame that ended the stream in
// that direction; HTTP/1: the end of the bytes delivered with the last byte,
// so at most the end of that syscall's chunk). A range whose end is not
// past its start was not seen (a response without its request, a request
// pushed by the server), and claims no bytes.
type Record struct {
	Protocol Protocol
	Method   string
	Path     string
	Host     string // Host header or :authority
	Scheme   string // :scheme (HTTP/2 only)
	Status   int    // final status; 0 when no response was seen

	GRPC        bool   // content-type application/grpc*
	GRPCStatus  int    // grpc-status, -1 when absent
	GRPCMessage string // grpc-message, percent-decoded, bounded

	StreamID uint32 // HTTP/2 stream; 0 for HTTP/1

	ReqHeaderBytes, ReqBodyBytes   uint64
	RespHeaderBytes, RespBodyBytes uint64

	ReqStart, ReqEnd, RespStart, RespEnd event.Timestamp

	ReqOff, ReqEndOff, RespOff, RespEndOff uint64

	Trace tracectx.Context

	// Incomplete is set when some part of the exchange was lost: bytes not
	// captured where they mattered, a request without a response at close, or
	// decoder state lost. Fields that were seen are still reported.
	Incomplete bool
	// Reset is set when an HTTP/2 stream ended with RST_STREAM (ResetCode is
	// its error code) or was refused by GOAWAY.
	Reset     bool
	ResetCode uint32
	// UnknownFields names header fields that were present but whose value
	// could not be decoded (HTTP/2 with lost HPACK state). A field whose
	// name was lost too is listed as "?".
	UnknownFields []string
}

// Limits bounds the memory one connection may hold. A connection that hits a
// limit stops being parsed (it degrades to plain TCP) rather than growing; the
// hit is counted in Stats.
type Limits struct {
	// MaxHeaderBytes bounds one header section: an HTTP/1 start line plus
	// fields, or an HTTP/2 header block (HEADERS + CONTINUATION).
	MaxHeaderBytes int
	// MaxStreams bounds concurrently open HTTP/2 streams per connection.
	MaxStreams int
	// MaxPending bounds HTTP/1 requests awaiting their response (pipelining).
	MaxPending int
	// MaxBuffered bounds bytes held per direction for a partial unit (HTTP/1
	// header section or chunk line, HTTP/2 non-DATA frame).
	MaxBuffered int
	// MaxHPACKTable bounds the HPACK dynamic table size a peer may announce.
	MaxHPACKTable int
}

// DefaultLimits returns limits that fit ordinary traffic with room to spare:
// 64 KiB header sections (above nginx's and Go's defaults), 256 streams
// (above the common 100/128 SETTINGS_MAX_CONCURRENT_STREAMS), 64 pipelined
// requests, 256 KiB buffered per direction and 64 KiB HPACK tables.
func DefaultLimits() Limits {
	return Limits{
		MaxHeaderBytes: 64 << 10,
		MaxStreams:     256,
		MaxPending:     64,
		MaxBuffered:    256 << 10,
		MaxHPACKTable:  64 << 10,
	}
}

// Validate reports the first limit that is unusable.
func (l Limits) Validate() error {
	switch {
	case l.MaxHeaderBytes < 256:
		return fmt.Errorf("limits: MaxHeaderBytes %d is below the minimum 256", l.MaxHeaderBytes)
	case l.MaxStreams < 1:
		return fmt.Errorf("limits: MaxStreams %d must be at least 1", l.MaxStreams)
	case l.MaxPending < 1:
		return fmt.Errorf("limits: MaxPending %d must be at least 1", l.MaxPending)
	case l.MaxBuffered < l.MaxHeaderBytes:
		return fmt.Errorf("limits: MaxBuffered %d must be at least MaxHeaderBytes %d", l.MaxBuffered, l.MaxHeaderBytes)
	case l.MaxHPACKTable < 0:
		return fmt.Errorf("limits: MaxHPACKTable %d is negative", l.MaxHPACKTable)
	}
	return nil
}

// Stats counts what the parsers did and every bound they hit. One Stats is
// normally shared by all connections of a daemon; all fields are atomic so it
// can be read while parsers run.
type Stats struct {
	Records    atomic.Uint64 // records emitted
	Incomplete atomic.Uint64 // records emitted with Incomplete set

	HeaderLimit   atomic.Uint64 // header section over MaxHeaderBytes
	StreamLimit   atomic.Uint64 // HTTP/2 stream over MaxStreams
	PendingLimit  atomic.Uint64 // HTTP/1 request over MaxPending
	BufferLimit   atomic.Uint64 // partial unit over MaxBuffered
	HPACKLimit    atomic.Uint64 // HPACK table size over MaxHPACKTable
	DegradedToTCP atomic.Uint64 // connections (or directions) that stopped being parsed

	HTTP1Resyncs atomic.Uint64 // HTTP/1 direction re-synchronised after lost or bad bytes
	// HTTP1Discarded counts message-start candidates an unsynchronised
	// HTTP/1 direction refused: a chunk that looked like a start line but
	// could not be proven to be one (no turn taken, ambiguous pairing,
	// not at a syscall boundary) or did not parse. Bytes that look like
	// requests inside a body end up here, never as records.
	HTTP1Discarded atomic.Uint64
	// HTTP1UnsyncedBytes counts bytes an HTTP/1 direction ignored while it
	// was looking for a provable message start.
	HTTP1UnsyncedBytes atomic.Uint64
	// HTTP1LostResponses counts HTTP/1 requests whose response was lost
	// while the response direction was unsynchronised; they are emitted
	// as incomplete records without a status.
	HTTP1LostResponses atomic.Uint64
	// HTTP2Dropped counts HTTP/2 streams not emitted because a field of
	// their record (method, path, status, grpc-status) could be wrong or
	// missing: decoded with HPACK state lost, after a guessed frame
	// boundary, or with a header block or frame sync lost while open.
	HTTP2Dropped atomic.Uint64
	// BodyHints counts HTTP/1 body ranges handed to the capture layer to
	// be sent size-only; BodyHintErrors those it refused.
	BodyHints, BodyHintErrors atomic.Uint64
	HTTP2FrameLost            atomic.Uint64 // HTTP/2 direction lost frame sync
	HTTP2Resyncs              atomic.Uint64 // HTTP/2 direction re-synchronised on a frame boundary
	HPACKStateLost            atomic.Uint64 // HPACK decoder state lost (gap inside a header block)
	ProtocolErrors            atomic.Uint64 // malformed protocol units (not counting lost bytes)
	TraceMalformed            atomic.Uint64 // trace headers present but unparsable
	UnknownProtocol           atomic.Uint64 // connections classified as plain TCP
}

// Finish does the bookkeeping every emitted record shares and hands it to
// sink.
func (s *Stats) Finish(r *Record, sink func(*Record)) {
	s.Records.Add(1)
	if r.Incomplete {
		s.Incomplete.Add(1)
	}
	sink(r)
}
