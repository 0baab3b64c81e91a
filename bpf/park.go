package bpf

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ringParker lets Run wait for an idle ring buffer without a timer and
// without a thread blocked in a syscall: a duplicate of the ring's file
// descriptor is registered with Go's network poller, and the kernel's
// wakeup of the ring's wait queue (the first record written into an empty
// ring, see RB_FLAGS in capture.bpf.c) makes the poller run Run again.
//
// Why not ringbuf.Reader's own blocking read: it blocks a thread in
// epoll_wait, and the runtime's sysmon then wakes every few microseconds
// to look at it. Why not the poll interval's timer alone: an idle daemon
// woke 100 times a second to find the ring empty.
type ringParker struct {
	f      *os.File
	rc     syscall.RawConn
	closed atomic.Bool
}

// newRingParker registers a duplicate of m's descriptor with the network
// poller. It fails if the runtime cannot poll it (then Run keeps to its
// timer).
func newRingParker(m *ebpf.Map) (*ringParker, error) {
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate ring buffer fd: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ring buffer fd non-blocking: %w", err)
	}
	// A non-blocking descriptor is registered with the poller (edge
	// triggered) by os.NewFile; one the poller refuses is not, and
	// SetReadDeadline then says so.
	f := os.NewFile(uintptr(fd), "ringbuf")
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("ring buffer fd is not pollable: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ring buffer fd: %w", err)
	}
	return &ringParker{f: f, rc: rc}, nil
}

// park returns once ready reports true or interrupt was called since the
// last park. ready is evaluated after the poller is armed, so a wakeup
// that comes between the evaluation and the wait is not lost. After close
// it returns os.ErrClosed.
func (p *ringParker) park(ready func() bool) error {
	err := p.rc.Read(func(uintptr) bool { return ready() })
	if p.closed.Load() {
		return os.ErrClosed
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// Interrupted. Clearing the deadline cannot lose a later
		// interrupt: whoever interrupts changes its state first, and the
		// caller looks at that state before it parks again.
		if err := p.f.SetReadDeadline(time.Time{}); err != nil {
			return fmt.Errorf("clear ring buffer wait deadline: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("wait for ring buffer: %w", err)
	}
	return nil
}

// interrupt ends the current or next park. Safe from any goroutine.
func (p *ringParker) interrupt() {
	_ = p.f.SetReadDeadline(time.Unix(1, 0))
}

// close ends any park with an error and releases the descriptor.
func (p *ringParker) close() error {
	p.closed.Store(true)
	return p.f.Close()
}
