package bpf

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/weirnet/weir/bpf/event"
)

// parkedPoll is the longest poll interval: a reader that waited on its
// timer rather than the kernel's wakeup would be seconds late, and a
// parked reader has no timer at all, so what the tests below see
// delivered was delivered because something woke the parked reader.
const parkedPoll = maxPollInterval

// waitParked waits until Run has parked more than `after` times.
func waitParked(t *testing.T, c *Collector, after uint64) {
	t.Helper()
	eventually(t, 10*parkedPoll, "the idle reader to park", func() bool { return c.ReaderStats().Parks > after })
}

// Privileged: loads the capture programs and makes traffic in a netns.
func TestIdleReaderParksAndTheKernelWakesItForTheFirstRecord(t *testing.T) {
	r := startCollector(t, Config{PollInterval: parkedPoll})
	ns := newNetns(t)
	const pod = 31
	if err := r.Enroll(ns.ino, pod); err != nil {
		t.Fatal(err)
	}
	waitParked(t, r.Collector, 0)
	parks := r.ReaderStats().Parks

	start := time.Now()
	convs := exchange(t, ns, "tcp4", "127.0.0.1:0", 3, 1)
	checkConversations(t, r, ns, pod, convs)
	t.Logf("conversations delivered %v after they began, reader parked %d times before", time.Since(start), parks)

	// Back to idle, the reader parks again instead of polling.
	waitParked(t, r.Collector, r.ReaderStats().Parks)
}

// Privileged: loads the capture programs.
func TestParkedReaderEndsWhenCanceledOrClosed(t *testing.T) {
	requireRoot(t)
	c, err := Load(Config{PollInterval: parkedPoll}, testLogger(t))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			c.Close()
		}
	})
	run := func(ctx context.Context) <-chan error {
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx, &recorder{}) }()
		return done
	}
	ended := func(done <-chan error, want error) {
		t.Helper()
		select {
		case err := <-done:
			if !errors.Is(err, want) {
				t.Fatalf("Run returned %v, want %v", err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run still parked 5 s after it was told to end")
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := run(ctx)
	waitParked(t, c, 0)
	cancel()
	ended(done, nil)

	// A later Run parks again and ends when the collector closes.
	done = run(context.Background())
	waitParked(t, c, c.ReaderStats().Parks)
	closed = true
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ended(done, ErrClosed)
}

// Privileged: loads the capture programs and runs a process in a netns.
func TestEnrollWakesAParkedReaderToDeliverExistingProcesses(t *testing.T) {
	r := startCollector(t, Config{PollInterval: parkedPoll})
	waitParked(t, r.Collector, 0)

	ns := newNetns(t)
	var sleeper *exec.Cmd
	wait(t, in(ns, func() error {
		sleeper = exec.Command(os.Args[0], "-test.run=^$")
		sleeper.Env = append(os.Environ(), sleepEnv+"=60s")
		return sleeper.Start()
	}), 5*time.Second)
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })

	const pod = 32
	if err := r.Enroll(ns.ino, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the sleeper reported as an existing process", func() bool {
		for _, p := range r.rec.all().procs {
			if p.Kind == event.ProcessExisting && p.Proc.TGID == uint32(sleeper.Process.Pid) && p.Proc.PodID == pod {
				return true
			}
		}
		return false
	})
}
