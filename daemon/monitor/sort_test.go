package monitor

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/flow"
)

// An exchange's operations reach consumers ordered by start, operations
// that started together in the order they were held: sortByStart agrees
// with the standard library's stable sort on short and long lists, sorted,
// reversed and with ties.
func TestSortByStartIsTheStableSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 40 {
		for round := range 20 {
			ops := make([]*flow.KernelOp, n)
			for i := range ops {
				var start event.Timestamp
				switch round % 4 {
				case 0:
					start = event.Timestamp(i)
				case 1:
					start = event.Timestamp(n - i)
				default:
					start = event.Timestamp(rng.IntN(4)) // ties
				}
				ops[i] = &flow.KernelOp{Start: start, Bytes: uint64(i)}
			}
			want := slices.Clone(ops)
			slices.SortStableFunc(want, func(a, b *flow.KernelOp) int { return cmp.Compare(a.Start, b.Start) })
			sortByStart(ops)
			for i := range ops {
				if ops[i] != want[i] {
					t.Fatalf("%d operations, round %d: position %d holds the operation held %d-th, want %d-th",
						n, round, i, ops[i].Bytes, want[i].Bytes)
				}
			}
		}
	}
}
