package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/weirnet/weir/daemon/registry"
)

// Pod labels that name a workload, in order of preference: the recommended
// label first, then the older convention.
const (
	LabelName = "app.kubernetes.io/name"
	LabelApp  = "app"
)

// Defaults of CRIOptions.
const (
	DefaultCRITimeout       = 2 * time.Second
	DefaultCRIMaxSandboxes  = 4096
	DefaultCRIWorkers       = 2
	DefaultCRIQueueSize     = 1024
	DefaultCRIRetry         = 250 * time.Millisecond
	DefaultCRIMaxAttempts   = 10
	DefaultContainerRefresh = 2 * time.Second
)

// CRIOptions configures NewCRI. Zero values mean the defaults above.
type CRIOptions struct {
	// Socket is the runtime's CRI socket, e.g.
	// /run/containerd/containerd.sock. Required.
	Socket string
	// Timeout bounds each CRI call.
	Timeout time.Duration
	// MaxSandboxes bounds the cache; when full, the least recently used
	// sandbox is evicted (and counted).
	MaxSandboxes int
	// Workers is the number of concurrent CRI calls.
	Workers int
	// QueueSize bounds the fetches waiting for a worker; a fetch that does
	// not fit is dropped (and counted) and retried by a later lookup.
	QueueSize int
	// Retry is the delay before the first retry of a failed sandbox status
	// fetch; it doubles on each attempt, up to MaxAttempts.
	Retry time.Duration
	// MaxAttempts bounds the status fetches of one sandbox. The first
	// usually fails with NotFound: the plugin enrolls the pod during CNI ADD,
	// before the runtime has recorded the sandbox.
	MaxAttempts int
	// ContainerRefresh is the least time between two container listings
	// of one sandbox, however many unknown container ids are asked about.
	ContainerRefresh time.Duration
	// Logger receives fetch failures; nil discards.
	Logger *slog.Logger
}

// CRIStats are the CRI resolver's counters.
type CRIStats struct {
	Sandboxes    int    `json:"sandboxes"`    // cached sandboxes
	Lookups      uint64 `json:"lookups"`      // Service, ContainerName and Labels calls
	Hits         uint64 `json:"hits"`         // lookups answered from the cache
	Fetches      uint64 `json:"fetches"`      // CRI calls made
	NotFound     uint64 `json:"notFound"`     // calls answered NotFound
	Timeouts     uint64 `json:"timeouts"`     // calls that hit Timeout
	Errors       uint64 `json:"errors"`       // other failed calls
	GaveUp       uint64 `json:"gaveUp"`       // sandboxes whose status fetch hit MaxAttempts
	QueueFull    uint64 `json:"queueFull"`    // fetches dropped because the queue was full
	Evictions    uint64 `json:"evictions"`    // sandboxes evicted because the cache was full
	RetryPending int    `json:"retryPending"` // sandboxes waiting for a retry timer
}

// CRI names pods from what their runtime knows: the pod labels the kubelet
// gave the sandbox (app.kubernetes.io/name, then app) and the names of the
// containers in it. It works without access to the Kubernetes API (the
// labels are passed to the runtime by the kubelet), so it is the chain's
// answer when the daemon runs without a kubeconfig.
//
// Lookups never call the runtime: they read a per-sandbox cache and, on a
// miss, queue a fetch for a worker and answer "" for now. Sandbox labels
// are immutable, so they are fetched once; the container list changes as
// containers are created and restarted, so an unknown container id triggers
// a new listing, at most once per ContainerRefresh.
type CRI struct {
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	opts CRIOptions
	log  *slog.Logger

	queue chan string

	mu        sync.Mutex
	sandboxes map[string]*sandbox

	lookups, hits, fetches, notFound, timeouts, errs, gaveUp, queueFull, evictions atomic.Uint64
	retryPending                                                                   atomic.Int64
	generation                                                                     atomic.Uint64
}

