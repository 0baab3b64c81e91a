package event

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Now reads CLOCK_MONOTONIC: the clock of every event timestamp, because it
// is what bpf_ktime_get_ns reads.
func Now() Timestamp {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// CLOCK_MONOTONIC cannot fail on Linux; keep the signature simple.
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err))
	}
	return Timestamp(ts.Nano())
}

// BootTime returns the wall-clock time at which the event clock was zero.
// Unlike the kernel's btime it excludes time spent suspended, so
// Timestamp.Time(BootTime()) is an event's wall-clock time. It is read once
// per process and passed to whatever converts timestamps, so that all of
// them agree.
func BootTime() time.Time {
	now := time.Now()
	return now.Add(-time.Duration(Now()))
}
