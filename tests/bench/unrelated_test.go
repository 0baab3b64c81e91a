package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf"
)

// TestUnrelatedWorkPerCaptureTier is the quick form of the unrelated-work
// rows of `make bench`: dd and getppid with nothing attached and with the
// daemon's collection loaded (nothing enrolled) for each capture tier, the
// order rotating each round, medians and same-run ratios logged. A
// measurement, not an assertion: it runs when WEIR_BENCH_UNRELATED=1
// (root, real eBPF) and reports what it measured.
func TestUnrelatedWorkPerCaptureTier(t *testing.T) {
	if os.Getenv("WEIR_BENCH_UNRELATED") != "1" {
		t.Skip("a measurement: set WEIR_BENCH_UNRELATED=1 (root) to run it")
	}
	variants := []struct {
		name string
		tier bpf.CaptureTier
		none bool
	}{{"baseline", 0, true}, {"socket tier", bpf.CaptureSocket, false}, {"syscall tier", bpf.CaptureSyscall, false}}
	results := make([]UnrelatedResult, len(variants))
	for i, v := range variants {
		results[i].Variant = v.name
	}
	const rounds = 5
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for round := range rounds {
		idx := []int{0, 1, 2}
		idx = slices.Concat(idx[round%3:], idx[:round%3])
		for _, i := range idx {
			v := variants[i]
			var c *bpf.Collector
			if !v.none {
				var err error
				if c, err = bpf.Load(bpf.Config{CaptureTier: v.tier}, log); err != nil {
					t.Fatalf("load %s: %v", v.name, err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			run, err := MeasureUnrelated(ctx)
			cancel()
			if c != nil {
				c.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			results[i].Runs = append(results[i].Runs, run)
		}
	}
	for _, r := range results {
		t.Logf("%s: dd %v, getppid %.0f ns (medians of %d)", r.Variant,
			time.Duration(Median(collect(r.Runs, func(u UnrelatedRun) float64 { return float64(u.DD) }))),
			Median(collect(r.Runs, func(u UnrelatedRun) float64 { return u.Getppid })), len(r.Runs))
	}
	for _, row := range UnrelatedRows(results) {
		t.Logf("| %s |", strings.Join(row, " | "))
	}
}
