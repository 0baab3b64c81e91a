package monitor

import (
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/weirnet/weir/daemon/flow"
	"github.com/weirnet/weir/daemon/identity"
	"github.com/weirnet/weir/daemon/registry"
)

// podIndex is the pipeline's copy of the registry's identities: pod by id
// (the value the kernel side tags events with) and by IP (to recognise a
// remote end that is a local pod). It is kept by the registry.Observer
// calls and read by the pipeline.
type podIndex struct {
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

func newPodIndex(s identity.ServiceResolver) *podIndex {
	g, _ := s.(identity.Generationer)
	n, _ := s.(identity.ContainerNamer)
	sel, _ := s.(identity.ServiceSelector)
	return &podIndex{
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

func (x *podIndex) add(p *registry.Pod, log *slog.Logger) {
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

func (x *podIndex) remove(id uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.version.Add(1)
	x.removeLocked(id)
}

func (x *podIndex) removeLocked(id uint32) {
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
func (x *podIndex) refresh() {
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

func (x *podIndex) selected(p *registry.Pod) bool {
	return x.selector != nil && x.selector.Selected(p)
}

// current returns the version of the identities, after naming pods again
// if the resolver learned more: while it stays the same, byPodID and
// byAddr keep their answers.
func (x *podIndex) current() uint64 {
	x.refresh()
	return x.version.Load()
}

// namesContainers reports whether containerName may ask the resolver for
// container containerID: only then can its answer change.
func (x *podIndex) namesContainers(containerID string) bool {
	return x.namer != nil && containerID != ""
}

// containerName names container containerID of pod id, or "" when the
// resolver cannot (yet).
func (x *podIndex) containerName(id uint32, containerID string) string {
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

// byPodID returns the pod enrolled under id, or nil.
func (x *podIndex) byPodID(id uint32) *flow.Pod {
	x.refresh()
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byID[id]
}

// byAddr returns the local pod that owns address a, or nil.
func (x *podIndex) byAddr(a netip.Addr) *flow.Pod {
	x.refresh()
	x.mu.RLock()
	defer x.mu.RUnlock()
	id, ok := x.byIP[a.Unmap()]
	if !ok {
		return nil
	}
	return x.byID[id]
}

// names is the capture.PodResolver of the connections API.
func (x *podIndex) names(id uint32) (string, string, bool) {
	p := x.byPodID(id)
	if p == nil {
		return "", "", false
	}
	return p.Namespace, p.Name, true
}

func (x *podIndex) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byID)
}

// Pod returns the current identity of the enrolled pod id (renamed when the
// resolver learned more), or nil when no such pod is enrolled. It is safe
// for concurrent use.
func (m *Monitor) Pod(id uint32) *flow.Pod { return m.pods.byPodID(id) }

// PodEnrolled implements registry.Observer: the pod's identity is indexed
// and its network namespace handed to the collector before the call
// returns. That is deliberate although it runs under the registry's lock:
// the plugin's Enroll RPC returns only after the registry changed, and the
// runtime starts the pod's processes after that, so capture is on before
// the pod's first instruction. collector.Enroll costs one map write and
// one scan of /proc (milliseconds).
func (m *Monitor) PodEnrolled(p *registry.Pod) {
	m.pods.add(p, m.log)
	m.enroller.want(p.NetnsInode, p.ID, int(p.HostVethIndex))
}

// PodRemoved implements registry.Observer.
func (m *Monitor) PodRemoved(p *registry.Pod) {
	m.pods.remove(p.ID)
	m.enroller.unwant(p.NetnsInode, p.ID)
}

// podEnroller is implemented by collectors that also count a pod's packets
// on its host-side veth (bpf.Collector.EnrollPod).
type podEnroller interface {
	EnrollPod(netnsInode uint64, podID uint32, hostVethIndex int) error
}

// enroller keeps the collector's enrolled namespaces equal to the wanted
// ones. Several attachments of one pod share a network namespace: the
// namespace stays enrolled until the last goes, under the first one's id.
type enroller struct {
	coll Collector
	log  *slog.Logger
	tls  *tlsGate // nil: no TLS probes

	mu      sync.Mutex
	wanted  map[uint64][]attachment // netns inode -> attachments (several may share a netns)
	applied map[uint64]uint32       // netns inode -> pod id the collector has
	failed  map[uint64]error        // netns inodes whose last change failed and is still wanted
	errors  uint64
}

type attachment struct {
	id      uint32
	vethIdx int
}

func newEnroller(c Collector, log *slog.Logger) *enroller {
	return &enroller{
		coll:    c,
		log:     log,
		wanted:  make(map[uint64][]attachment),
		applied: make(map[uint64]uint32),
		failed:  make(map[uint64]error),
	}
}

func (e *enroller) want(netns uint64, id uint32, hostVethIndex int) {
	if netns == 0 {
		e.log.Warn("pod has no network namespace inode: its traffic cannot be captured", "pod", id)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	a := attachment{id: id, vethIdx: hostVethIndex}
	// A re-enrolled attachment keeps its place: the namespace's pod id
	// does not flip between attachments.
	if i := slices.IndexFunc(e.wanted[netns], func(v attachment) bool { return v.id == id }); i >= 0 {
		e.wanted[netns][i] = a
	} else {
		e.wanted[netns] = append(e.wanted[netns], a)
	}
	e.applyLocked(netns)
}

func (e *enroller) unwant(netns uint64, id uint32) {
	if netns == 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := slices.DeleteFunc(e.wanted[netns], func(v attachment) bool { return v.id == id })
	if len(ids) == 0 {
		delete(e.wanted, netns)
	} else {
		e.wanted[netns] = ids
	}
	e.applyLocked(netns)
}

// applyLocked makes the collector's state of one namespace match the
// wanted one. A failure is logged and counted, and not retried until the
// namespace changes again: the usual cause (the kernel map is full) would
// fail again.
func (e *enroller) applyLocked(netns uint64) {
	if e.coll == nil {
		return
	}
	ids, want := e.wanted[netns]
	cur, have := e.applied[netns]
	if !want {
		// A failure about a namespace nobody wants any more (a pod
		// deleted while the daemon was down, replayed from disk before
		// the spool's removal) no longer matters.
		delete(e.failed, netns)
	}
	switch {
	case want && (!have || cur != ids[0].id):
		e.applied[netns] = ids[0].id
		var err error
		if pe, ok := e.coll.(podEnroller); ok {
			err = pe.EnrollPod(netns, ids[0].id, ids[0].vethIdx)
		} else {
			err = e.coll.Enroll(netns, ids[0].id)
		}
		if err != nil {
			e.failedLocked("enroll", netns, err)
		} else {
			delete(e.failed, netns)
			if e.tls != nil && !have {
				e.tls.enrolled(netns)
			}
		}
	case !want && have:
		delete(e.applied, netns)
		if e.tls != nil {
			e.tls.unenrolled(netns)
		}
		if err := e.coll.Unenroll(netns); err != nil {
			e.failedLocked("unenroll", netns, err)
		}
	}
}

func (e *enroller) failedLocked(what string, netns uint64, err error) {
	if what == "enroll" && errors.Is(err, syscall.ENODEV) {
		// The pod's host veth is gone: the pod was deleted while the
		// daemon was down and the registry replays it at start, before
		// reconcile drops it. Nothing is lost and nothing is broken.
		e.log.Info("pod's host interface is gone (pod deleted while the daemon was down?); reconcile drops it",
			"netns", netns, "error", err)
		return
	}
	e.errors++
	if what == "enroll" {
		e.failed[netns] = err
	}
	e.log.Error("eBPF "+what+" failed: the pod's traffic is not captured as wanted", "netns", netns, "error", err)
}

// failing returns the wanted namespaces whose enrollment failed, and one of
// the errors.
func (e *enroller) failing() (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, err := range e.failed {
		return len(e.failed), err
	}
	return 0, nil
}

func (e *enroller) errorCount() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.errors
}
