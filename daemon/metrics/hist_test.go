package metrics

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestLogBucketsContainTheirValuesWithin12_5Percent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(v uint64) {
		i := logIndex(v)
		if i < 0 || i >= logBuckets {
			t.Fatalf("logIndex(%d) = %d out of range", v, i)
		}
		if i == logBuckets-1 {
			return // the top bucket holds everything above 2^41 ns
		}
		lo, hi := logBounds(i)
		if v < lo || v >= hi {
			t.Fatalf("value %d in bucket %d = [%d, %d)", v, i, lo, hi)
		}
		if lo >= 16 && float64(hi-lo)/float64(lo) > 0.125 {
			t.Fatalf("bucket %d = [%d, %d) is wider than 1/8 of its lower bound", i, lo, hi)
		}
	}
	for v := uint64(0); v < 5000; v++ {
		check(v)
	}
	for range 100000 {
		check(r.Uint64N(1 << 41))
	}
	if logIndex(1<<63) != logBuckets-1 {
		t.Errorf("huge value not in the top bucket")
	}
}

func TestQuantileErrorIsBounded(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var h logHist
	vals := make([]uint64, 0, 10000)
	for range 10000 {
		v := 1000 + r.Uint64N(1e9)
		h.add(v)
		vals = append(vals, v)
	}
	var acc histAcc
	acc.merge(&h)
	sorted := append([]uint64(nil), vals...)
	slices.Sort(sorted)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		exact := sorted[int(q*float64(len(sorted))+0.5)-1]
		got := acc.quantile(q)
		if rel := relErr(got, exact); rel > 0.0625 {
			t.Errorf("q%.2f = %d, exact %d: error %.4f over 6.25%%", q, got, exact, rel)
		}
	}
	if acc.quantile(1) != sorted[len(sorted)-1] {
		t.Errorf("q1 = %d, want the max %d", acc.quantile(1), sorted[len(sorted)-1])
	}
}

func relErr(a, b uint64) float64 {
	d := float64(a) - float64(b)
	if d < 0 {
		d = -d
	}
	return d / float64(b)
}
