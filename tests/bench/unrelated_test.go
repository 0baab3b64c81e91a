package bench

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
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
			run, err := MeasureUnrelated(ctx, 0)
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

// WaitSettled reports a process that idles as settled within a window or
// two, and one that keeps a core busy as not settled when time runs out.
func TestWaitSettledTellsAnIdleProcessFromABusyOne(t *testing.T) {
	ctx := context.Background()
	idle := exec.Command("sleep", "30")
	busy := exec.Command("sh", "-c", "while :; do :; done")
	for _, c := range []*exec.Cmd{idle, busy} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	took, settled, err := WaitSettled(ctx, idle.Process.Pid, 5*time.Second)
	if err != nil || !settled {
		t.Fatalf("sleep: settled %v after %v (%v), want settled", settled, took, err)
	}
	took, settled, err = WaitSettled(ctx, busy.Process.Pid, 2*time.Second)
	if err != nil || settled {
		t.Fatalf("busy loop: settled %v after %v (%v), want not settled", settled, took, err)
	}
	if took < 2*time.Second {
		t.Fatalf("busy loop: gave up after %v, before the 2s timeout", took)
	}
}