// sandbox is the cached state of one pod sandbox. Guarded by CRI.mu.
type sandbox struct {
	labels       map[string]string
	service      string
	statusDone   bool // labels fetched (or given up)
	containers   map[string]string
	containersAt time.Time // last listing; zero: never
	busy         bool      // queued or being fetched
	attempts     int
	retry        *time.Timer
	used         time.Time
}

// NewCRI returns a resolver for the runtime at opts.Socket. The connection
// is made lazily, so a runtime that starts after the daemon is fine.
func NewCRI(opts CRIOptions) (*CRI, error) {
	if opts.Socket == "" {
		return nil, errors.New("cri resolver: no runtime socket")
	}
	if !filepath.IsAbs(opts.Socket) {
		return nil, fmt.Errorf("cri resolver: runtime socket %q is not an absolute path", opts.Socket)
	}
	for name, v := range map[string]time.Duration{"timeout": opts.Timeout, "retry": opts.Retry, "container refresh": opts.ContainerRefresh} {
		if v < 0 {
			return nil, fmt.Errorf("cri resolver: negative %s %v", name, v)
		}
	}
	for name, v := range map[string]int{"max sandboxes": opts.MaxSandboxes, "workers": opts.Workers, "queue size": opts.QueueSize, "max attempts": opts.MaxAttempts} {
		if v < 0 {
			return nil, fmt.Errorf("cri resolver: negative %s %d", name, v)
		}
	}
	opts.Timeout = orDefault(opts.Timeout, DefaultCRITimeout)
	opts.MaxSandboxes = orDefault(opts.MaxSandboxes, DefaultCRIMaxSandboxes)
	opts.Workers = orDefault(opts.Workers, DefaultCRIWorkers)
	opts.QueueSize = orDefault(opts.QueueSize, DefaultCRIQueueSize)
	opts.Retry = orDefault(opts.Retry, DefaultCRIRetry)
	opts.MaxAttempts = orDefault(opts.MaxAttempts, DefaultCRIMaxAttempts)
	opts.ContainerRefresh = orDefault(opts.ContainerRefresh, DefaultContainerRefresh)

	conn, err := grpc.NewClient("unix://"+opts.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("cri resolver: client for %s: %w", opts.Socket, err)
	}
	return &CRI{
		conn:      conn,
		rt:        runtimeapi.NewRuntimeServiceClient(conn),
		opts:      opts,
		log:       logger(opts.Logger).With("socket", opts.Socket),
		queue:     make(chan string, opts.QueueSize),
		sandboxes: map[string]*sandbox{},
	}, nil
}

// Name implements daemon.Component.
func (c *CRI) Name() string { return "identity-cri" }

// Run serves queued fetches until ctx ends, then closes the connection.
// Lookups made before Run are queued and served once it starts.
func (c *CRI) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case id := <-c.queue:
					c.fetch(ctx, id)
				}
			}
		})
	}
	wg.Wait()
	c.mu.Lock()
	for _, s := range c.sandboxes {
		if s.retry != nil && s.retry.Stop() {
			c.retryPending.Add(-1)
		}
	}
	c.mu.Unlock()
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("close cri connection: %w", err)
	}
	return nil
}

// Service implements ServiceResolver: the pod's app.kubernetes.io/name
// label, else its app label, else "" (also while the labels are being
// fetched).
func (c *CRI) Service(pod *registry.Pod) string {
	c.lookups.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	id := pod.ContainerID
	s := c.get(id)
	if s == nil {
		return ""
	}
	if !s.statusDone {
		c.enqueue(id, s) // a no-op while a fetch or retry is pending
		return ""
	}
	c.hits.Add(1)
	return s.service
}

