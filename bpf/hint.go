package bpf

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/weirnet/weir/bpf/event"
)

// hints writes the kernel side's h1_hints map: what user space's HTTP/1
// parser has learnt about a connection that the kernel cannot learn cheaply
// per byte. A hint changes only what is copied, never the sizes and offsets
// reported, so its timing never affects correctness: bytes the kernel
// passed before a hint arrived were simply copied.
type hints struct {
	m *ebpf.Map
	// mu serialises the read-modify-write of one connection's entry
	// (HintHTTP1 and SkipBody for both directions share it).
	mu       sync.Mutex
	failures atomic.Uint64
}

// HintHTTP1 tells the kernel side that connection id carries HTTP/1 (its
// parser has seen a complete message head): from now on the connection is
// copied whole, not under the capture budget, except the body ranges given
// to SkipBody. The kernel side deletes the hint when the connection is
// closed; hints of connections whose process exited without closing them
// age out of the bounded map (Config.HintMapSize). Failures are counted in
// ReaderStats.HintFailures.
func (c *Collector) HintHTTP1(id event.ConnID) error {
	return c.hints.update(id, func(*captureH1Hint) {})
}

// SkipBody tells the kernel side that the bytes [from, to) of direction dir
// of connection id (stream offsets, as in event.Data.StreamOffset) are a
// message body the parser skips by length: they are reported size-only with
// event.SkipBody instead of copied. It implies HintHTTP1. A later range
// replaces an earlier one for that direction; the kernel copies bytes it
// has already passed whatever the hint says.
func (c *Collector) SkipBody(id event.ConnID, dir event.Direction, from, to uint64) error {
	if dir > event.Ingress {
		c.hints.failures.Add(1)
		return fmt.Errorf("skip body of connection %d: direction %d", id, dir)
	}
	if to < from {
		c.hints.failures.Add(1)
		return fmt.Errorf("skip body of connection %d: range [%d, %d) ends before it starts", id, from, to)
	}
	return c.hints.update(id, func(h *captureH1Hint) {
		h.BodyFrom[dir], h.BodyTo[dir] = from, to
	})
}

// ForgetHint removes connection id's hint, for a connection user space has
// stopped tracking without a close the kernel saw. A missing hint is not an
// error.
func (c *Collector) ForgetHint(id event.ConnID) error {
	err := c.hints.m.Delete(uint64(id))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		c.hints.failures.Add(1)
		return fmt.Errorf("forget hint of connection %d: %w", id, err)
	}
	return nil
}

func (h *hints) update(id event.ConnID, change func(*captureH1Hint)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var v captureH1Hint
	if err := h.m.Lookup(uint64(id), &v); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		h.failures.Add(1)
		return fmt.Errorf("read hint of connection %d: %w", id, err)
	}
	change(&v)
	if err := h.m.Update(uint64(id), &v, ebpf.UpdateAny); err != nil {
		h.failures.Add(1)
		return fmt.Errorf("hint connection %d as HTTP/1: %w", id, err)
	}
	return nil
}
