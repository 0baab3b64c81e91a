package capture

import (
	"math/bits"
	"sync"
)

// Payloads held in reorder buffers are copied (the reader reuses its buffer)
// into pooled slices of power-of-two size classes, so steady-state
// reordering does not allocate.
const (
	minClassShift = 8  // 256 B
	maxClassShift = 20 // 1 MiB; larger payloads are allocated directly
)

type bufPool struct {
	classes [maxClassShift - minClassShift + 1]sync.Pool
}

func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minClassShift
}

// get returns a slice of length n.
func (p *bufPool) get(n int) *[]byte {
	c := classOf(n)
	if c >= len(p.classes) {
		b := make([]byte, n)
		return &b
	}
	if v := p.classes[c].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(c+minClassShift))
	return &b
}

func (p *bufPool) put(b *[]byte) {
	c := classOf(cap(*b))
	if c >= len(p.classes) || cap(*b) != 1<<(c+minClassShift) {
		return
	}
	p.classes[c].Put(b)
}
