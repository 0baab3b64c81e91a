package wire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client bounds.
const (
	// MaxResponseBytes bounds a response body the client reads.
	MaxResponseBytes = 32 << 20
	// DefaultClientTimeout bounds one request.
	DefaultClientTimeout = 10 * time.Second
)

// Client talks to a weir-daemon's HTTP API.
type Client struct {
	base *url.URL
	http *http.Client
}

// NewClient returns a client for the daemon at addr: "host:port" or an
// http:// URL. hc nil means a client with DefaultClientTimeout.
func NewClient(addr string, hc *http.Client) (*Client, error) {
	raw := addr
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("daemon address %q: want host:port or an http:// URL", addr)
	}
	if hc == nil {
		hc = &http.Client{Timeout: DefaultClientTimeout}
	}
	return &Client{base: u, http: hc}, nil
}

// Addr returns the daemon's base URL.
func (c *Client) Addr() string { return c.base.String() }

// UnreachableError means no daemon answered at the address.
type UnreachableError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("weir-daemon is not reachable at %s: is it running? (%v)", e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// StatusError is an error response from the daemon.
type StatusError struct {
	Path    string
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("weir-daemon: GET %s: %d %s: %s", e.Path, e.Status, http.StatusText(e.Status), e.Message)
}

// Pods returns every enrolled pod attachment.
func (c *Client) Pods(ctx context.Context) ([]Pod, error) {
	var pods []Pod
	if err := c.GetJSON(ctx, "/api/v1/pods", &pods); err != nil {
		return nil, err
	}
	return pods, nil
}

// GetJSON fetches path and decodes its JSON body into v. Connection
// failures are *UnreachableError, error statuses *StatusError.
func (c *Client) GetJSON(ctx context.Context, path string, v any) error {
	return c.GetJSONQuery(ctx, path, nil, v)
}

// GetJSONQuery is GetJSON with query parameters.
func (c *Client) GetJSONQuery(ctx context.Context, path string, query url.Values, v any) error {
	u := c.base.JoinPath(path)
	if len(query) > 0 {
		u.RawQuery = query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("build request for %s: %w", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return &UnreachableError{Addr: c.base.Host, Err: opErr.Err}
		}
		return fmt.Errorf("weir-daemon at %s: GET %s: %w", c.base.Host, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("weir-daemon: GET %s: read body: %w", path, err)
	}
	if len(body) > MaxResponseBytes {
		return fmt.Errorf("weir-daemon: GET %s: response over %d bytes", path, MaxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		if json.Unmarshal(body, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(body))
		}
		return &StatusError{Path: path, Status: resp.StatusCode, Message: eb.Error}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("weir-daemon: GET %s: decode response: %w", path, err)
	}
	return nil
}

// Connections returns live and recently closed connections, newest first.
func (c *Client) Connections(ctx context.Context) ([]ConnInfo, error) {
	var out []ConnInfo
	if err := c.GetJSON(ctx, "/api/v1/connections", &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Requests returns the latest HTTP exchanges, newest first: of pod
// ("namespace/name") when not empty, at most limit when positive.
func (c *Client) Requests(ctx context.Context, pod string, limit int) ([]Request, error) {
	q := url.Values{}
	if pod != "" {
		q.Set("pod", pod)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out []Request
	if err := c.GetJSONQuery(ctx, "/api/v1/requests", q, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Features returns the node's capture features.
func (c *Client) Features(ctx context.Context) (Features, error) {
	var out Features
	err := c.GetJSON(ctx, "/api/v1/features", &out)
	return out, err
}
