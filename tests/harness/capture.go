package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/weirnet/weir/daemon/api/wire"
)

// Connection is one entry of GET /api/v1/connections: the daemon's own
// type, so the suites break loudly when the API changes shape.
type Connection = wire.ConnInfo

// Request is one entry of GET /api/v1/requests: one HTTP exchange the
// daemon recorded (the daemon's own type).
type Request = wire.Request

// ConnQuery selects connections; zero fields are not sent.
type ConnQuery struct {
	Pod   string // "namespace/name"
	State string // "open", "closed" or ""
	Limit int
}

// Connections returns GET /api/v1/connections for q.
func (d *Daemon) Connections(ctx context.Context, q ConnQuery) ([]Connection, error) {
	v := url.Values{}
	if q.Pod != "" {
		v.Set("pod", q.Pod)
	}
	if q.State != "" {
		v.Set("state", q.State)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out []Connection
	if err := d.GetJSON(ctx, "/api/v1/connections?"+v.Encode(), &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Requests returns GET /api/v1/requests for a pod ("namespace/name"),
// newest first, at most limit.
func (d *Daemon) Requests(ctx context.Context, pod string, limit int) ([]Request, error) {
	v := url.Values{}
	if pod != "" {
		v.Set("pod", pod)
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var out []Request
	if err := d.GetJSON(ctx, "/api/v1/requests?"+v.Encode(), &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Get fetches an API path and returns its body (for non-JSON endpoints
// such as /metrics).
func (d *Daemon) Get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL(path), nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return nil, fmt.Errorf("GET %s: read body: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, tail(body, 2048))
	}
	return body, nil
}

// Poll calls fn every interval until it reports done, returns an error, or
// ctx ends. The daemon processes events asynchronously, so suites wait for
// the state they expect — with a bound — instead of sleeping.
func Poll(ctx context.Context, interval time.Duration, fn func() (bool, error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		done, err := fn()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Dump is one connection's debug dump (daemon flag --capture.dump-dir):
// the reassembled bytes of each direction exactly as the protocol parsers
// were given them, with any bytes the capture does not have cut out (their
// runs are listed as gaps in Meta). Suites compare it with what the peers
// themselves wrote and read.
type Dump struct {
	Egress, Ingress []byte
	Meta            json.RawMessage // <id>.json: gaps and ConnInfo
}

// WaitDump waits (bounded by ctx) until the dump of connection id is
// complete — its <id>.json is written when the connection leaves the
// daemon's table, after the last bytes — and reads it.
func WaitDump(ctx context.Context, dir string, id uint64) (Dump, error) {
	var d Dump
	var last error
	err := Poll(ctx, 50*time.Millisecond, func() (bool, error) {
		d, last = ReadDump(dir, id)
		return last == nil, nil
	})
	if err != nil {
		return d, fmt.Errorf("dump of connection %d: %w (last: %v)", id, err, last)
	}
	return d, nil
}

// ReadDump reads the dump files of connection id from dir.
func ReadDump(dir string, id uint64) (Dump, error) {
	var d Dump
	base := filepath.Join(dir, strconv.FormatUint(id, 10))
	var err error
	if d.Egress, err = os.ReadFile(base + "-egress.bin"); err != nil {
		return d, fmt.Errorf("read dump: %w", err)
	}
	if d.Ingress, err = os.ReadFile(base + "-ingress.bin"); err != nil {
		return d, fmt.Errorf("read dump: %w", err)
	}
	if d.Meta, err = os.ReadFile(base + ".json"); err != nil {
		return d, fmt.Errorf("read dump: %w", err)
	}
	return d, nil
}

// Command returns a command that runs argv inside the namespace, like
// Pod.Command, for namespaces that are not attached to any CNI network.
func (n *NetNS) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, argv...)...)
}

// Host runs commands in the test's own (the host's) network namespace. It
// has the same Command method as Pod and NetNS so helpers can place a
// process anywhere.
type Host struct{}

// Command returns a command that runs argv on the host.
func (Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}
