package bpf

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// childEnv makes the test binary act as a short-lived client process:
// connect to the address in the variable, send one line, read the reply
// until EOF, exit. It is re-executed from a thread inside an enrolled
// netns, so the process lives there from its first instruction.
const childEnv = "WEIR_BPF_TEST_CHILD"

// sleepEnv makes the test binary a process that only waits, for the
// duration in the variable: a process to find in a netns, where the guest
// kernels' initramfs has no sleep(1).
const sleepEnv = "WEIR_BPF_TEST_SLEEP"

func TestMain(m *testing.M) {
	if dir := os.Getenv(h2PeerEnv); dir != "" {
		if err := h2Peer(dir); err != nil {
			fmt.Fprintln(os.Stderr, "h2 peer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if d := os.Getenv(sleepEnv); d != "" {
		wait, err := time.ParseDuration(d)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sleeper:", err)
			os.Exit(1)
		}
		time.Sleep(wait)
		os.Exit(0)
	}
	if addr := os.Getenv(childEnv); addr != "" {
		if err := runChild(addr); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(addr string) error {
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "hello from child %d\n", os.Getpid()); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, bufio.NewReader(c))
	return err
}
