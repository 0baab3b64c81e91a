// Package identity names the workloads behind pods: service name, labels and
// container names.
//
// Traffic is only useful in a service map when both ends carry the name
// people use for them. A pod is known to the daemon by what the CNI plugin
// enrolled (sandbox id, namespace, pod name, IPs); this package turns that
// into a service name through a chain, first answer wins:
//
//  1. Kubernetes: the Service whose selector matches the pod's labels (or,
//     while the labels are unknown, whose EndpointSlices target the pod),
//     read from client-go informers, when the daemon has API access
//     (in-cluster or --kubeconfig). It is the name clients resolve, and the
//     one SkyWalking's OAP gives the pod from other nodes' data.
//  2. CRI: the pod's app.kubernetes.io/name or app label, which the kubelet
//     hands the runtime and the daemon reads over the runtime's socket. It
//     needs no API access.
//  3. Owner: the pod name without the suffix its controller added.
//
// The CRI step also names containers (SkyWalking's containerName), and
// CgroupResolver finds the container a process runs in from the cgroup id the
// kernel reports (capture.Config.ContainerID).
//
// This package is the one home of pod naming: the naming interfaces its
// consumers take (ServiceResolver and the optional Generationer,
// ServiceSelector, ContainerNamer) and the one rule for names derived from
// pod names (OwnerName).
//
// Lookups sit on the export path, once or more per exchange, so none of them
// waits for I/O: they answer from caches that informers and background
// workers fill, and fall through to the next step while an answer is not
// there yet.
package identity

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/registry"
)

// Chain asks each resolver in turn and returns the first non-empty answer.
type Chain []ServiceResolver

// Service implements ServiceResolver.
func (c Chain) Service(pod *registry.Pod) string {
	for _, r := range c {
		if s := r.Service(pod); s != "" {
			return s
		}
	}
	return ""
}

// Options configures New.
type Options struct {
	// NodeName is stripped from static pod names by the owner step.
	NodeName string
	// Kubernetes is the API client (see KubernetesClient); nil leaves the
	// Kubernetes step out.
	Kubernetes        kubernetes.Interface
	KubernetesOptions KubernetesOptions
	// CRI configures the runtime step; an empty Socket leaves it out.
	CRI CRIOptions
	// Logger is passed to the steps that log; nil discards.
	Logger *slog.Logger
}

// Resolver is the whole chain, as a daemon component: it runs the informers
// and the CRI workers, follows the registry to prefetch and forget pods, and
// serves its counters on the API.
type Resolver struct {
	kube  *Kubernetes // nil without API access
	cri   *CRI        // nil without a runtime socket
	chain Chain
}

// New builds the chain that opts allow. Nothing is contacted until Run.
func New(opts Options) (*Resolver, error) {
	log := logger(opts.Logger)
	r := &Resolver{}
	if opts.CRI.Socket != "" {
		co := opts.CRI
		if co.Logger == nil {
			co.Logger = log.With("step", "cri")
		}
		c, err := NewCRI(co)
		if err != nil {
			return nil, err
		}
		r.cri = c
	}
	if opts.Kubernetes != nil {
		ko := opts.KubernetesOptions
		if ko.NodeName == "" {
			ko.NodeName = opts.NodeName
		}
		if ko.Logger == nil {
			ko.Logger = log.With("step", "kubernetes")
		}
		if ko.Labels == nil && r.cri != nil {
			ko.Labels = r.cri.Labels // selector matching, as the OAP does
		}
		k, err := NewKubernetes(opts.Kubernetes, ko)
		if err != nil {
			return nil, err
		}
		r.kube = k
		r.chain = append(r.chain, k)
	}
	if r.cri != nil {
		r.chain = append(r.chain, r.cri)
	}
	r.chain = append(r.chain, Owner{NodeName: opts.NodeName})
	return r, nil
}

// Name implements daemon.Component.
func (r *Resolver) Name() string { return "identity" }

// Run runs the steps that have background work until ctx ends.
func (r *Resolver) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	if r.kube != nil {
		wg.Go(func() { errs[0] = r.kube.Run(ctx) })
	}
	if r.cri != nil {
		wg.Go(func() { errs[1] = r.cri.Run(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("identity: %w", err)
		}
	}
	return nil
}

// Service implements ServiceResolver.
func (r *Resolver) Service(pod *registry.Pod) string { return r.chain.Service(pod) }

// Selected says whether a Kubernetes Service selects the pod, that is
// whether Service's answer is one SkyWalking's OAP gives the pod too.
func (r *Resolver) Selected(pod *registry.Pod) bool {
	return r.kube != nil && r.kube.service(pod) != ""
}

// ContainerName returns the pod-spec name of a container in a sandbox, or
// "" when unknown (or without a runtime socket).
func (r *Resolver) ContainerName(sandboxID, containerID string) string {
	if r.cri == nil {
		return ""
	}
	return r.cri.ContainerName(sandboxID, containerID)
}

// Labels returns the pod labels the runtime holds for a sandbox, or nil.
func (r *Resolver) Labels(sandboxID string) map[string]string {
	if r.cri == nil {
		return nil
	}
	return r.cri.Labels(sandboxID)
}

// Generation changes whenever an answer of Service may have changed: the
// Kubernetes caches changed, or the runtime's labels of a sandbox arrived.
// Lookups are cheap and may simply be repeated; a consumer that keeps the
// name it got (the monitor names a pod once, at enrollment) compares
// Generation instead and re-resolves when it moved. It never goes back.
func (r *Resolver) Generation() uint64 {
	var g uint64
	if r.kube != nil {
		g += r.kube.Generation()
	}
	if r.cri != nil {
		g += r.cri.Generation()
	}
	return g
}

// HasSynced reports whether the Kubernetes step's caches are complete; it
// is true when there is no Kubernetes step.
func (r *Resolver) HasSynced() bool { return r.kube == nil || r.kube.HasSynced() }

// PodEnrolled implements registry.Observer.
func (r *Resolver) PodEnrolled(pod *registry.Pod) {
	if r.cri != nil {
		r.cri.PodEnrolled(pod)
	}
}

// PodRemoved implements registry.Observer.
func (r *Resolver) PodRemoved(pod *registry.Pod) {
	if r.cri != nil {
		r.cri.PodRemoved(pod)
	}
}

// Stats are the chain's counters; a step that is not configured is nil.
type Stats struct {
	Kubernetes *KubernetesStats `json:"kubernetes,omitempty"`
	CRI        *CRIStats        `json:"cri,omitempty"`
}

// Stats returns the counters of every configured step.
func (r *Resolver) Stats() Stats {
	var s Stats
	if r.kube != nil {
		ks := r.kube.Stats()
		s.Kubernetes = &ks
	}
	if r.cri != nil {
		cs := r.cri.Stats()
		s.CRI = &cs
	}
	return s
}

// RegisterMetrics implements daemon.PrometheusRegistrar: the
// weir_identity_* counters of the configured steps, read at scrape time.
func (r *Resolver) RegisterMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(NewCollector(r)); err != nil {
		return fmt.Errorf("identity collector: %w", err)
	}
	return nil
}

// RegisterHTTP implements daemon.HTTPRegistrar: GET /api/v1/identity
// returns Stats. The Kubernetes sync state is not a readiness check on
// purpose: a node whose API server is unreachable still captures and
// exports, with names from the later steps.
func (r *Resolver) RegisterHTTP(s *api.Server) {
	s.Handle("GET /api/v1/identity", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		wire.WriteJSON(w, http.StatusOK, r.Stats())
	}))
}
