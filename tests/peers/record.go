package peers

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// ConnReport is what one client connection wrote and read, as the client
// itself saw it. Sent and Recv are byte counts; when the client was asked
// to record, SentFile and RecvFile hold the exact bytes.
type ConnReport struct {
	Local    string `json:"local"`
	Remote   string `json:"remote"`
	Sent     int64  `json:"sent"`
	Recv     int64  `json:"recv"`
	SentFile string `json:"sentFile,omitempty"`
	RecvFile string `json:"recvFile,omitempty"`
}

// errRecordLimit is returned by a recording connection whose bytes exceed
// the recorder's bound: a truncated record must not pass as ground truth.
var errRecordLimit = errors.New("recorded bytes exceed -record-limit")

// recorder wraps the client's connections and keeps, per connection, the
// bytes written and read (up to limit bytes each when dir is set; counts
// only otherwise).
type recorder struct {
	dir   string
	limit int

	// writes counts Write calls in progress. A write is counted once its
	// syscall returns, and by then the server may have answered and the
	// client moved on: reports waits for them, or a connection's last
	// request could be missing from its report.
	writes sync.WaitGroup

	mu    sync.Mutex
	conns []*recordedConn
}

func (r *recorder) wrap(c net.Conn) net.Conn {
	rc := &recordedConn{Conn: c, rec: r}
	r.mu.Lock()
	r.conns = append(r.conns, rc)
	r.mu.Unlock()
	return rc
}

// reports writes the recorded bytes (when recording) and returns one report
// per connection in dial order.
func (r *recorder) reports() ([]ConnReport, error) {
	r.writes.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ConnReport, 0, len(r.conns))
	for i, c := range r.conns {
		c.mu.Lock()
		rep := ConnReport{
			Local:  c.LocalAddr().String(),
			Remote: c.RemoteAddr().String(),
			Sent:   c.sentN,
			Recv:   c.recvN,
		}
		if r.dir != "" {
			rep.SentFile = filepath.Join(r.dir, fmt.Sprintf("conn-%d-sent.bin", i))
			rep.RecvFile = filepath.Join(r.dir, fmt.Sprintf("conn-%d-recv.bin", i))
			if err := os.WriteFile(rep.SentFile, c.sent, 0o644); err != nil {
				c.mu.Unlock()
				return nil, fmt.Errorf("write record: %w", err)
			}
			if err := os.WriteFile(rep.RecvFile, c.recv, 0o644); err != nil {
				c.mu.Unlock()
				return nil, fmt.Errorf("write record: %w", err)
			}
		}
		c.mu.Unlock()
		out = append(out, rep)
	}
	return out, nil
}

type recordedConn struct {
	net.Conn
	rec *recorder

	mu           sync.Mutex
	sent, recv   []byte
	sentN, recvN int64
}

func (c *recordedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if rerr := c.keep(&c.recv, &c.recvN, p[:n]); rerr != nil {
			return n, rerr
		}
	}
	return n, err
}

func (c *recordedConn) Write(p []byte) (int, error) {
	c.rec.writes.Add(1)
	defer c.rec.writes.Done()
	n, err := c.Conn.Write(p)
	if n > 0 {
		if rerr := c.keep(&c.sent, &c.sentN, p[:n]); rerr != nil {
			return n, rerr
		}
	}
	return n, err
}

func (c *recordedConn) keep(buf *[]byte, count *int64, p []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	*count += int64(len(p))
	if c.rec.dir == "" {
		return nil
	}
	if len(*buf)+len(p) > c.rec.limit {
		return errRecordLimit
	}
	*buf = append(*buf, p...)
	return nil
}
