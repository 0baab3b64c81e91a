// Package tracectx extracts distributed-tracing context from HTTP header
// fields: SkyWalking sw8, W3C traceparent and Zipkin B3 (single b3 header and
// the X-B3-* family).
//
// Parsers in sibling packages feed it every header field of a request as they
// decode it, so a record can be joined to the trace that caused it. Trace
// headers come from untrusted peers: a malformed value is ignored and counted,
// never turned into an error, because losing the HTTP record over a broken
// trace header would be worse than not linking it.
package tracectx

import (
	"encoding/base64"
	"strconv"
)

// Kind names the propagation format a Context was read from.
type Kind string

const (
	KindNone        Kind = ""
	KindSW8         Kind = "sw8"
	KindTraceparent Kind = "traceparent"
	KindB3          Kind = "b3"
)

// MaxValueLen bounds the length of a trace header value that is considered at
// all. Real values are well under 300 bytes (sw8 with long endpoint names is
// the largest); anything longer is treated as malformed rather than copied.
const MaxValueLen = 1024

// Context is the trace context carried by one request.
//
// SpanID is, for every format, the id of the span that sent the request (the
// caller's span): sw8's parent span id, traceparent's parent-id, B3's SpanId.
type Context struct {
	Kind    Kind
	TraceID string // sw8: decoded trace id; traceparent/B3: lower-case hex
	// SegmentID is sw8's parent trace segment id (decoded); empty otherwise.
	SegmentID    string
	SpanID       string
	ParentSpanID string // B3 only
	Sampled      bool
	Raw          string // the header value as received (B3 multi: the X-B3-TraceId value)
}

// Collector gathers the trace headers of one message. The zero value is
// ready; Reset makes it reusable. It keeps only the values of headers it
// recognises, so feeding it every header of a message costs a length switch
// per field.
type Collector struct {
	sw8, traceparent, b3                     string
	b3TraceID, b3SpanID, b3Parent, b3Sampled string
	b3Flags                                  string
	seen                                     uint16
}

const (
	seenSW8 = 1 << iota
	seenTraceparent
	seenB3
	seenB3Multi
)

// Reset clears the collector for the next message. Every header kept sets
// seen, so a collector that saw none is clear already: most messages carry
// no trace header, and clearing the strings again would cost write
// barriers per message while the garbage collector runs.
func (c *Collector) Reset() {
	if c.seen != 0 {
		*c = Collector{}
	}
}

// Empty reports whether the collector kept no trace header since its
// last Reset, so that Result would return the zero Context: what most
// messages carry, answered without Result's work.
func (c *Collector) Empty() bool { return c.seen == 0 }

// Observe offers one header field. name may be in any case. It reports
// whether the field was a trace header (and was kept).
func (c *Collector) Observe(name, value []byte) bool {
	switch len(name) {
	case 2:
		if !equalFold(name, "b3") {
			return false
		}
		c.b3 = keep(value)
		c.seen |= seenB3
	case 3:
		if !equalFold(name, "sw8") {
			return false
		}
		c.sw8 = keep(value)
		c.seen |= seenSW8
	case 11:
		switch {
		case equalFold(name, "traceparent"):
			c.traceparent = keep(value)
			c.seen |= seenTraceparent
		case equalFold(name, "x-b3-spanid"):
			c.b3SpanID = keep(value)
			c.seen |= seenB3Multi
		default:
			return false
		}
	case 10:
		if !equalFold(name, "x-b3-flags") {
			return false
		}
		c.b3Flags = keep(value)
		c.seen |= seenB3Multi
	case 12:
		switch {
		case equalFold(name, "x-b3-traceid"):
			c.b3TraceID = keep(value)
		case equalFold(name, "x-b3-sampled"):
			c.b3Sampled = keep(value)
		default:
			return false
		}
		c.seen |= seenB3Multi
	case 17:
		if !equalFold(name, "x-b3-parentspanid") {
			return false
		}
		c.b3Parent = keep(value)
		c.seen |= seenB3Multi
	default:
		return false
	}
	return true
}

func keep(v []byte) string {
	if len(v) > MaxValueLen {
		// Keep a marker that cannot parse, so Result counts it malformed.
		return "\x00"
	}
	return string(v)
}

// Result returns the trace context of the message, preferring sw8 (Weir
// exports to SkyWalking), then traceparent, then B3. malformed is the number
// of trace headers that were present but could not be parsed; the caller
// counts them.
func (c *Collector) Result() (ctx Context, malformed int) {
	if c.seen == 0 {
		return Context{}, 0
	}
	found := false
	try := func(ok bool, got Context) {
		if !ok {
			malformed++
			return
		}
		if !found && got.Kind != KindNone {
			ctx, found = got, true
		}
	}
	if c.seen&seenSW8 != 0 {
		got, ok := ParseSW8(c.sw8)
		try(ok, got)
	}
	if c.seen&seenTraceparent != 0 {
		got, ok := ParseTraceparent(c.traceparent)
		try(ok, got)
	}
	if c.seen&seenB3 != 0 {
		got, ok := ParseB3(c.b3)
		try(ok, got)
	}
	if c.seen&seenB3Multi != 0 {
		got, ok := ParseB3Multi(c.b3TraceID, c.b3SpanID, c.b3Parent, c.b3Sampled, c.b3Flags)
		try(ok, got)
	}
	return ctx, malformed
}

