package capture

import (
	"slices"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
)

// Filter selects connections for Connections. Zero fields match everything.
type Filter struct {
	Namespace, Pod string // both set: only connections of that pod
	State          string // "open", "closed" or ""
	Limit          int    // at most this many, newest first; 0: no limit
}

// Connections returns a snapshot of tracked and recently closed connections
// matching f, newest (by first seen) first. It is safe to call concurrently
// with the Sink methods.
func (t *Table) Connections(f Filter) []wire.ConnInfo {
	t.mu.Lock()
	out := make([]wire.ConnInfo, 0, len(t.conns)+t.closed.len())
	if f.State != "closed" {
		for c := t.lruHead; c != nil; c = c.next {
			out = append(out, c.info(t.cfg.BootTime, true))
		}
	}
	if f.State != "open" {
		out = t.closed.appendTo(out)
	}
	t.mu.Unlock()

	// Pod names come from another component's lock: resolve outside ours.
	if t.cfg.Pods != nil {
		for i := range out {
			if ns, name, ok := t.cfg.Pods(out[i].PodID); ok {
				out[i].Namespace, out[i].Pod = ns, name
			}
		}
	}
	if f.Namespace != "" || f.Pod != "" {
		out = slices.DeleteFunc(out, func(ci wire.ConnInfo) bool {
			return ci.Namespace != f.Namespace || ci.Pod != f.Pod
		})
	}
	// FirstSeen is the boot time plus the kernel timestamp, the same boot
	// time for every entry: it orders them as the timestamps do.
	slices.SortFunc(out, func(a, b wire.ConnInfo) int {
		if c := b.FirstSeen.Compare(a.FirstSeen); c != 0 {
			return c
		}
		switch {
		case a.ID > b.ID:
			return -1
		case a.ID < b.ID:
			return 1
		}
		return 0
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out
}

func (c *Conn) info(boot time.Time, open bool) wire.ConnInfo {
	eg, in := &c.dirs[event.Egress], &c.dirs[event.Ingress]
	ci := wire.ConnInfo{
		ID:           uint64(c.ID),
		PodID:        c.PodID,
		PID:          c.Proc.TGID,
		Comm:         c.Proc.Comm,
		CgroupID:     c.Proc.CgroupID,
		ContainerID:  c.ContainerID,
		FD:           c.FD,
		Local:        c.Local,
		Remote:       c.Remote,
		Role:         c.Role.String(),
		State:        "open",
		OpenSeen:     c.OpenSeen(),
		TLS:          c.TLSLibrary,
		BytesSent:    eg.hwm,
		BytesRecv:    in.hwm,
		SyscallsSent: eg.syscalls,
		SyscallsRecv: in.syscalls,
		Gaps:         eg.gaps + in.gaps,
		GapBytes:     eg.gapBytes + in.gapBytes,
		Truncated:    eg.truncated + in.truncated,
		Skipped:      skippedByName(eg, in),
		FirstSeen:    c.firstSeen.Time(boot),
		LastSeen:     c.lastSeen.Time(boot),
	}
	if c.opened {
		ci.Connect = &wire.ConnectInfo{
			Syscall:    c.openSyscall.String(),
			Start:      c.openStart.Time(boot),
			End:        c.openEnd.Time(boot),
			Success:    c.success,
			InProgress: c.inProgress,
			Errno:      c.errno,
		}
	}
	if !open {
		ci.State = "closed"
		ci.CloseReason = c.closeReason
		ci.Close = &wire.CloseInfo{Time: c.closeTime.Time(boot)}
		if c.haveClose {
			sent, recv := c.kernelSent, c.kernelRecv
			ci.Close.KernelBytesSent, ci.Close.KernelBytesRecv = &sent, &recv
		}
	}
	return ci
}

// closedRing keeps the summaries of the last n closed connections and
// remembers their ids, so late events for them are recognised and dropped
// instead of resurrecting the connection.
type closedRing struct {
	entries []wire.ConnInfo
	next    int
	full    bool
	ids     map[event.ConnID]int // id -> slot
}

func newClosedRing(n int) closedRing {
	return closedRing{entries: make([]wire.ConnInfo, n), ids: make(map[event.ConnID]int, n)}
}

func (r *closedRing) push(ci wire.ConnInfo) {
	slot := r.next
	if r.full {
		old := event.ConnID(r.entries[slot].ID)
		if r.ids[old] == slot {
			delete(r.ids, old)
		}
	}
	r.entries[slot] = ci
	r.ids[event.ConnID(ci.ID)] = slot
	r.next++
	if r.next == len(r.entries) {
		r.next, r.full = 0, true
	}
}

func (r *closedRing) has(id event.ConnID) bool {
	_, ok := r.ids[id]
	return ok
}

func (r *closedRing) len() int {
	if r.full {
		return len(r.entries)
	}
	return r.next
}

func (r *closedRing) appendTo(out []wire.ConnInfo) []wire.ConnInfo {
	if r.full {
		out = append(out, r.entries[r.next:]...)
	}
	return append(out, r.entries[:r.next]...)
}

// skippedByName sums the halves' skipped bytes by reason name, leaving out
// reasons with none.
func skippedByName(hs ...*half) map[string]uint64 {
	var m map[string]uint64
	for _, h := range hs {
		for r, n := range h.skipped {
			if n == 0 {
				continue
			}
			if m == nil {
				m = make(map[string]uint64, 2)
			}
			m[event.SkipReason(r).String()] += n
		}
	}
	return m
}
