package metrics

import (
	"net/netip"

	"github.com/weirnet/weir/daemon/protocol/record"
)

// httpSlot is one Step of HTTP exchanges.
type httpSlot struct {
	epoch            int64
	requests, errors uint64
	latSum, latN     uint64 // nanoseconds
	lat              logHist
}

func (s *httpSlot) add(ok bool, lat uint64, hasLat bool) {
	s.requests++
	if !ok {
		s.errors++
	}
	if hasLat {
		s.latSum += lat
		s.latN++
		s.lat.add(lat)
	}
}

// tcpSlot is one Step of kernel TCP activity.
type tcpSlot struct {
	epoch                     int64
	connects, accepts, closes uint64
	bytesSent, bytesRecv      uint64
	retransmits, drops        uint64
	rttSum, rttN              uint64 // nanoseconds
}

// httpRing and tcpRing hold Retention/Step slots; slot e%len holds epoch e
// (a Step index since the Unix epoch) or something older that at()
// recycles.
type (
	httpRing []httpSlot
	tcpRing  []tcpSlot
)

func (r httpRing) at(e int64) *httpSlot {
	s := &r[e%int64(len(r))]
	if s.epoch != e {
		lat := s.lat
		lat.reset()
		*s = httpSlot{epoch: e, lat: lat}
	}
	return s
}

func (r httpRing) get(e int64) *httpSlot {
	if s := &r[e%int64(len(r))]; s.epoch == e {
		return s
	}
	return nil
}

func (r tcpRing) at(e int64) *tcpSlot {
	s := &r[e%int64(len(r))]
	if s.epoch != e {
		*s = tcpSlot{epoch: e}
	}
	return s
}

func (r tcpRing) get(e int64) *tcpSlot {
	if s := &r[e%int64(len(r))]; s.epoch == e {
		return s
	}
	return nil
}

// dropCounts counts drops by kernel reason, with at most max reasons; the
// rest are counted under "other".
type dropCounts map[string]uint64

const otherReason = "other"

// add returns false when the reason did not fit and went to "other".
func (d *dropCounts) add(reason string, n uint64, maxReasons int) bool {
	if *d == nil {
		*d = make(dropCounts, 4)
	}
	if _, ok := (*d)[reason]; ok || len(*d) < maxReasons {
		if !ok {
			reason = cloneString(reason)
		}
		(*d)[reason] += n
		return true
	}
	(*d)[otherReason] += n
	return false
}

// tcpTotals are lifetime TCP counters for Prometheus. For an edge, sent is
// client → server.
type tcpTotals struct {
	connects, connectFailures, accepts, closes uint64
	bytesSent, bytesRecv, pktsSent, pktsRecv   uint64
	retransmits                                uint64
	drops                                      dropCounts
	rtt, connectLat                            promHist
}

// httpTotals are lifetime HTTP counters for Prometheus.
type httpTotals struct {
	requests                   [numMethods][numStatus]uint64
	latency, reqSize, respSize promHist
}

type podKey struct {
	id                       uint32
	namespace, name, service string
}

type podState struct {
	key  podKey
	svc  *serviceState // nil when the service did not fit
	last int64         // epoch of the last activity
	tcp  tcpTotals
	http [3]httpTotals // by event.Role: unknown, client, server
}

type serviceKey struct{ namespace, service string }

type serviceState struct {
	key  serviceKey
	name string // "<service>.<namespace>"
	// selected: the name is a Kubernetes Service selecting the pods (see
	// flow.Pod.Selected), as its latest pod said.
	selected bool
	last     int64
	pods     map[*podState]struct{}
	http     httpRing // server side
	tcp      tcpRing  // all of the service's pods

	endpoints    map[endpointKey]*endpointState
	rawEndpoints int            // endpoints not named by a route pattern
	other        *endpointState // overflow bucket, created on first use
}

type endpointKey struct {
	method methodClass
	path   string
}

type endpointState struct {
	svc       *serviceState
	key       endpointKey
	name      string // "METHOD:path" or "<other>"
	patterned bool
	last      int64
	ring      httpRing
	requests  [numStatus]uint64
	latency   promHist
}

// nodeKey is a topology node: a service, or a remote IP.
type nodeKey struct {
	svc *serviceState
	ip  netip.Addr
}

type edgeKey struct{ client, server nodeKey }

type edgeState struct {
	key   edgeKey
	last  int64
	proto record.Protocol // last HTTP version seen; "" for plain TCP
	tcp   tcpTotals
	http  httpTotals
	hring httpRing
	tring tcpRing
}

// cloneString copies s so a map key does not pin a larger buffer (request
// paths are substrings of parser buffers).
func cloneString(s string) string { return string([]byte(s)) }
