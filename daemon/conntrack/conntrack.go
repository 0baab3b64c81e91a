// Package conntrack finds the peer a client connection really reaches when
// its destination was translated by the kernel's NAT, as kube-proxy's DNAT
// of a Service ClusterIP to a backend pod is.
//
// A monitored client connects to 10.96.0.10:80; the socket's remote stays
// that ClusterIP for the connection's life, but the packets go to a pod.
// SkyWalking's OAP resolves a ClusterIP to a Service with no pod, so the
// client-side instance relations it draws from such a connection are empty.
// The real peer is the source of the reply direction of the connection's
// conntrack entry, which this package reads with one netlink
// IPCTNL_MSG_CT_GET of the original tuple (not a table dump), and caches.
package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// DefaultCacheSize bounds the translations a Resolver keeps.
const DefaultCacheSize = 16384

// Tuple is a TCP connection as its client's socket sees it.
type Tuple struct {
	Local, Remote netip.AddrPort
}

// Resolver looks up and caches the peers behind translated destinations.
// It is safe for concurrent use.
type Resolver struct {
	lookup func(Tuple) (netip.AddrPort, error)
	max    int

	mu    sync.Mutex
	cache map[Tuple]netip.AddrPort

	hits, translated, untranslated, missing, failed, evicted atomic.Uint64
}

// New returns a Resolver that reads the conntrack table of the calling
// process's network namespace (the host's, where kube-proxy's rules
// translate pod traffic) and keeps at most cacheSize answers (0: default).
func New(cacheSize int) *Resolver {
	return newResolver(cacheSize, Lookup)
}

// NewFunc returns a Resolver that asks lookup instead of the kernel (for
// tests of its users, and other namespaces).
func NewFunc(cacheSize int, lookup func(Tuple) (netip.AddrPort, error)) *Resolver {
	return newResolver(cacheSize, lookup)
}

func newResolver(cacheSize int, lookup func(Tuple) (netip.AddrPort, error)) *Resolver {
	if cacheSize <= 0 {
		cacheSize = DefaultCacheSize
	}
	return &Resolver{lookup: lookup, max: cacheSize, cache: make(map[Tuple]netip.AddrPort)}
}

// Peer returns the address the connection t really reaches: the reply
// tuple's source when conntrack translated t's destination, else t.Remote.
// A connection conntrack has no entry for (not tracked, or its entry
// already expired) also gets t.Remote; that fallback is counted
// (Stats.Missing), as are failures.
func (r *Resolver) Peer(t Tuple) netip.AddrPort {
	r.mu.Lock()
	p, ok := r.cache[t]
	r.mu.Unlock()
	if ok {
		r.hits.Add(1)
		return p
	}
	// Every answer is cached, fallbacks included: conntrack makes its
	// entry at the connection's first packet, so one missing now stays
	// missing, and a lookup that failed (no permission, no conntrack)
	// would fail again for every batch.
	p, err := r.lookup(t)
	switch {
	case errors.Is(err, ErrNotFound):
		r.missing.Add(1)
		p = t.Remote
	case err != nil:
		r.failed.Add(1)
		p = t.Remote
	case p == t.Remote:
		r.untranslated.Add(1)
	default:
		r.translated.Add(1)
	}
	r.mu.Lock()
	if len(r.cache) >= r.max {
		// Connections are many and short-lived: dropping the whole cache
		// at its bound costs one lookup per live connection, and needs
		// no per-entry bookkeeping.
		r.evicted.Add(uint64(len(r.cache)))
		clear(r.cache)
	}
	r.cache[t] = p
	r.mu.Unlock()
	return p
}

// Forget drops t's cached answer (its connection closed).
func (r *Resolver) Forget(t Tuple) {
	r.mu.Lock()
	delete(r.cache, t)
	r.mu.Unlock()
}

// Stats counts the Resolver's lookups by outcome.
type Stats struct {
	Hits         uint64 // answered from the cache
	Translated   uint64 // looked up: the destination was translated
	Untranslated uint64 // looked up: conntrack kept the destination
	Missing      uint64 // no conntrack entry: the socket's remote was used
	Failed       uint64 // the lookup failed: the socket's remote was used
	Evicted      uint64 // cached answers dropped at the cache's bound
	Cached       int
}

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	n := len(r.cache)
	r.mu.Unlock()
	return Stats{
		Hits: r.hits.Load(), Translated: r.translated.Load(), Untranslated: r.untranslated.Load(),
		Missing: r.missing.Load(), Failed: r.failed.Load(), Evicted: r.evicted.Load(), Cached: n,
	}
}

