// Package podindex is the pipeline's copy of the registry's pod
// identities, by pod id and by address, named by the identity resolvers and
// named again when they learn more.
package podindex

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/identity"
	"github.com/weirnet/weir/daemon/registry"
)

// Index is the pipeline's copy of the registry's identities: pod by id
// (the value the kernel side tags events with) and by IP (to recognise a
// remote end that is a local pod). It is kept by the registry.Observer
// calls and read by the pipeline.
type Index struct {
	services identity.ServiceResolver
	selector identity.ServiceSelector // nil: no name is known to be a selecting Service
	gens     identity.Generationer    // nil: names never change
	namer    identity.ContainerNamer  // nil: containers are not named

	// gen is the resolver generation the names were taken at, and version
	// moves whenever an identity may have changed (a pod added, removed
	// or renamed). Both are written with mu held and read without it:
	// the pipeline asks for identities on every operation, and checking
	// that nothing changed must not cost a lock.
	gen     atomic.Uint64
	version atomic.Uint64

	mu   sync.RWMutex
	src  map[uint32]*registry.Pod // registry records, to name pods again
	byID map[uint32]*flow.Pod
	byIP map[netip.Addr]uint32
	ips  map[uint32][]netip.Addr
}

// New returns an empty index naming pods with s (and, when s implements
// them, identity.Generationer, ContainerNamer and ServiceSelector).
func New(s identity.ServiceResolver) *Index {
	g, _ := s.(identity.Generationer)
	n, _ := s.(identity.ContainerNamer)
	sel, _ := s.(identity.ServiceSelector)
	return &Index{
		services: s,
		selector: sel,
		gens:     g,
		namer:    n,
		src:      make(map[uint32]*registry.Pod),
		byID:     make(map[uint32]*flow.Pod),
		byIP:     make(map[netip.Addr]uint32),
		ips:      make(map[uint32][]netip.Addr),
	}
}

// Add indexes p (replacing the pod of the same id); log hears of an
// address that cannot be used for peer lookup.
func (x *Index) Add(p *registry.Pod, log *slog.Logger) {
	fp := &flow.Pod{ID: p.ID, Namespace: p.Namespace, Name: p.Name, UID: p.UID,
		Service: x.services.Service(p), Selected: x.selected(p)}
	var ips []netip.Addr
	for _, ip := range p.IPs {
		pfx, err := netip.ParsePrefix(ip.Address)
		if err != nil {
			log.Warn("pod IP not usable for peer lookup", "pod", p.ID, "address", ip.Address, "error", err)
			continue
		}
		ips = append(ips, pfx.Addr())
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.version.Add(1)
	x.removeLocked(p.ID)
	x.byID[fp.ID] = fp
	x.src[fp.ID] = p
	x.ips[fp.ID] = ips
	for _, a := range ips {
		x.byIP[a] = fp.ID
	}
}

// Remove forgets pod id.
func (x *Index) Remove(id uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.version.Add(1)
	x.removeLocked(id)
}

func (x *Index) removeLocked(id uint32) {
	for _, a := range x.ips[id] {
		if x.byIP[a] == id {
			delete(x.byIP, a)
		}
	}
	delete(x.ips, id)
	delete(x.byID, id)
	delete(x.src, id)
}

// refresh names every pod again if the resolver's generation moved. Pods
// whose name changed get a new flow.Pod: values already handed to
// consumers are immutable.
func (x *Index) refresh() {
	if x.gens == nil {
		return
	}
	g := x.gens.Generation()
	if g == x.gen.Load() {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if g == x.gen.Load() {
		return
	}
	x.gen.Store(g)
	for id, fp := range x.byID {
		if svc, sel := x.services.Service(x.src[id]), x.selected(x.src[id]); svc != fp.Service || sel != fp.Selected {
			np := *fp
			np.Service, np.Selected = svc, sel
			x.byID[id] = &np
			x.version.Add(1)
		}
	}
}

func (x *Index) selected(p *registry.Pod) bool {
	return x.selector != nil && x.selector.Selected(p)
}

// Current returns the version of the identities, after naming pods again
// if the resolver learned more: while it stays the same, byPodID and
// byAddr keep their answers.
func (x *Index) Current() uint64 {
	x.refresh()
	return x.version.Load()
}

// NamesContainers reports whether ContainerName may ask the resolver for
// container containerID: only then can its answer change.
func (x *Index) NamesContainers(containerID string) bool {
	return x.namer != nil && containerID != ""
}

// ContainerName names container containerID of pod id, or "" when the
// resolver cannot (yet).
func (x *Index) ContainerName(id uint32, containerID string) string {
	if x.namer == nil || containerID == "" {
		return ""
	}
	x.mu.RLock()
	src := x.src[id]
	x.mu.RUnlock()
	if src == nil {
		return ""
	}
	return x.namer.ContainerName(src.ContainerID, containerID)
}

// ByPodID returns the pod enrolled under id, or nil.
func (x *Index) ByPodID(id uint32) *flow.Pod {
	x.refresh()
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byID[id]
}

// byAddr returns the local pod that owns address a, or nil.
func (x *Index) ByAddr(a netip.Addr) *flow.Pod {
	x.refresh()
	x.mu.RLock()
	defer x.mu.RUnlock()
	id, ok := x.byIP[a.Unmap()]
	if !ok {
		return nil
	}
	return x.byID[id]
}

// Names is the capture.PodResolver of the connections API.
func (x *Index) Names(id uint32) (string, string, bool) {
	p := x.ByPodID(id)
	if p == nil {
		return "", "", false
	}
	return p.Namespace, p.Name, true
}

// Len returns how many pods the index holds.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byID)
}
