// Command tlsgocost measures what calls of crypto/tls's (*Conn).Read and
// (*Conn).Write cost this process: N of each on a connection whose
// handshake already failed (each returns the handshake error at once),
// printing nanoseconds per Read and per Write. Run with the
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
	start := time.Now()
	for range n {
		if _, err := c.Read(buf); err == nil {
			fmt.Fprintln(os.Stderr, "read succeeded")
			os.Exit(1)
		}
	}
	read := time.Since(start)
	start = time.Now()
	for range n {
		if _, err := c.Write(buf); err == nil {
			fmt.Fprintln(os.Stderr, "write succeeded")
			os.Exit(1)
		}
	}
	write := time.Since(start)
	fmt.Println(float64(read.Nanoseconds())/float64(n), float64(write.Nanoseconds())/float64(n))
}
