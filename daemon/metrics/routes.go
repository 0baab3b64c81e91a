package metrics

import (
	"fmt"
	"strings"
)

// wildcard marks a "{name}" segment; literal segments never contain braces.
const wildcard = "{}"

// route is a compiled route pattern such as "/api/items/{id}".
type route struct {
	pattern  string
	segments []string // wildcard matches any one non-empty segment
	rest     bool     // the last pattern segment was "{name...}"
}

func compileRoutes(patterns []string) ([]route, error) {
	out := make([]route, 0, len(patterns))
	for _, p := range patterns {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("route pattern %q must start with /", p)
		}
		r := route{pattern: p}
		parts := strings.Split(p[1:], "/")
		for i, s := range parts {
			switch {
			case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "...}"):
				if i != len(parts)-1 {
					return nil, fmt.Errorf("route pattern %q: %s must be the last segment", p, s)
				}
				r.rest = true
			case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
				if len(s) < 3 {
					return nil, fmt.Errorf("route pattern %q: empty wildcard name", p)
				}
				r.segments = append(r.segments, wildcard)
			case strings.ContainsAny(s, "{}"):
				return nil, fmt.Errorf("route pattern %q: segment %q mixes text and a wildcard", p, s)
			default:
				r.segments = append(r.segments, s)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// match reports whether path (without query) matches r. It does not
// allocate: segments are walked in place.
func (r *route) match(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	rest := path[1:]
	for i, want := range r.segments {
		seg, after, found := strings.Cut(rest, "/")
		if want == wildcard {
			if seg == "" {
				return false
			}
		} else if seg != want {
			return false
		}
		if !found {
			return i == len(r.segments)-1 && !r.rest
		}
		rest = after
	}
	return r.rest && rest != ""
}

// cleanPath strips the query and fragment and bounds the length.
func cleanPath(p string, maxBytes int) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if p == "" {
		p = "/"
	}
	if len(p) > maxBytes {
		p = p[:maxBytes]
	}
	return p
}
