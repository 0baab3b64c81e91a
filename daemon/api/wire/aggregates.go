package wire

// The aggregation API's documents: /api/v1/services, /api/v1/topology,
// /api/v1/services/{name}/endpoints and /series. Package metrics computes
// them; they live here so that clients — weirctl, the dashboard's tests,
// the demo — decode the exact wire shape without linking the aggregator and
// its Prometheus dependency.

import "time"

// Latency summarises request latencies in milliseconds. Percentiles come
// from log-linear histograms with a relative error of at most 6.25%
// (see package metrics); Avg is exact.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Avg float64 `json:"avg"`
}

// HTTP summarises HTTP exchanges over a window. SuccessRate is in 0..1:
// an HTTP exchange succeeds when its status is below 500, a gRPC one when
// grpc-status is 0; an exchange without a response or reset counts as an
// error. With no requests SuccessRate is 1.
type HTTP struct {
	Requests    uint64  `json:"requests"`
	Errors      uint64  `json:"errors"`
	RPM         float64 `json:"rpm"`
	SuccessRate float64 `json:"successRate"`
	LatencyMs   Latency `json:"latencyMs"`
}

// TCP summarises kernel-level TCP activity over a window. RTTMs is the mean
// smoothed RTT of the connections closed in the window (0 when none was
// measured).
type TCP struct {
	Connects    uint64  `json:"connects"`
	Accepts     uint64  `json:"accepts"`
	Closes      uint64  `json:"closes"`
	BytesSent   uint64  `json:"bytesSent"`
	BytesRecv   uint64  `json:"bytesRecv"`
	Retransmits uint64  `json:"retransmits"`
	Drops       uint64  `json:"drops"`
	RTTMs       float64 `json:"rttMs"`
}

// Service is one entry of GET /api/v1/services. Name is
// "<service>.<namespace>". HTTP is the server-side view (exchanges the
// service's pods answered); TCP totals the service's pods.
type Service struct {
	Name      string `json:"name"`
	Service   string `json:"service"`
	Namespace string `json:"namespace"`
	Pods      int    `json:"pods"`
	// KubernetesService says the name is a Kubernetes Service selecting
	// the pods, which SkyWalking's OAP resolves from every node. A name
	// that is not (the app label, the owner) is Weir's own: the OAP shows
	// the pods under it in this node's data and as Unknown in other
	// nodes'.
	KubernetesService bool `json:"kubernetesService"`
	HTTP              HTTP `json:"http"`
	TCP               TCP  `json:"tcp"`
}

// Node kinds of the topology.
const (
	KindService  = "service"
	KindExternal = "external"
)

// Node is a topology node: a service, or a remote address that is not a
// pod on this node (ID is then the IP address).
type Node struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
}

// Edge is client → server traffic between two nodes. Protocol is
// "HTTP/2", "HTTP/1.1" (or "HTTP/1.0") when HTTP was seen, else "TCP". TCP
// byte counts are from the client's side: BytesSent flowed client → server.
// Error is set when SuccessRate < 0.95 or any drop or retransmit was seen.
type Edge struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	Protocol string `json:"protocol"`
	HTTP     HTTP   `json:"http"`
	TCP      TCP    `json:"tcp"`
	Error    bool   `json:"error"`
}

// Topology is GET /api/v1/topology.
type Topology struct {
	Nodes []Node `json:"nodes"`
	Edges []Edge `json:"edges"`
}

// OtherEndpoint names the bucket that collects a service's requests past
// its distinct-endpoint limit.
const OtherEndpoint = "<other>"

// Endpoint is one entry of GET /api/v1/services/{name}/endpoints: requests
// the service answered for "METHOD:path" (path normalised through the route
// patterns).
type Endpoint struct {
	Endpoint    string  `json:"endpoint"`
	Method      string  `json:"method"`
	Path        string  `json:"path"`
	Requests    uint64  `json:"requests"`
	Errors      uint64  `json:"errors"`
	RPM         float64 `json:"rpm"`
	SuccessRate float64 `json:"successRate"`
	LatencyMs   Latency `json:"latencyMs"`
}

// Series is GET /api/v1/services/{name}/series: one point per step,
// oldest first, the last one covering the current (partial) step.
type Series struct {
	Step   string  `json:"step"`
	Points []Point `json:"points"`
}

// Point is one step of a Series. Time is the start of the step (UTC).
type Point struct {
	Time         time.Time `json:"time"`
	HTTPRequests uint64    `json:"httpRequests"`
	HTTPErrors   uint64    `json:"httpErrors"`
	P99Ms        float64   `json:"p99Ms"`
	AvgMs        float64   `json:"avgMs"`
	BytesSent    uint64    `json:"bytesSent"`
	BytesRecv    uint64    `json:"bytesRecv"`
	Retransmits  uint64    `json:"retransmits"`
	Drops        uint64    `json:"drops"`
	Connects     uint64    `json:"connects"`
}