// Labels returns a copy of the sandbox's pod labels (empty, not nil, for a
// pod without labels), or nil while unknown.
func (c *CRI) Labels(sandboxID string) map[string]string {
	c.lookups.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.get(sandboxID)
	if s == nil {
		return nil
	}
	if !s.statusDone {
		c.enqueue(sandboxID, s)
		return nil
	}
	c.hits.Add(1)
	return maps.Clone(s.labels)
}

// ContainerName returns the CRI name (the pod spec's container name) of
// containerID in the sandbox, or "" while unknown. An unknown id makes the
// sandbox's containers be listed again (at most once per ContainerRefresh):
// the container may have been created or restarted since the last listing.
func (c *CRI) ContainerName(sandboxID, containerID string) string {
	c.lookups.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.get(sandboxID)
	if s == nil {
		return ""
	}
	if name, ok := s.containers[containerID]; ok {
		c.hits.Add(1)
		return name
	}
	if !s.statusDone || time.Since(s.containersAt) >= c.opts.ContainerRefresh {
		c.enqueue(sandboxID, s)
	}
	return ""
}

// PodEnrolled implements registry.Observer: fetch the new pod's labels
// ahead of its first lookup.
func (c *CRI) PodEnrolled(pod *registry.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.get(pod.ContainerID); s != nil && !s.statusDone {
		c.enqueue(pod.ContainerID, s)
	}
}

// PodRemoved implements registry.Observer: forget the sandbox.
func (c *CRI) PodRemoved(pod *registry.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forget(pod.ContainerID)
}

// Generation changes whenever the labels of a sandbox have been learned,
// so the answer of Service for it may have changed from "". A consumer
// that keeps names can re-resolve when it moves.
func (c *CRI) Generation() uint64 { return c.generation.Load() }

// Stats returns the resolver's counters.
func (c *CRI) Stats() CRIStats {
	c.mu.Lock()
	n := len(c.sandboxes)
	c.mu.Unlock()
	return CRIStats{
		Sandboxes:    n,
		Lookups:      c.lookups.Load(),
		Hits:         c.hits.Load(),
		Fetches:      c.fetches.Load(),
		NotFound:     c.notFound.Load(),
		Timeouts:     c.timeouts.Load(),
		Errors:       c.errs.Load(),
		GaveUp:       c.gaveUp.Load(),
		QueueFull:    c.queueFull.Load(),
		Evictions:    c.evictions.Load(),
		RetryPending: int(c.retryPending.Load()),
	}
}

// get returns the sandbox's entry, creating it if absent. c.mu is held.
func (c *CRI) get(id string) *sandbox {
	if id == "" {
		return nil
	}
	now := time.Now()
	if s, ok := c.sandboxes[id]; ok {
		s.used = now
		return s
	}
	if len(c.sandboxes) >= c.opts.MaxSandboxes {
		c.evictLRU()
	}
	s := &sandbox{used: now}
	c.sandboxes[id] = s
	return s
}

func (c *CRI) forget(id string) {
	s, ok := c.sandboxes[id]
	if !ok {
		return
	}
	if s.retry != nil && s.retry.Stop() {
		c.retryPending.Add(-1)
	}
	delete(c.sandboxes, id)
}

// evictLRU drops the least recently used sandbox. A linear scan: it runs
// only when the cache is full, which a node with fewer pods than
// MaxSandboxes never reaches (removed pods are forgotten).
func (c *CRI) evictLRU() {
	var oldest string
	var at time.Time
	for id, s := range c.sandboxes {
		if oldest == "" || s.used.Before(at) {
			oldest, at = id, s.used
		}
	}
	c.forget(oldest)
	c.evictions.Add(1)
}

// enqueue hands the sandbox to a worker without blocking. c.mu is held.
func (c *CRI) enqueue(id string, s *sandbox) {
	if s.busy {
		return
	}
	select {
	case c.queue <- id:
		s.busy = true
	default:
		c.queueFull.Add(1)
	}
}

