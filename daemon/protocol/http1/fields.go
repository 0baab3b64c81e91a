package http1

import (
	"bytes"

	"github.com/weirnet/weir/daemon/protocol/tracectx"
)

// fields is what the parser needs from a header section: the framing fields
// and the few it reports. Slices point into the section being parsed.
type fields struct {
	contentLength int64 // -1 when absent
	chunked       bool
	host          []byte
	upgrade       []byte
	connUpgrade   bool
	// lineLF is the index of the start line's LF: scanHead found it, so
	// the parser need not look for it again.
	lineLF int
}

// parse reads field lines up to and including the blank line. It reports
// false for a section that cannot be framed safely (conflicting or invalid
// Content-Length, a field line without a colon).
func (h *fields) parse(b []byte, tc *tracectx.Collector) bool {
	h.contentLength = -1
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return false
		}
		line := trimCR(b[:i])
		b = b[i+1:]
		if len(line) == 0 {
			return true
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // obsolete line folding: continuation of a field we ignore
		}
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			return false
		}
		if !h.field(line[:c], trimOWS(line[c+1:]), tc) {
			return false
		}
	}
	return true
}

// scanHead is sectionEnd and parse in one pass, for what nearly every
// message is: a whole header section at the start of b, every line of it
// ending in CRLF, no line folded. It skips the start line, parses the field
// lines as parse does and returns the section's length through its blank
// line. For anything else (no complete section yet, a bare LF, a folded or
// malformed line) it returns -1, perhaps having offered some fields to tc,
// and the caller takes the general path, sectionEnd then parse, which
// agrees with scanHead wherever scanHead succeeds (FuzzScanHead checks it).
//
// It looks for each line's end once, where the general path searches every
// line twice for its LF and once more for its colon; names are short, so
// the colon is found by a plain loop.
func (h *fields) scanHead(b []byte, tc *tracectx.Collector) int {
	i := bytes.IndexByte(b, '\n')
	*h = fields{contentLength: -1, lineLF: i}
	if i < 2 || b[i-1] != '\r' {
		return -1
	}
	for i++; ; {
		// b[i:] starts a line.
		if i >= len(b) || b[i] == ' ' || b[i] == '\t' {
			return -1
		}
		if b[i] == '\r' {
			if i+1 < len(b) && b[i+1] == '\n' {
				return i + 2
			}
			return -1
		}
		c := i
		for c < len(b) && b[c] != ':' && b[c] != '\n' {
			c++
		}
		if c >= len(b) || b[c] != ':' || c == i {
			return -1
		}
		j := bytes.IndexByte(b[c+1:], '\n')
		if j < 0 {
			return -1
		}
		e := c + 1 + j // the line's LF
		if b[e-1] != '\r' {
			return -1
		}
		if !h.field(b[i:c], trimOWS(b[c+1:e-1]), tc) {
			return -1
		}
		i = e + 1
	}
}

// field takes one field line's name and value (without surrounding
// whitespace). It reports false for a Content-Length that is invalid or
// conflicts with an earlier one.
func (h *fields) field(name, value []byte, tc *tracectx.Collector) bool {
	switch len(name) {
	case 4:
		if isName(name, "Host", "host") {
			h.host = value
			return true
		}
	case 7:
		if isName(name, "Upgrade", "upgrade") {
			h.upgrade = value
			return true
		}
	case 10:
		if isName(name, "Connection", "connection") {
			if containsToken(value, "upgrade") {
				h.connUpgrade = true
			}
			return true
		}
	case 14:
		if isName(name, "Content-Length", "content-length") {
			n, ok := parseDec(value)
			if !ok || (h.contentLength >= 0 && h.contentLength != n) {
				return false
			}
			h.contentLength = n
			return true
		}
	case 17:
		if isName(name, "Transfer-Encoding", "transfer-encoding") {
			h.chunked = lastTokenIs(value, "chunked")
			return true
		}
	}
	tc.Observe(name, value)
	return true
}

// isName reports whether name is the field name lower (lower-case ASCII),
// in any case. canon is its usual spelling ("Content-Length"), which most
// senders use: a plain comparison answers it in a word or two, before the
// byte-by-byte case-insensitive one.
func isName(name []byte, canon, lower string) bool {
	return string(name) == canon || equalFold(name, lower)
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func parseDec(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// containsToken reports whether the comma-separated list v holds tok
// (case-insensitive).
func containsToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var t []byte
		if i < 0 {
			t, v = v, nil
		} else {
			t, v = v[:i], v[i+1:]
		}
		if equalFold(trimOWS(t), tok) {
			return true
		}
	}
	return false
}

func lastTokenIs(v []byte, tok string) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return equalFold(trimOWS(v), tok)
}

// equalFold compares b case-insensitively with the lower-case ASCII s.
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
