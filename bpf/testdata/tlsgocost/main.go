// Command tlsgocost measures what a call of crypto/tls's (*Conn).Read costs
// this process: N calls on a connection whose handshake already failed
// (each returns the handshake error at once, through (*Conn).Read and
// (*Conn).handshakeContext), printing nanoseconds per call. Run with the
// binary probed and not, from a process outside every enrolled namespace,
// it gives the probes' cost to processes they do not capture.
package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

func main() {
	n, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "usage: tlsgocost N")
		os.Exit(2)
	}
	a, b := net.Pipe()
	b.Close()
	c := tls.Client(a, &tls.Config{InsecureSkipVerify: true})
	if c.Handshake() == nil {
		fmt.Fprintln(os.Stderr, "handshake on a closed pipe succeeded")
		os.Exit(1)
	}
	buf := make([]byte, 16)
	if _, err := c.Write(buf); err == nil { // keeps Write in the binary, probed as in any TLS client
		fmt.Fprintln(os.Stderr, "write succeeded")
		os.Exit(1)
	}
	start := time.Now()
	for range n {
		if _, err := c.Read(buf); err == nil {
			fmt.Fprintln(os.Stderr, "read succeeded")
			os.Exit(1)
		}
	}
	fmt.Println(float64(time.Since(start).Nanoseconds()) / float64(n))
}
