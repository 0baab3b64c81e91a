package wire

import "time"

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
