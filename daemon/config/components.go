package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"
)

// Metrics configures aggregation (package daemon/metrics): what the
// dashboard, weirctl and /metrics report per service, edge and endpoint.
type Metrics struct {
	// RoutePatterns normalise request paths into endpoints, e.g.
	// "/product/{id}". Paths that match none count as themselves, up to
	// MaxEndpointsPerService; the rest share an "<other>" endpoint.
	RoutePatterns []string `json:"routePatterns"`
	// MaxEndpointsPerService bounds distinct endpoints per service.
	MaxEndpointsPerService int `json:"maxEndpointsPerService"`
	// Retention is how far back the windowed queries and series reach.
	Retention Duration `json:"retention"`
}

// OAP configures the SkyWalking exporter (package daemon/export/skywalking).
// It is off while Address is empty.
type OAP struct {
	Address     string   `json:"address"`     // host:port of the OAP's gRPC receiver
	Token       string   `json:"token"`       // sent as "Authentication" metadata
	CAFile      string   `json:"caFile"`      // PEM CA bundle; empty: system roots
	Insecure    bool     `json:"insecure"`    // plaintext gRPC (the OAP's default on 11800)
	ServerName  string   `json:"serverName"`  // TLS server name override
	FlushPeriod Duration `json:"flushPeriod"` // how often a batch is sent
	BatchSize   int      `json:"batchSize"`   // most messages per stream
	QueueSize   int      `json:"queueSize"`   // entries queued while the OAP is slow or down
}

// Identity configures how pods are named (package daemon/identity).
type Identity struct {
	// CRISocket is the runtime's CRI socket, for pod labels and container
	// names; empty turns the CRI lookup off.
	CRISocket string `json:"criSocket"`
	// Kubeconfig is used for the Services/EndpointSlices informers; empty:
	// in-cluster configuration when running in a pod, else no Kubernetes.
	Kubeconfig string `json:"kubeconfig"`
}

// Defaults of the component sections.
const (
	DefaultMaxEndpointsPerService = 100
	DefaultMetricsRetention       = 30 * time.Minute
	DefaultOAPFlushPeriod         = time.Second
	DefaultOAPBatchSize           = 500
	DefaultOAPQueueSize           = 50000
	DefaultCRISocket              = "/run/containerd/containerd.sock"
	DefaultServiceNameTemplate    = "{{.ServiceName}}.{{.Namespace}}"
)

func defaultComponents(c *Config) {
	c.Metrics = Metrics{
		MaxEndpointsPerService: DefaultMaxEndpointsPerService,
		Retention:              Duration{DefaultMetricsRetention},
	}
	c.OAP = OAP{
		FlushPeriod: Duration{DefaultOAPFlushPeriod},
		BatchSize:   DefaultOAPBatchSize,
		QueueSize:   DefaultOAPQueueSize,
	}
	c.Identity = Identity{CRISocket: DefaultCRISocket}
	c.ServiceNameTemplate = DefaultServiceNameTemplate
	c.ExcludeNamespaces = []string{"kube-system"}
}

// componentFlags maps the component sections' YAML keys to their flags.
var componentFlags = map[string]string{
	"metrics.routePatterns":          "metrics.route-patterns",
	"metrics.maxEndpointsPerService": "metrics.max-endpoints-per-service",
	"metrics.retention":              "metrics.retention",
	"oap.address":                    "oap",
	"oap.token":                      "oap-token",
	"oap.caFile":                     "oap-ca",
	"oap.insecure":                   "oap-insecure",
	"oap.serverName":                 "oap-server-name",
	"oap.flushPeriod":                "oap-flush-period",
	"oap.batchSize":                  "oap-batch-size",
	"oap.queueSize":                  "oap-queue-size",
	"cluster":                        "cluster",
	"excludeNamespaces":              "exclude-namespaces",
	"serviceNameTemplate":            "service-name-template",
	"identity.criSocket":             "cri-socket",
	"identity.kubeconfig":            "kubeconfig",
}

