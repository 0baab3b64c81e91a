package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/capture"
)

// MaxListLimit bounds the limit parameter of the connections API.
const MaxListLimit = 100000

// DefaultListLimit is the number of connections returned without limit=.
const DefaultListLimit = 1000

// ConnectionLister is where /api/v1/connections reads from: the capture
// table.
type ConnectionLister interface {
	Connections(capture.Filter) []wire.ConnInfo
}

// ConnectionsHandler serves GET /api/v1/connections?pod=NS/NAME&state=open|closed&limit=N
// from src as a JSON array of wire.ConnInfo, newest first. Invalid parameters
// get 400 with a JSON {"error": "..."} body naming the parameter.
func ConnectionsHandler(src ConnectionLister, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serveConnections(src, log, w, r) })
}

func serveConnections(src ConnectionLister, log *slog.Logger, w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		wire.WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed", r.Method))
		return
	}
	f, err := parseFilter(r)
	if err != nil {
		wire.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	conns := src.Connections(f)
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(conns); err != nil {
		log.Debug("writing connections response", "err", err)
	}
}

// parseFilter validates the query of a connections request.
func parseFilter(r *http.Request) (capture.Filter, error) {
	q := r.URL.Query()
	f := capture.Filter{Limit: DefaultListLimit}
	for k, v := range q {
		if len(v) != 1 {
			return f, fmt.Errorf("parameter %q given %d times, want once", k, len(v))
		}
		switch k {
		case "pod":
			ns, name, ok := strings.Cut(v[0], "/")
			if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
				return f, fmt.Errorf("parameter pod=%q: want NAMESPACE/NAME", v[0])
			}
			f.Namespace, f.Pod = ns, name
		case "state":
			if v[0] != "open" && v[0] != "closed" {
				return f, fmt.Errorf("parameter state=%q: want open or closed", v[0])
			}
			f.State = v[0]
		case "limit":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > MaxListLimit {
				return f, fmt.Errorf("parameter limit=%q: want an integer from 1 to %d", v[0], MaxListLimit)
			}
			f.Limit = n
		default:
			return f, fmt.Errorf("unknown parameter %q (known: pod, state, limit)", k)
		}
	}
	return f, nil
}
