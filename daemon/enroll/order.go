package enroll

import (
	"sync"
	"time"
)

// attachment is an order key: the CNI attachment (container id, ifname).
// The network is left out so that an Unenroll for "every network" orders
// against the same key; one container cannot have one ifname twice.
type attachment struct{ containerID, ifname string }

type liveCall struct {
	at       time.Time
	enrolled bool
}

// order remembers the latest live call per attachment, so that a spooled
// record made before it (the daemon was unreachable, then came back and
// served a newer ADD or DEL directly) is skipped instead of undoing it: a
// spooled ADD replayed after a live DEL would resurrect the pod.
//
// Entries are needed only until every record older than them has been
// drained; prune drops them after a complete drain. The map is also bounded
// (maxOrderEntries); at the bound the oldest entry makes room.
type order struct {
	mu   sync.Mutex
	last map[attachment]liveCall
	max  int
}

// maxOrderEntries bounds order's memory: far more attachments than change
// on a node between two drains.
const maxOrderEntries = 1 << 16

// spoolSkew is how much earlier than a drain started a record not yet
// visible to it can be stamped: the plugin stamps a record and writes it
// within milliseconds; a minute is generous.
const spoolSkew = time.Minute

func newOrder(max int) *order { return &order{last: make(map[attachment]liveCall), max: max} }

// note records a live call applied at at.
func (o *order) note(a attachment, at time.Time, enrolled bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.last[a]; !ok && len(o.last) >= o.max {
		var oldest attachment
		var first bool
		var t time.Time
		for k, v := range o.last {
			if !first || v.at.Before(t) {
				oldest, t, first = k, v.at, true
			}
		}
		delete(o.last, oldest)
	}
	o.last[a] = liveCall{at: at, enrolled: enrolled}
}

// newer returns the live call for a made after t, if there is one.
func (o *order) newer(a attachment, t time.Time) (liveCall, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	c, ok := o.last[a]
	if !ok || !c.at.After(t) {
		return liveCall{}, false
	}
	return c, true
}

// get returns the latest live call for a.
func (o *order) get(a attachment) (liveCall, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	c, ok := o.last[a]
	return c, ok
}

// prune forgets live calls made before drainStart-spoolSkew, once a drain
// that started at drainStart has applied every record: any record still to
// come was stamped after them and is not superseded by them.
func (o *order) prune(drainStart time.Time) {
	cut := drainStart.Add(-spoolSkew)
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, v := range o.last {
		if v.at.Before(cut) {
			delete(o.last, k)
		}
	}
}

func (o *order) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.last)
}
