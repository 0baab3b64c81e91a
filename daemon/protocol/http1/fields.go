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
		name, value := line[:c], trimOWS(line[c+1:])
		switch len(name) {
		case 4:
			if equalFold(name, "host") {
				h.host = value
				continue
			}
		case 7:
			if equalFold(name, "upgrade") {
				h.upgrade = value
				continue
			}
		case 10:
			if equalFold(name, "connection") {
				if containsToken(value, "upgrade") {
					h.connUpgrade = true
				}
				continue
			}
		case 14:
			if equalFold(name, "content-length") {
				n, ok := parseDec(value)
				if !ok || (h.contentLength >= 0 && h.contentLength != n) {
					return false
				}
				h.contentLength = n
				continue
			}
		case 17:
			if equalFold(name, "transfer-encoding") {
				h.chunked = lastTokenIs(value, "chunked")
				continue
			}
		}
		tc.Observe(name, value)
	}
	return true
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
