package http1

// methods are the request methods recognised at the start of a stream or when
// re-synchronising. An unlisted extension method is still parsed inside an
// established HTTP/1 connection; it just does not start one.
var methods = [...]string{
	"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT",
}

// Match is the answer of a prefix test on the first bytes of a stream.
type Match uint8

const (
	No   Match = iota // cannot be this
	More              // a prefix of it: need more bytes to tell
	Yes               // looks like it
)

// LooksLikeRequest tests whether b starts with an HTTP/1 request line:
// a known method, a space and the first byte of a request target.
func LooksLikeRequest(b []byte) Match {
	best := No
	for _, m := range methods {
		switch r := matchPrefix(b, m); r {
		case Yes:
			if len(b) < len(m)+2 {
				best = More
				continue
			}
			if b[len(m)] == ' ' && isTargetStart(b[len(m)+1]) {
				return Yes
			}
		case More:
			best = More
		}
	}
	return best
}

func isTargetStart(c byte) bool {
	return c == '/' || c == '*' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// LooksLikeResponse tests whether b starts with an HTTP/1 status line
// ("HTTP/1.x NNN").
func LooksLikeResponse(b []byte) Match {
	const p = "HTTP/1."
	r := matchPrefix(b, p)
	if r != Yes {
		return r
	}
	if len(b) < 12 {
		return More
	}
	if (b[7] == '0' || b[7] == '1') && b[8] == ' ' && isDigit(b[9]) && isDigit(b[10]) && isDigit(b[11]) {
		return Yes
	}
	return No
}

// matchPrefix reports Yes when b starts with s, More when b is a proper
// prefix of s.
func matchPrefix(b []byte, s string) Match {
	if len(b) >= len(s) {
		if string(b[:len(s)]) == s {
			return Yes
		}
		return No
	}
	if string(b) == s[:len(b)] {
		return More
	}
	return No
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
