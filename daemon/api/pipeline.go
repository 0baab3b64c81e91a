package api

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"github.com/weirnet/weir/daemon/capture"
)

// Request is one HTTP exchange as GET /api/v1/requests reports it.
type Request struct {
	// Time is when the request's first byte was moved (RFC 3339 with
	// nanoseconds).
	Time time.Time `json:"time"`
	// Pod is the monitored pod, "namespace/name".
	Pod string `json:"pod"`
	// Peer is the remote address; PeerPod its pod when it is a pod
	// enrolled on this node.
	Peer    string `json:"peer"`
	PeerPod string `json:"peerPod,omitempty"`
	// Role is the monitored side: client, server or unknown.
	Role       string `json:"role"`
	Protocol   string `json:"protocol"`
	Method     string `json:"method"`
	Path       string `json:"path"`
	Host       string `json:"host,omitempty"`
	Status     int    `json:"status"`
	GRPCStatus *int   `json:"grpcStatus,omitempty"`
	// LatencyMs is from the request's first byte to the response's last.
	LatencyMs float64 `json:"latencyMs"`
	// ReqBytes and RespBytes are header plus body wire sizes.
	ReqBytes     uint64 `json:"reqBytes"`
	RespBytes    uint64 `json:"respBytes"`
	TraceID      string `json:"traceId,omitempty"`
	Incomplete   bool   `json:"incomplete"`
	ConnectionID uint64 `json:"connectionId"`
}

// Features is GET /api/v1/features: what this node's kernel lets the
// daemon measure.
type Features struct {
	// Capture says whether eBPF capture runs; Reason says why not.
	Capture bool   `json:"capture"`
	Reason  string `json:"reason,omitempty"`
	// Payload says whether payload is copied for protocol parsing; false
	// (bpf.payload=false) leaves connections and kernel metrics only.
	Payload bool `json:"payload"`
	// CaptureTier is where payload and connections are captured
	// ("socket" or "syscall"), CaptureTierReason why that one.
	CaptureTier       string `json:"captureTier,omitempty"`
	CaptureTierReason string `json:"captureTierReason,omitempty"`
	// Tier is the richest hook tier attached ("base", "fentry", "kprobe").
	Tier string `json:"tier,omitempty"`
	// TierError says why a richer tier the kernel offers is not in use.
	TierError string         `json:"tierError,omitempty"`
	Tiers     []TierStatus   `json:"tiers"`
	Hooks     []HookStatus   `json:"hooks"`
	Metrics   []MetricStatus `json:"metrics"`
}

// TierStatus is the probe result of one hook tier.
type TierStatus struct {
	Tier      string `json:"tier"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// HookStatus says whether one hook is attached and, if not, why.
type HookStatus struct {
	Name      string `json:"name"`
	Tier      string `json:"tier"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// MetricStatus says whether one kernel metric is measured on this node;
// Reason says why not, or what limits it.
type MetricStatus struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
}

// Connections returns live and recently closed connections, newest first.
func (c *Client) Connections(ctx context.Context) ([]capture.ConnInfo, error) {
	var out []capture.ConnInfo
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
