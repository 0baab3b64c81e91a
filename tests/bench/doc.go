// Package bench measures what Weir costs the traffic it watches, and writes
// the result as one Markdown report (tests/bench/REPORT.md).
//
// Speed targets are stated as ratios against a baseline measured in the same
// run, on the same machine, between the same two pods, because absolute
// numbers on a shared 2-core CI machine say more about the neighbours than
// about Weir. Baseline and capture rounds alternate so slow drift (another
// build starting, thermal changes) hits both sides alike, and each figure is
// the median over rounds.
//
// The benchmark itself is TestBench, gated by WEIR_BENCH=1 so that
// `go test ./tests/...` does not spend minutes generating load; `make bench`
// (tests/bench/run.sh) sets it. The parsers of wrk, h2load, /proc and
// Prometheus text in this package are ordinary code with ordinary unit tests.
package bench
