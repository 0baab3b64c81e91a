package metrics

import "math/bits"

// Percentiles for the API come from log-linear histograms: each power of
// two is split into 8 equal sub-buckets, so a bucket is at most 1/8 of its
// lower bound wide. A quantile is reported as the bucket's midpoint,
// clamped to the smallest and largest value seen, which bounds its relative
// error by 6.25%. Values are nanoseconds; the top bucket starts at 2^40 ns
// (about 18 minutes) and holds everything above.
const (
	logSubBits   = 3
	logSub       = 1 << logSubBits
	logMaxBits   = 41 // values below 2^41 ns get their own bucket
	logBuckets   = (logMaxBits-logSubBits)*logSub + logSub
	logHistBytes = logBuckets * 4
)

// logIndex returns v's bucket.
func logIndex(v uint64) int {
	n := bits.Len64(v)
	if n <= logSubBits+1 {
		return int(v) // values below 16 are exact
	}
	if n > logMaxBits {
		return logBuckets - 1
	}
	shift := n - logSubBits - 1
	return (n-logSubBits)*logSub + int((v>>shift)&(logSub-1))
}

// logBounds returns bucket i's range [lo, hi).
func logBounds(i int) (lo, hi uint64) {
	if i < 2*logSub {
		return uint64(i), uint64(i) + 1
	}
	n := i/logSub + logSubBits
	sub := uint64(i % logSub)
	shift := n - logSubBits - 1
	return (logSub + sub) << shift, (logSub + sub + 1) << shift
}

// logHist is a sparse log-linear histogram: counts covers only the range
// of buckets used so far, so a slot whose latencies cluster (the usual
// case) holds a few dozen bytes. It grows to at most logHistBytes.
type logHist struct {
	lo       int // bucket index of counts[0]
	counts   []uint32
	min, max uint64
	n        uint64
}

func (h *logHist) add(v uint64) {
	i := logIndex(v)
	switch {
	case len(h.counts) == 0:
		h.lo = i
		if cap(h.counts) > 0 {
			h.counts = h.counts[:1]
		} else {
			h.counts = make([]uint32, 1, 4)
		}
	case i < h.lo:
		grown := make([]uint32, h.lo-i+len(h.counts))
		copy(grown[h.lo-i:], h.counts)
		h.counts, h.lo = grown, i
	case i >= h.lo+len(h.counts):
		need := i - h.lo + 1
		if need <= cap(h.counts) {
			old := len(h.counts)
			h.counts = h.counts[:need]
			clear(h.counts[old:])
		} else {
			h.counts = append(h.counts, make([]uint32, need-len(h.counts))...)
		}
	}
	h.counts[i-h.lo]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
}

// reset empties h, keeping its buffer for the slot's next use.
func (h *logHist) reset() {
	h.counts = h.counts[:0]
	h.lo, h.min, h.max, h.n = 0, 0, 0, 0
}

// histAcc merges logHists for a query.
type histAcc struct {
	counts   [logBuckets]uint64
	min, max uint64
	n        uint64
}

func (a *histAcc) merge(h *logHist) {
	if h.n == 0 {
		return
	}
	for i, c := range h.counts {
		a.counts[h.lo+i] += uint64(c)
	}
	if a.n == 0 || h.min < a.min {
		a.min = h.min
	}
	if h.max > a.max {
		a.max = h.max
	}
	a.n += h.n
}

// quantile returns the q-quantile (0 < q <= 1), or 0 when empty.
func (a *histAcc) quantile(q float64) uint64 {
	if a.n == 0 {
		return 0
	}
	rank := uint64(q*float64(a.n) + 0.5)
	rank = min(max(rank, 1), a.n)
	if rank == a.n {
		return a.max // the largest and smallest ranks are known exactly
	}
	if rank == 1 {
		return a.min
	}
	var seen uint64
	for i, c := range a.counts {
		seen += c
		if seen >= rank {
			lo, hi := logBounds(i)
			mid := lo + (hi-lo)/2
			return min(max(mid, a.min), a.max)
		}
	}
	return a.max
}

// promHist is a cumulative Prometheus histogram over fixed bounds: counts[i]
// counts observations <= bounds[i] and not <= bounds[i-1]; the last element
// is the +Inf bucket. maxPromBounds bounds len(bounds).
const maxPromBounds = 15

type promHist struct {
	counts [maxPromBounds + 1]uint64
	sum    uint64
	n      uint64
}

func (h *promHist) observe(bounds []uint64, v uint64) {
	i := 0
	for i < len(bounds) && v > bounds[i] {
		i++
	}
	h.counts[i]++
	h.sum += v
	h.n++
}

// Prometheus bucket bounds, in nanoseconds or bytes.
var (
	latencyBounds = nsBounds(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
	rttBounds     = nsBounds(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)
	sizeBounds    = []uint64{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20}
)

func nsBounds(seconds ...float64) []uint64 {
	out := make([]uint64, len(seconds))
	for i, s := range seconds {
		out[i] = uint64(s*1e9 + 0.5)
	}
	return out
}