// ErrNotFound is Lookup's error when conntrack has no entry for the tuple.
var ErrNotFound = errors.New("conntrack: no entry")

// Lookup asks the kernel for the conntrack entry whose original tuple is
// t (TCP, from t.Local to t.Remote) in the calling thread's network
// namespace, and returns the source of its reply tuple: the peer that
// answers.
func Lookup(t Tuple) (netip.AddrPort, error) {
	src, dst := t.Local.Addr().Unmap(), t.Remote.Addr().Unmap()
	if src.Is4() != dst.Is4() {
		return netip.AddrPort{}, fmt.Errorf("conntrack: tuple %v -> %v mixes address families", t.Local, t.Remote)
	}
	family, srcAttr, dstAttr := uint8(unix.AF_INET), nl.CTA_IP_V4_SRC, nl.CTA_IP_V4_DST
	if !src.Is4() {
		family, srcAttr, dstAttr = unix.AF_INET6, nl.CTA_IP_V6_SRC, nl.CTA_IP_V6_DST
	}
	req := nl.NewNetlinkRequest(int(netlink.ConntrackTable)<<8|nl.IPCTNL_MSG_CT_GET, unix.NLM_F_ACK)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: family, Version: nl.NFNETLINK_V0})
	orig := nl.NewRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_ORIG, nil)
	ip := orig.AddRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_IP, nil)
	ip.AddRtAttr(srcAttr, src.AsSlice())
	ip.AddRtAttr(dstAttr, dst.AsSlice())
	proto := orig.AddRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_PROTO, nil)
	proto.AddRtAttr(nl.CTA_PROTO_NUM, []byte{unix.IPPROTO_TCP})
	proto.AddRtAttr(nl.CTA_PROTO_SRC_PORT, binary.BigEndian.AppendUint16(nil, t.Local.Port()))
	proto.AddRtAttr(nl.CTA_PROTO_DST_PORT, binary.BigEndian.AppendUint16(nil, t.Remote.Port()))
	req.AddData(orig)
	msgs, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	if errors.Is(err, syscall.ENOENT) {
		return netip.AddrPort{}, ErrNotFound
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("conntrack: get %v -> %v: %w", t.Local, t.Remote, err)
	}
	for _, m := range msgs {
		if p, ok := replySource(m); ok {
			return p, nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("conntrack: entry for %v -> %v has no reply tuple", t.Local, t.Remote)
}

// replySource parses a conntrack message (nfgenmsg and attributes) for the
// reply tuple's source address and port.
func replySource(m []byte) (netip.AddrPort, bool) {
	if len(m) < nl.SizeofNfgenmsg {
		return netip.AddrPort{}, false
	}
	reply, ok := attr(m[nl.SizeofNfgenmsg:], nl.CTA_TUPLE_REPLY)
	if !ok {
		return netip.AddrPort{}, false
	}
	ipAttrs, ok1 := attr(reply, nl.CTA_TUPLE_IP)
	protoAttrs, ok2 := attr(reply, nl.CTA_TUPLE_PROTO)
	if !ok1 || !ok2 {
		return netip.AddrPort{}, false
	}
	raw, ok := attr(ipAttrs, nl.CTA_IP_V4_SRC)
	if !ok {
		raw, ok = attr(ipAttrs, nl.CTA_IP_V6_SRC)
	}
	addr, okAddr := netip.AddrFromSlice(raw)
	port, okPort := attr(protoAttrs, nl.CTA_PROTO_SRC_PORT)
	if !ok || !okAddr || !okPort || len(port) != 2 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(port)), true
}

// attr returns the value of the first attribute of type typ in b.
func attr(b []byte, typ uint16) ([]byte, bool) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return nil, false
	}
	for _, a := range attrs {
		if a.Attr.Type&nl.NLA_TYPE_MASK == typ {
			return a.Value, true
		}
	}
	return nil, false
}
