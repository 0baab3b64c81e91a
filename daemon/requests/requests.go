// Package requests keeps the latest HTTP exchanges the pipeline parsed, in
// a bounded ring, and serves them as GET /api/v1/requests.
package requests

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/protocol/record"
)

// DefaultLimit is how many requests the API returns without limit=.
const DefaultLimit = 100

// Ring keeps the latest exchanges for the API. Identities are
// resolved once, at insertion, which keeps the entry correct even after
// the pod is gone; an entry is otherwise kept compact (the connection's
// identity shared by its exchanges, times in the event clock) and turned
// into the API's form when read: the ring is written for every exchange
// and scanned by every garbage collection, and is read rarely.
type Ring struct {
	boot time.Time // wall-clock time of the event clock's zero

	mu      sync.Mutex
	entries []entry
	next    int
	full    bool
	// overwritten counts entries pushed out by newer ones.
	overwritten atomic.Uint64
}

// Overwritten counts the exchanges pushed out of the ring by newer ones.
func (r *Ring) Overwritten() uint64 { return r.overwritten.Load() }

// entry is one exchange in the ring: what wire.Request shows of it.
type entry struct {
	conn                *Conn
	protocol            record.Protocol
	method, path, host  string
	traceID             string
	reqStart, respEnd   event.Timestamp
	status              int
	grpcStatus          int // -1 when absent
	reqBytes, respBytes uint64
	incomplete          bool
}

// NewRing returns a ring of n exchanges (at least one) whose event
// timestamps count from boot.
func NewRing(n int, boot time.Time) *Ring {
	return &Ring{boot: boot, entries: make([]entry, max(n, 1))}
}

// Add keeps exchange rec of the connection shown as sc, which must not
// change afterwards.
func (r *Ring) Add(sc *Conn, rec *record.Record) {
	r.mu.Lock()
	if r.full {
		r.overwritten.Add(1)
	}
	r.entries[r.next] = entry{
		conn:       sc,
		protocol:   rec.Protocol,
		method:     rec.Method,
		path:       rec.Path,
		host:       rec.Host,
		traceID:    rec.Trace.TraceID,
		reqStart:   rec.ReqStart,
		respEnd:    rec.RespEnd,
		status:     rec.Status,
		grpcStatus: rec.GRPCStatus,
		reqBytes:   rec.ReqHeaderBytes + rec.ReqBodyBytes,
		respBytes:  rec.RespHeaderBytes + rec.RespBodyBytes,
		incomplete: rec.Incomplete,
	}
	r.next++
	if r.next == len(r.entries) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Latest returns up to limit entries of pod ("" for all), newest first.
func (r *Ring) Latest(pod string, limit int) []wire.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.entries)
	}
	out := make([]wire.Request, 0, min(limit, n))
	for i := 1; i <= n && len(out) < limit; i++ {
		e := &r.entries[(r.next-i+len(r.entries))%len(r.entries)]
		if pod == "" || e.conn.pod == pod {
			out = append(out, e.request(r.boot))
		}
	}
	return out
}

// Conn is a connection's identity as the API shows it. It is formatted
// once per flow.Connection value (they are immutable) rather than for every
// exchange, and shared by the entries of its exchanges.
type Conn struct {
	conn         *flow.Connection
	pod, peerPod string
	peer         string // remote address, "" when unknown
	role         string
	id           uint64
}

// Show formats fc's identity.
func Show(fc *flow.Connection) *Conn {
	sc := &Conn{
		conn:    fc,
		pod:     podName(fc.Local.Pod),
		peerPod: podName(fc.Remote.Pod),
		role:    fc.Role.String(),
		id:      uint64(fc.ID),
	}
	if fc.Remote.Addr.IsValid() {
		sc.peer = fc.Remote.Addr.String()
	}
	return sc
}

// Flow returns the connection value c was formatted from.
func (c *Conn) Flow() *flow.Connection { return c.conn }

// request returns the entry as the API shows it.
func (e *entry) request(boot time.Time) wire.Request {
	req := wire.Request{
		Time:         e.reqStart.Time(boot),
		Pod:          e.conn.pod,
		Peer:         e.conn.peer,
		PeerPod:      e.conn.peerPod,
		Role:         e.conn.role,
		Protocol:     string(e.protocol),
		Method:       e.method,
		Path:         e.path,
		Host:         e.host,
		Status:       e.status,
		ReqBytes:     e.reqBytes,
		RespBytes:    e.respBytes,
		TraceID:      e.traceID,
		Incomplete:   e.incomplete,
		ConnectionID: e.conn.id,
	}
	if e.grpcStatus >= 0 {
		s := e.grpcStatus
		req.GRPCStatus = &s
	}
	if e.respEnd > e.reqStart {
		req.LatencyMs = float64(e.respEnd-e.reqStart) / float64(time.Millisecond)
	}
	return req
}

// Handler serves GET /api/v1/requests?pod=NS/NAME&limit=N from r; keep is
// the ring's size (requests.keep), the largest limit accepted.
func Handler(r *Ring, keep int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		pod, limit, err := parseQuery(req, keep)
		if err != nil {
			wire.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		wire.WriteJSON(w, http.StatusOK, r.Latest(pod, limit))
	})
}

func parseQuery(r *http.Request, keep int) (pod string, limit int, err error) {
	limit = min(DefaultLimit, keep)
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

// Len returns how many exchanges the ring holds.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.full {
		return len(r.entries)
	}
	return r.next
}

// podName formats a pod as "namespace/name" ("" for nil), the way the API
// and the CLI show pods.
func podName(p *flow.Pod) string {
	if p == nil {
		return ""
	}
	if p.Name == "" {
		return p.Service
	}
	return strings.Join([]string{p.Namespace, p.Name}, "/")
}
