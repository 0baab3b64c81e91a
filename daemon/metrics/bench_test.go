package metrics

import (
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
)

func writeOp() *flow.KernelOp {
	c, _ := pairConns(1, frontend, catalog0)
	w := op(c, flow.OpWrite, 512)
	w.Send = &event.SendMetrics{Measured: event.MetricPackets | event.MetricRetransmits, Packets: 1}
	return w
}

// TestKernelOpDoesNotAllocate pins the per-syscall path: once the series
// exist, a kernel operation allocates nothing.
func TestKernelOpDoesNotAllocate(t *testing.T) {
	a, _ := newAgg(t, Options{})
	w := writeOp()
	a.KernelOp(w)
	if n := testing.AllocsPerRun(1000, func() { a.KernelOp(w) }); n != 0 {
		t.Fatalf("KernelOp allocates %v times per call", n)
	}
}

func BenchmarkKernelOp(b *testing.B) {
	a, _ := newAgg(b, Options{})
	w := writeOp()
	b.ReportAllocs()
	for b.Loop() {
		a.KernelOp(w)
	}
}

func BenchmarkExchange(b *testing.B) {
	a, _ := newAgg(b, Options{RoutePatterns: []string{"/api/items/{id}"}})
	_, s := pairConns(1, frontend, catalog0)
	x := exchange(s, "GET", "/api/items/42", 200, 3*time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		a.Exchange(x)
	}
}
