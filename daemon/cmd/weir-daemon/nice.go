package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setNice gives every thread of the process the nice value nice (see
// config.Config.Nice). On Linux a nice value is a thread's, not the
// process's, and a new thread starts with that of the thread that made it:
// once every thread has it, the threads the Go runtime makes later have it
// too. A thread that exits while the list is read is skipped.
func setNice(nice int) error {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("listing the daemon's threads: %w", err)
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("setting nice %d on thread %d: %w", nice, tid, err)
		}
	}
	return nil
}