// ParseSW8 parses a SkyWalking v3 propagation header:
// sample-traceId-segmentId-spanId-service-instance-endpoint-peer where every
// field except sample and spanId is base64 encoded.
func ParseSW8(v string) (Context, bool) {
	var f [8]string
	n := 0
	start := 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == '-' {
			if n == len(f) {
				return Context{}, false
			}
			f[n] = v[start:i]
			n++
			start = i + 1
		}
	}
	if n != len(f) || (f[0] != "0" && f[0] != "1") {
		return Context{}, false
	}
	traceID, ok := b64(f[1])
	if !ok || traceID == "" {
		return Context{}, false
	}
	segID, ok := b64(f[2])
	if !ok || segID == "" {
		return Context{}, false
	}
	if _, err := strconv.ParseUint(f[3], 10, 31); err != nil {
		return Context{}, false
	}
	for _, s := range f[4:] {
		if _, ok := b64(s); !ok || s == "" {
			return Context{}, false
		}
	}
	return Context{Kind: KindSW8, TraceID: traceID, SegmentID: segID, SpanID: f[3], Sampled: f[0] == "1", Raw: v}, true
}

func b64(s string) (string, bool) {
	if s == "" {
		return "", true
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// ParseTraceparent parses a W3C Trace Context traceparent header
// (version-traceid-parentid-flags). Future versions are accepted when their
// first four fields have the version 00 shape, as the spec asks.
func ParseTraceparent(v string) (Context, bool) {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return Context{}, false
	}
	ver := v[0:2]
	if !isHex(ver) || ver == "ff" || (ver == "00" && len(v) != 55) || (len(v) > 55 && v[55] != '-') {
		return Context{}, false
	}
	trace, span, flags := v[3:35], v[36:52], v[53:55]
	if !isHex(trace) || !isHex(span) || !isHex(flags) || allZero(trace) || allZero(span) {
		return Context{}, false
	}
	f, _ := strconv.ParseUint(flags, 16, 8)
	return Context{Kind: KindTraceparent, TraceID: trace, SpanID: span, Sampled: f&1 == 1, Raw: v}, true
}

// ParseB3 parses the Zipkin single b3 header:
// {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]] or a lone sampling
// state, which carries no ids and is treated as absent (ok, zero Context).
func ParseB3(v string) (Context, bool) {
	if v == "0" || v == "1" || v == "d" {
		return Context{}, true
	}
	var f [4]string
	n, start := 0, 0
	for i := 0; i <= len(v); i++ {
		if i == len(v) || v[i] == '-' {
			if n == len(f) {
				return Context{}, false
			}
			f[n] = v[start:i]
			n++
			start = i + 1
		}
	}
	if n < 2 || !traceIDOK(f[0]) || !spanIDOK(f[1]) {
		return Context{}, false
	}
	ctx := Context{Kind: KindB3, TraceID: f[0], SpanID: f[1], Sampled: true, Raw: v}
	if n >= 3 {
		switch f[2] {
		case "1", "d":
		case "0":
			ctx.Sampled = false
		default:
			return Context{}, false
		}
	}
	if n == 4 {
		if !spanIDOK(f[3]) {
			return Context{}, false
		}
		ctx.ParentSpanID = f[3]
	}
	return ctx, true
}

// ParseB3Multi parses the X-B3-* header family. TraceId and SpanId are
// required; absent sampling means "sampled" as Zipkin's default propagation
// does not distinguish it from deferral at this layer.
func ParseB3Multi(traceID, spanID, parent, sampled, flags string) (Context, bool) {
	if !traceIDOK(traceID) || !spanIDOK(spanID) || (parent != "" && !spanIDOK(parent)) {
		return Context{}, false
	}
	ctx := Context{Kind: KindB3, TraceID: traceID, SpanID: spanID, ParentSpanID: parent, Sampled: true, Raw: traceID}
	switch sampled {
	case "", "1", "true":
	case "0", "false":
		ctx.Sampled = false
	default:
		return Context{}, false
	}
	if flags == "1" {
		ctx.Sampled = true
	}
	return ctx, true
}

func traceIDOK(s string) bool { return (len(s) == 16 || len(s) == 32) && isHex(s) && !allZero(s) }
func spanIDOK(s string) bool  { return len(s) == 16 && isHex(s) && !allZero(s) }

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return len(s) > 0
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// equalFold compares b case-insensitively with the lower-case ASCII string s.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