// fetch reads the sandbox's status (once) and its containers.
func (c *CRI) fetch(ctx context.Context, id string) {
	c.mu.Lock()
	s, ok := c.sandboxes[id]
	needStatus := ok && !s.statusDone
	c.mu.Unlock()
	if !ok {
		return // removed while queued
	}

	var labels map[string]string
	var statusErr error
	if needStatus {
		labels, statusErr = c.podLabels(ctx, id)
	}
	var containers map[string]string
	var listErr error
	if statusErr == nil {
		containers, listErr = c.containers(ctx, id)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sandboxes[id] != s {
		return // removed (or evicted and re-added) during the calls
	}
	s.busy = false
	if needStatus {
		if statusErr != nil {
			c.retryLater(ctx, id, s, statusErr)
			return
		}
		s.labels, s.service, s.statusDone = labels, serviceLabel(labels), true
		c.generation.Add(1)
	}
	if listErr == nil {
		s.containers, s.containersAt = containers, time.Now()
	} else {
		// Counted and logged by containers; the next unknown container
		// id retries after ContainerRefresh.
		s.containersAt = time.Now()
	}
}

// retryLater schedules another status fetch with exponential backoff, or
// gives up after MaxAttempts: the sandbox is then answered "" (the chain
// falls through) until it is removed. c.mu is held.
func (c *CRI) retryLater(ctx context.Context, id string, s *sandbox, err error) {
	s.attempts++
	if s.attempts >= c.opts.MaxAttempts {
		s.statusDone = true
		c.gaveUp.Add(1)
		c.log.Warn("cri: giving up on sandbox labels", "sandbox", id, "attempts", s.attempts, "error", err)
		return
	}
	if ctx.Err() != nil {
		return
	}
	delay := c.opts.Retry << min(s.attempts-1, 16)
	s.busy = true // no lookup queues it before the timer does
	c.retryPending.Add(1)
	s.retry = time.AfterFunc(delay, func() {
		c.retryPending.Add(-1)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.sandboxes[id] != s || ctx.Err() != nil {
			return
		}
		s.busy, s.retry = false, nil
		c.enqueue(id, s)
	})
}

func (c *CRI) podLabels(ctx context.Context, id string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	c.fetches.Add(1)
	resp, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		return nil, c.failed("PodSandboxStatus", id, err)
	}
	labels := resp.GetStatus().GetLabels()
	if labels == nil {
		labels = map[string]string{} // known to have none, unlike nil: not yet known
	}
	return labels, nil
}

func (c *CRI) containers(ctx context.Context, id string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	c.fetches.Add(1)
	resp, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{PodSandboxId: id},
	})
	if err != nil {
		return nil, c.failed("ListContainers", id, err)
	}
	out := make(map[string]string, len(resp.GetContainers()))
	for _, ctr := range resp.GetContainers() {
		if ctr.GetPodSandboxId() == id && ctr.GetMetadata().GetName() != "" {
			out[ctr.GetId()] = ctr.GetMetadata().GetName()
		}
	}
	return out, nil
}

// failed counts a failed call by kind and returns it wrapped.
func (c *CRI) failed(call, id string, err error) error {
	switch status.Code(err) {
	case codes.NotFound:
		c.notFound.Add(1)
		c.log.Debug("cri: sandbox not found (yet)", "call", call, "sandbox", id)
	case codes.DeadlineExceeded:
		c.timeouts.Add(1)
		c.log.Warn("cri: call timed out", "call", call, "sandbox", id, "timeout", c.opts.Timeout)
	case codes.Canceled:
	default:
		c.errs.Add(1)
		c.log.Warn("cri: call failed", "call", call, "sandbox", id, "error", err)
	}
	return fmt.Errorf("cri %s %s: %w", call, id, err)
}

// serviceLabel picks the workload name from pod labels.
func serviceLabel(labels map[string]string) string {
	if v := labels[LabelName]; v != "" {
		return v
	}
	return labels[LabelApp]
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
