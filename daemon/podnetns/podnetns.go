// Package podnetns keeps the eBPF collector's enrolled network namespaces
// equal to those of the enrolled pods: the registry's changes come in as
// Want and Unwant, the collector's map follows.
package podnetns

import (
	"errors"
	"log/slog"
	"slices"
	"sync"
	"syscall"
)

// Collector is the eBPF side: its map of enrolled network namespaces.
type Collector interface {
	Enroll(netnsInode uint64, podID uint32) error
	Unenroll(netnsInode uint64) error
}

// PodEnroller is implemented by collectors that also count a pod's packets
// on its host-side veth (bpf.Collector.EnrollPod).
type PodEnroller interface {
	EnrollPod(netnsInode uint64, podID uint32, hostVethIndex int) error
}

// Watcher is told when a namespace enters the collector and when it leaves
// (the TLS gate probes the namespace's libraries then).
type Watcher interface {
	Enrolled(netns uint64)
	Unenrolled(netns uint64)
}

// Enroller keeps the collector's enrolled namespaces equal to the wanted
// ones. Several attachments of one pod share a network namespace: the
// namespace stays enrolled until the last goes, under the first one's id.
type Enroller struct {
	coll Collector
	log  *slog.Logger
	tls  Watcher // nil: no TLS probes

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

// New returns an Enroller over c (nil: capture is off, nothing is applied)
// that tells w (nil: nobody) of namespaces entering and leaving c.
func New(c Collector, w Watcher, log *slog.Logger) *Enroller {
	return &Enroller{
		coll:    c,
		tls:     w,
		log:     log,
		wanted:  make(map[uint64][]attachment),
		applied: make(map[uint64]uint32),
		failed:  make(map[uint64]error),
	}
}

// Want enrolls attachment id of network namespace netns, whose host-side
// veth is hostVethIndex (0: none).
func (e *Enroller) Want(netns uint64, id uint32, hostVethIndex int) {
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

// Unwant drops attachment id of netns; the namespace leaves the collector
// with its last attachment.
func (e *Enroller) Unwant(netns uint64, id uint32) {
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
func (e *Enroller) applyLocked(netns uint64) {
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
		if pe, ok := e.coll.(PodEnroller); ok {
			err = pe.EnrollPod(netns, ids[0].id, ids[0].vethIdx)
		} else {
			err = e.coll.Enroll(netns, ids[0].id)
		}
		if err != nil {
			e.failedLocked("enroll", netns, err)
		} else {
			delete(e.failed, netns)
			if e.tls != nil && !have {
				e.tls.Enrolled(netns)
			}
		}
	case !want && have:
		delete(e.applied, netns)
		if e.tls != nil {
			e.tls.Unenrolled(netns)
		}
		if err := e.coll.Unenroll(netns); err != nil {
			e.failedLocked("unenroll", netns, err)
		}
	}
}

func (e *Enroller) failedLocked(what string, netns uint64, err error) {
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

// Failing returns the wanted namespaces whose enrollment failed, and one of
// the errors.
func (e *Enroller) Failing() (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, err := range e.failed {
		return len(e.failed), err
	}
	return 0, nil
}

// Errors counts failed enrollments and unenrollments.
func (e *Enroller) Errors() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.errors
}