func componentFlagSet(fs *flag.FlagSet, c *Config) {
	fs.Var((*stringList)(&c.Metrics.RoutePatterns), "metrics.route-patterns",
		"comma-separated route `patterns` that name endpoints, e.g. /product/{id}")
	fs.IntVar(&c.Metrics.MaxEndpointsPerService, "metrics.max-endpoints-per-service", c.Metrics.MaxEndpointsPerService,
		"distinct endpoints kept per service (the rest share \"<other>\")")
	fs.DurationVar(&c.Metrics.Retention.Duration, "metrics.retention", c.Metrics.Retention.Duration,
		"how far back windowed metrics and series reach")
	fs.StringVar(&c.OAP.Address, "oap", c.OAP.Address, "SkyWalking OAP gRPC `host:port` (empty: no export)")
	fs.StringVar(&c.OAP.Token, "oap-token", c.OAP.Token, "token sent to the OAP as Authentication metadata")
	fs.StringVar(&c.OAP.CAFile, "oap-ca", c.OAP.CAFile, "PEM CA `file` for the OAP's TLS certificate")
	fs.BoolVar(&c.OAP.Insecure, "oap-insecure", c.OAP.Insecure, "talk to the OAP without TLS")
	fs.StringVar(&c.OAP.ServerName, "oap-server-name", c.OAP.ServerName, "TLS server `name` of the OAP")
	fs.DurationVar(&c.OAP.FlushPeriod.Duration, "oap-flush-period", c.OAP.FlushPeriod.Duration, "how often a batch is sent")
	fs.IntVar(&c.OAP.BatchSize, "oap-batch-size", c.OAP.BatchSize, "most messages per export stream")
	fs.IntVar(&c.OAP.QueueSize, "oap-queue-size", c.OAP.QueueSize, "entries queued while the OAP is slow or down (oldest dropped)")
	fs.StringVar(&c.Cluster, "cluster", c.Cluster, "cluster `name` reported to the OAP")
	fs.Var((*stringList)(&c.ExcludeNamespaces), "exclude-namespaces", "comma-separated `namespaces` not exported")
	fs.StringVar(&c.ServiceNameTemplate, "service-name-template", c.ServiceNameTemplate,
		"Go `template` naming a pod's service for the OAP (.ServiceName, .Namespace, .PodName)")
	fs.StringVar(&c.Identity.CRISocket, "cri-socket", c.Identity.CRISocket, "runtime CRI socket `path` (empty: off)")
	fs.StringVar(&c.Identity.Kubeconfig, "kubeconfig", c.Identity.Kubeconfig, "kubeconfig `file` (empty: in-cluster when in a pod)")
}

func (c *Config) validateComponents() error {
	if c.Metrics.MaxEndpointsPerService < 1 || c.Metrics.MaxEndpointsPerService > 10000 {
		return &Error{Key: "metrics.maxEndpointsPerService", Err: fmt.Errorf("must be between 1 and 10000, got %d", c.Metrics.MaxEndpointsPerService)}
	}
	if c.Metrics.Retention.Duration < time.Minute {
		return &Error{Key: "metrics.retention", Err: fmt.Errorf("must be at least 1m, got %s", c.Metrics.Retention)}
	}
	if c.OAP.Address != "" {
		if _, _, err := net.SplitHostPort(c.OAP.Address); err != nil {
			return &Error{Key: "oap.address", Err: fmt.Errorf("want host:port, got %q", c.OAP.Address)}
		}
	}
	if c.OAP.FlushPeriod.Duration <= 0 {
		return &Error{Key: "oap.flushPeriod", Err: fmt.Errorf("must be positive, got %s", c.OAP.FlushPeriod)}
	}
	if c.OAP.BatchSize < 1 {
		return &Error{Key: "oap.batchSize", Err: fmt.Errorf("must be at least 1, got %d", c.OAP.BatchSize)}
	}
	if c.OAP.QueueSize < 2*c.OAP.BatchSize {
		return &Error{Key: "oap.queueSize", Err: fmt.Errorf("must be at least twice oap.batchSize (%d), got %d", 2*c.OAP.BatchSize, c.OAP.QueueSize)}
	}
	if c.OAP.CAFile != "" && !filepath.IsAbs(c.OAP.CAFile) {
		return &Error{Key: "oap.caFile", Err: fmt.Errorf("must be an absolute path, got %q", c.OAP.CAFile)}
	}
	if c.Identity.CRISocket != "" && !filepath.IsAbs(c.Identity.CRISocket) {
		return &Error{Key: "identity.criSocket", Err: fmt.Errorf("must be an absolute path or empty, got %q", c.Identity.CRISocket)}
	}
	if c.ServiceNameTemplate == "" {
		return &Error{Key: "serviceNameTemplate", Err: errors.New("must not be empty")}
	}
	return nil
}

// stringList is a flag.Value for a comma-separated list; "" is the empty
// list.
type stringList []string

func (s *stringList) String() string {
	if s == nil {
		return ""
	}
	return strings.Join(*s, ",")
}

func (s *stringList) Set(v string) error {
	var out []string
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	*s = out
	return nil
}
