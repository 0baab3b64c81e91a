package main

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// debugExitPort is the I/O port of QEMU's isa-debug-exit device as the
// harness attaches it (-device isa-debug-exit,iobase=0xf4,iosize=0x04).
const debugExitPort = 0xf4

// outb writes val to an I/O port (implemented in debugexit_amd64.s: Debian's
// kernels have no /dev/port, so the guest needs the instruction itself).
func outb(port uint16, val uint8)

// debugExit ends QEMU with status (code<<1)|1. It returns only on failure.
func debugExit(code int) error {
	if code < 0 || code > 0x7f {
		return fmt.Errorf("exit code %d does not fit isa-debug-exit's byte", code)
	}
	if err := unix.Ioperm(debugExitPort, 1, 1); err != nil {
		return fmt.Errorf("ioperm(0x%x): %w", debugExitPort, err)
	}
	outb(debugExitPort, uint8(code))
	return errors.New("QEMU is still running after the write to isa-debug-exit: is the device attached?")
}
