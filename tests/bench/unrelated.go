package bench

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// What Weir costs work that has nothing to do with it: a node's other
// processes, with Weir running and no pod enrolled. Two probes, each a
// worst case of its kind:
//   - dd if=/dev/zero of=/dev/null bs=1: a read and a write syscall per
//     byte, neither on a socket. Hooked syscalls (read, write) pay every
//     program attached to them even when it returns at once.
//   - getppid in a loop: a syscall no program hooks. Any syscall
//     tracepoint attached puts every task on the kernel's slow syscall
//     path, so even this one pays.
// The socket tier should leave both at baseline; the syscall tier cannot.

// UnrelatedRun is one measurement of the two probes.
type UnrelatedRun struct {
	DD      time.Duration // wall time of dd bs=1 count=DDBytes
	Getppid float64       // ns per getppid call
}

// DDBytes is dd's count: a million read+write pairs, about half a second
// at baseline on the development VM.
const DDBytes = 1_000_000

// getppidCalls is the length of the getppid loop.
const getppidCalls = 2_000_000

// MeasureUnrelated runs both probes once.
func MeasureUnrelated(ctx context.Context) (UnrelatedRun, error) {
	var r UnrelatedRun
	start := time.Now()
	cmd := exec.CommandContext(ctx, "dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count="+strconv.Itoa(DDBytes))
	if out, err := cmd.CombinedOutput(); err != nil {
		return r, fmt.Errorf("dd: %v: %s", err, out)
	}
	r.DD = time.Since(start)
	start = time.Now()
	for range getppidCalls {
		unix.Getppid()
	}
	r.Getppid = float64(time.Since(start).Nanoseconds()) / getppidCalls
	return r, nil
}

// UnrelatedResult is the probes' medians over rounds for one variant.
type UnrelatedResult struct {
	Variant string // "baseline", "socket tier", "syscall tier"
	Runs    []UnrelatedRun
}

// TargetUnrelated is the bound on dd's wall time with Weir running and
// nothing enrolled, against the same run's baseline (issue 15).
const TargetUnrelated = 1.05

// UnrelatedRows are the report's rows: each non-baseline variant's median
// dd time and getppid cost against the baseline's, as ratios. dd is judged
// against TargetUnrelated; getppid is reported.
func UnrelatedRows(results []UnrelatedResult) [][]string {
	if len(results) == 0 || len(results[0].Runs) == 0 {
		return nil
	}
	med := func(rs []UnrelatedRun) (dd, pp float64) {
		return Median(collect(rs, func(r UnrelatedRun) float64 { return float64(r.DD) })),
			Median(collect(rs, func(r UnrelatedRun) float64 { return r.Getppid }))
	}
	bdd, bpp := med(results[0].Runs)
	var rows [][]string
	for _, res := range results[1:] {
		if len(res.Runs) == 0 {
			continue
		}
		dd, pp := med(res.Runs)
		r := ratio(dd, bdd)
		rows = append(rows,
			[]string{fmt.Sprintf("dd bs=1 count=%d wall time, Weir running, nothing enrolled, %s", DDBytes, res.Variant),
				fmt.Sprintf("%.3f s", bdd/1e9), fmt.Sprintf("%.3f s", dd/1e9), fmt.Sprintf("%.3f", r),
				fmt.Sprintf("≤ %.2f", TargetUnrelated), met(r <= TargetUnrelated)},
			[]string{fmt.Sprintf("getppid (hooked by nothing), Weir running, nothing enrolled, %s", res.Variant),
				fmt.Sprintf("%.0f ns", bpp), fmt.Sprintf("%.0f ns", pp), fmt.Sprintf("%.3f", ratio(pp, bpp)), "—", ""})
	}
	return rows
}
