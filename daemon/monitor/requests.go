package monitor

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol"
)

// DefaultRequestsLimit is how many requests the API returns without limit=.
const DefaultRequestsLimit = 100

// requestRing keeps the latest exchanges for the API, as the API shows
// them: resolving identities once, at insertion, keeps reads cheap and the
// entry correct even after the pod is gone.
type requestRing struct {
	mu      sync.Mutex
	entries []api.Request
	next    int
	full    bool
	// overwritten counts entries pushed out by newer ones.
	overwritten atomic.Uint64
}

func newRequestRing(n int) *requestRing {
	return &requestRing{entries: make([]api.Request, max(n, 1))}
}

func (r *requestRing) add(req api.Request) {
	r.mu.Lock()
	if r.full {
		r.overwritten.Add(1)
	}
	r.entries[r.next] = req
	r.next++
	if r.next == len(r.entries) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// latest returns up to limit entries of pod ("" for all), newest first.
func (r *requestRing) latest(pod string, limit int) []api.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.entries)
	}
	out := make([]api.Request, 0, min(limit, n))
	for i := 1; i <= n && len(out) < limit; i++ {
		e := r.entries[(r.next-i+len(r.entries))%len(r.entries)]
		if pod == "" || e.Pod == pod {
			out = append(out, e)
		}
	}
	return out
}

func requestOf(fc *flow.Connection, r *protocol.Record, boot time.Time) api.Request {
	req := api.Request{
		Time:         r.ReqStart.Time(boot),
		Pod:          podName(fc.Local.Pod),
		Role:         fc.Role.String(),
		Protocol:     string(r.Protocol),
		Method:       r.Method,
		Path:         r.Path,
		Host:         r.Host,
		Status:       r.Status,
		ReqBytes:     r.ReqHeaderBytes + r.ReqBodyBytes,
		RespBytes:    r.RespHeaderBytes + r.RespBodyBytes,
		TraceID:      r.Trace.TraceID,
		Incomplete:   r.Incomplete,
		ConnectionID: uint64(fc.ID),
	}
	if fc.Remote.Addr.IsValid() {
		req.Peer = fc.Remote.Addr.String()
	}
	req.PeerPod = podName(fc.Remote.Pod)
	if r.GRPCStatus >= 0 {
		s := r.GRPCStatus
		req.GRPCStatus = &s
	}
	if r.RespEnd > r.ReqStart {
		req.LatencyMs = float64(r.RespEnd-r.ReqStart) / float64(time.Millisecond)
	}
	return req
}

// serveRequests serves GET /api/v1/requests?pod=NS/NAME&limit=N.
func (m *Monitor) serveRequests(w http.ResponseWriter, r *http.Request) {
	pod, limit, err := parseRequestsQuery(r, m.cfg.Requests.Keep)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	api.WriteJSON(w, http.StatusOK, m.requests.latest(pod, limit))
}

func parseRequestsQuery(r *http.Request, keep int) (pod string, limit int, err error) {
	limit = min(DefaultRequestsLimit, keep)
	for k, v := range r.URL.Query() {
		if len(v) != 1 {
			return "", 0, fmt.Errorf("parameter %q given %d times, want once", k, len(v))
		}
		switch k {
		case "pod":
			ns, name, ok := strings.Cut(v[0], "/")
			if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
				return "", 0, fmt.Errorf("parameter pod=%q: want NAMESPACE/NAME", v[0])
			}
			pod = v[0]
		case "limit":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > keep {
				return "", 0, fmt.Errorf("parameter limit=%q: want an integer from 1 to %d (requests.keep)", v[0], keep)
			}
			limit = n
		default:
			return "", 0, fmt.Errorf("unknown parameter %q (known: pod, limit)", k)
		}
	}
	return pod, limit, nil
}

func (r *requestRing) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full {
		return len(r.entries)
	}
	return r.next
}
