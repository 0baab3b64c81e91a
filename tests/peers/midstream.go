package peers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// FakeRequest is the request text the slow-body server puts in its bodies:
// a monitor that starts while such a body is in flight must never report
// it as a request.
const FakeRequest = "GET /fake HTTP/1.1\r\nHost: evil\r\n\r\n"

// Bounds of the slow-body peers.
const (
	maxSlowPieces   = 100000
	slowPieceDelay  = 20 * time.Millisecond
	maxSlowRequests = 1000
)

// runSlowBodyServer serves HTTP/1.1 keep-alive on raw sockets so that each
// body piece is one write(2). GET /slow?n=N answers a body of N copies of
// FakeRequest, one write each, one every 20 ms until the file named by
// -release exists, then as fast as it can. Any other request gets 200 with
// a small body; a request body (Content-Length) is read and discarded.
func runSlowBodyServer(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("slow-body-server")
	listen := fs.String("listen", "", "host:port")
	release := fs.String("release", "", "file whose existence ends the slow pace")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *release == "" {
		return errors.New("need -listen and -release")
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() { <-ctx.Done(); ln.Close() }()
	printReady(stdout, ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go serveSlow(ctx, c, *release)
	}
}

func serveSlow(ctx context.Context, c net.Conn, release string) {
	defer c.Close()
	br := bufio.NewReader(c)
	for ctx.Err() == nil {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, io.LimitReader(req.Body, MaxBodyBytes)); err != nil {
			return
		}
		req.Body.Close()
		if req.URL.Path != "/slow" {
			body := "ok " + req.URL.Path + "\n"
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				return
			}
			continue
		}
		n, _ := strconv.Atoi(req.URL.Query().Get("n"))
		n = max(1, min(n, maxSlowPieces))
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n*len(FakeRequest)); err != nil {
			return
		}
		released := false
		for i := 0; i < n && ctx.Err() == nil; i++ {
			if !released {
				if _, err := os.Stat(release); err == nil {
					released = true
				} else {
					time.Sleep(slowPieceDelay)
				}
			}
			if _, err := io.WriteString(c, FakeRequest); err != nil {
				return
			}
		}
	}
}

// SlowBodyReport is the slow-body client's report: the requests it made
// after the slow body, each answered.
type SlowBodyReport struct {
	SlowBody int64        `json:"slowBody"`
	Results  []HTTPResult `json:"results"`
}

// runSlowBodyClient opens one connection, fetches /slow (its body full of
// request text, arriving slowly), then makes -after requests on the same
// connection, one at a time: GETs, and every fifth a POST whose body, full
// of request text, is written in a write of its own after the head.
func runSlowBodyClient(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("slow-body-client")
	addr := fs.String("addr", "", "server host:port")
	pieces := fs.Int("pieces", 1000, "pieces of the slow body")
	after := fs.Int("after", 20, "requests after the slow body")
	mark := fs.String("mark", "mid", "query marker of the requests")
	timeout := fs.Duration("timeout", 60*time.Second, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" || *after > maxSlowRequests {
		return fmt.Errorf("need -addr and at most %d requests after", maxSlowRequests)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", *addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	br := bufio.NewReader(c)
	read := func(method, path string) (HTTPResult, error) {
		req, _ := http.NewRequest(method, "http://"+*addr+path, nil)
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return HTTPResult{}, fmt.Errorf("read response to %s: %w", path, err)
		}
		n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBodyBytes))
		resp.Body.Close()
		return HTTPResult{Method: method, Path: path, Proto: resp.Proto, Status: resp.StatusCode, RespBody: n}, err
	}
	slow := fmt.Sprintf("/slow?n=%d&c=%s", *pieces, *mark)
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", slow, *addr); err != nil {
		return err
	}
	first, err := read(http.MethodGet, slow)
	if err != nil {
		return err
	}
	rep := SlowBodyReport{SlowBody: first.RespBody}
	for i := 0; i < *after; i++ {
		p := fmt.Sprintf("/after/%d?c=%s", i, *mark)
		method := http.MethodGet
		if i%5 == 4 {
			method = http.MethodPost
			body := strings.Repeat(FakeRequest, 4)
			if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", p, *addr, len(body)); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond) // the body in a write of its own
			if _, err := io.WriteString(c, body); err != nil {
				return err
			}
		} else if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", p, *addr); err != nil {
			return err
		}
		r, err := read(method, p)
		if err != nil {
			return err
		}
		rep.Results = append(rep.Results, r)
	}
	return writeReport(stdout, rep)
}
