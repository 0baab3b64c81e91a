package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/weirnet/weir/daemon/registry"
)

// DefaultKubeResync is the informers' resync period when
// KubernetesOptions.Resync is 0. Resync re-delivers every cached object to
// the event handlers; the cache itself is kept current by the watch, so this
// only bounds how long a missed notification can go unnoticed.
const DefaultKubeResync = 10 * time.Minute

// Index names on the EndpointSlice informer.
const (
	indexByPod = "weir-pod" // "<namespace>/<pod name>" of each endpoint's targetRef
	indexByIP  = "weir-ip"  // "<namespace>/<address>" of endpoints without a targetRef
)

// KubernetesClient returns a client for the cluster the daemon runs in:
// from kubeconfig when it is set, else from the in-cluster service account
// when the daemon runs in a pod. ok is false, with a nil error, when neither
// applies (the daemon runs outside Kubernetes): the chain then starts at the
// runtime's labels.
func KubernetesClient(kubeconfig string) (client kubernetes.Interface, ok bool, err error) {
	var cfg *rest.Config
	switch {
	case kubeconfig != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, false, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
		}
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, false, fmt.Errorf("in-cluster kubernetes config: %w", err)
		}
	default:
		return nil, false, nil
	}
	cfg.UserAgent = "weir-daemon"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, false, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	return c, true, nil
}

// KubernetesOptions configures NewKubernetes.
type KubernetesOptions struct {
	// NodeName, when set, keeps only this node's endpoints (and endpoints
	// without a node, as in hand-managed slices) in the cache. Lookups are
	// for pods enrolled on this node, so other nodes' endpoints are never
	// read; the API offers no server-side selection of endpoints by node,
	// so they are dropped as they arrive.
	NodeName string
	// Resync is the informers' resync period; 0 means DefaultKubeResync.
	Resync time.Duration
	// Labels returns a pod's labels by sandbox id, or nil while unknown
	// (the CRI step's Labels); nil leaves selector matching out, and pods
	// are named by EndpointSlices only.
	Labels func(sandboxID string) map[string]string
	// Logger receives sync and failure messages; nil discards.
	Logger *slog.Logger
}

// KubernetesStats are the Kubernetes resolver's counters.
type KubernetesStats struct {
	Synced         bool   `json:"synced"`
	Services       int    `json:"services"`       // Services in the informer cache
	EndpointSlices int    `json:"endpointSlices"` // EndpointSlices in the informer cache
	Events         uint64 `json:"events"`         // add/update/delete notifications that changed an object
	Lookups        uint64 `json:"lookups"`
	Answered       uint64 `json:"answered"`    // lookups that named a Service
	IndexErrors    uint64 `json:"indexErrors"` // indexer failures (logged; the lookup answers "")
}

// Kubernetes names a pod after the Service whose EndpointSlices target it.
// That is the name clients use to reach the pod, so it is the name a service
// map should show. It reads the API through client-go shared informers on
// Services and EndpointSlices: lookups are served from the informers'
// in-memory caches, never from the API server, so they cost an index lookup
// and cannot block.
//
// The caches are trimmed (see trim) to the fields a lookup reads: a large
// cluster's Services and EndpointSlices cost tens of bytes per endpoint, not
// their full objects. Their size is the cluster's count of those objects,
// which is what a node needs to name any peer; it is reported in Stats.
type Kubernetes struct {
	factory  informers.SharedInformerFactory
	slices   cache.SharedIndexInformer
	services cache.SharedIndexInformer
	nodeName string
	labels   func(sandboxID string) map[string]string
	log      *slog.Logger

	synced      atomic.Bool
	events      atomic.Uint64
	lookups     atomic.Uint64
	answered    atomic.Uint64
	indexErrors atomic.Uint64
}

// NewKubernetes sets up the informers on client. Nothing is listed or
// watched until Run.
func NewKubernetes(client kubernetes.Interface, opts KubernetesOptions) (*Kubernetes, error) {
	if client == nil {
		return nil, errors.New("kubernetes resolver: nil client")
	}
	if opts.Resync < 0 {
		return nil, fmt.Errorf("kubernetes resolver: negative resync period %v", opts.Resync)
	}
	if opts.Resync == 0 {
		opts.Resync = DefaultKubeResync
	}
	k := &Kubernetes{log: logger(opts.Logger), nodeName: opts.NodeName, labels: opts.Labels}
	k.factory = informers.NewSharedInformerFactoryWithOptions(client, opts.Resync, informers.WithTransform(k.trim))
	k.slices = k.factory.Discovery().V1().EndpointSlices().Informer()
	k.services = k.factory.Core().V1().Services().Informer()
	if err := k.slices.AddIndexers(cache.Indexers{indexByPod: slicePods, indexByIP: sliceIPs}); err != nil {
		return nil, fmt.Errorf("kubernetes resolver: endpointslice indexers: %w", err)
	}
	count := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { k.events.Add(1) },
		UpdateFunc: func(old, cur any) {
			// A resync re-delivers unchanged objects: not a change.
			if o, ok := old.(metav1.Object); ok {
				if c, ok := cur.(metav1.Object); ok && o.GetResourceVersion() != "" && o.GetResourceVersion() == c.GetResourceVersion() {
					return
				}
			}
			k.events.Add(1)
		},
		DeleteFunc: func(any) { k.events.Add(1) },
	}
	for _, inf := range []cache.SharedIndexInformer{k.slices, k.services} {
		if _, err := inf.AddEventHandlerWithResyncPeriod(count, opts.Resync); err != nil {
			return nil, fmt.Errorf("kubernetes resolver: event handler: %w", err)
		}
	}
	return k, nil
}

// Name implements daemon.Component.
func (k *Kubernetes) Name() string { return "identity-kubernetes" }

// Run lists and watches until ctx ends, then stops the informers and waits
// for them. Until the first list of both kinds is in, Service answers ""
// (the chain falls through) and HasSynced is false; the API server being
// unreachable is logged by client-go's reflector and retried with backoff,
// it is not an error of Run.
func (k *Kubernetes) Run(ctx context.Context) error {
	k.factory.Start(ctx.Done())
	defer k.factory.Shutdown()
	start := time.Now()
	if cache.WaitForCacheSync(ctx.Done(), k.slices.HasSynced, k.services.HasSynced) {
		k.synced.Store(true)
		k.log.Info("kubernetes caches synced", "took", time.Since(start).Round(time.Millisecond),
			"services", len(k.services.GetStore().ListKeys()), "endpointSlices", len(k.slices.GetStore().ListKeys()))
	}
	<-ctx.Done()
	return nil
}

// Generation changes whenever an answer of Service may have changed (a
// Service or EndpointSlice was added, changed or deleted, or the caches
// synced). A consumer that keeps names can re-resolve when it moves.
func (k *Kubernetes) Generation() uint64 {
	g := k.events.Load()
	if k.synced.Load() {
		g++
	}
	return g
}

// HasSynced reports whether both informers have completed their first list.
func (k *Kubernetes) HasSynced() bool { return k.synced.Load() }

// Service implements ServiceResolver: the name of the Service that selects
// the pod, as SkyWalking's OAP resolves it, or "" when none does (or the
// caches have not synced).
//
// The OAP names a pod after a Service of its namespace whose selector is
// non-empty and contained in the pod's labels; pods no Service selects it
// cannot name (they are Unknown in its topology). Weir applies the same
// rule to the pod's labels from the runtime (Labels), so that a pod gets
// the same name from this node as the OAP gives it from other nodes'
// data. When several Services select the pod the OAP takes the first of
// its informer's list, an order Weir cannot see; Weir takes the
// alphabetically first, so the answer at least does not depend on the
// order events arrived in.
//
// While the pod's labels are unknown (no runtime socket, or not fetched
// yet), the Services whose EndpointSlices list the pod stand in: the
// EndpointSlice controller derives them from the same selectors. Services
// without a selector (slices managed by hand) are left out, since the OAP
// cannot match them.
//
// An endpoint matches by its targetRef (kind Pod, same namespace and name),
// which is what the EndpointSlice controller writes. An endpoint without a
// targetRef (a slice managed by hand) matches by address within the pod's
// namespace. An endpoint whose targetRef names another pod never matches by
// address: the IP was reused.
func (k *Kubernetes) Service(pod *registry.Pod) string {
	k.lookups.Add(1)
	name := k.service(pod)
	if name != "" {
		k.answered.Add(1)
	}
	return name
}

// service is Service without the counters.
func (k *Kubernetes) service(pod *registry.Pod) string {
	if !k.synced.Load() || pod.Namespace == "" {
		return ""
	}
	if k.labels != nil {
		if labels := k.labels(pod.ContainerID); labels != nil {
			return k.bySelector(pod.Namespace, labels)
		}
	}
	idx := k.slices.GetIndexer()
	objs, err := idx.ByIndex(indexByPod, pod.Namespace+"/"+pod.Name)
	if err != nil {
		k.indexErrors.Add(1)
		k.log.Warn("endpointslice index lookup failed", "index", indexByPod, "error", err)
		return ""
	}
	for _, ip := range pod.IPs {
		p, err := netip.ParsePrefix(ip.Address)
		if err != nil {
			continue
		}
		more, err := idx.ByIndex(indexByIP, pod.Namespace+"/"+p.Addr().String())
		if err != nil {
			k.indexErrors.Add(1)
			k.log.Warn("endpointslice index lookup failed", "index", indexByIP, "error", err)
			return ""
		}
		objs = append(objs, more...)
	}
	var names []string
	for _, o := range objs {
		es, ok := o.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		name := es.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		// A slice outlives its Service until the garbage collector
		// deletes it; a deleted Service no longer names anything, and
		// one without a selector is none the OAP can match.
		obj, exists, _ := k.services.GetStore().GetByKey(es.Namespace + "/" + name)
		if svc, ok := obj.(*corev1.Service); !exists || !ok || len(svc.Spec.Selector) == 0 {
			continue
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return ""
	}
	return slices.Min(names)
}

// bySelector returns the alphabetically first Service of namespace ns whose
// selector is non-empty and contained in labels, or "".
func (k *Kubernetes) bySelector(ns string, labels map[string]string) string {
	objs, err := k.services.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	if err != nil {
		k.indexErrors.Add(1)
		k.log.Warn("service index lookup failed", "index", cache.NamespaceIndex, "error", err)
		return ""
	}
	best := ""
	for _, o := range objs {
		svc, ok := o.(*corev1.Service)
		if !ok || len(svc.Spec.Selector) == 0 || (best != "" && svc.Name >= best) {
			continue
		}
		if selects(svc.Spec.Selector, labels) {
			best = svc.Name
		}
	}
	return best
}

// selects says whether every key and value of selector is in labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if l, ok := labels[k]; !ok || l != v {
			return false
		}
	}
	return true
}

// Stats returns the resolver's counters.
func (k *Kubernetes) Stats() KubernetesStats {
	return KubernetesStats{
		Synced:         k.synced.Load(),
		Services:       len(k.services.GetStore().ListKeys()),
		EndpointSlices: len(k.slices.GetStore().ListKeys()),
		Events:         k.events.Load(),
		Lookups:        k.lookups.Load(),
		Answered:       k.answered.Load(),
		IndexErrors:    k.indexErrors.Load(),
	}
}

// slicePods indexes an EndpointSlice by the pods its endpoints target.
func slicePods(obj any) ([]string, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, fmt.Errorf("index %s: unexpected object %T", indexByPod, obj)
	}
	var keys []string
	for _, ep := range es.Endpoints {
		ref := ep.TargetRef
		if ref == nil || ref.Kind != "Pod" || ref.Name == "" {
			continue
		}
		ns := ref.Namespace
		if ns == "" {
			ns = es.Namespace
		}
		keys = append(keys, ns+"/"+ref.Name)
	}
	return keys, nil
}

// sliceIPs indexes an EndpointSlice by the addresses of its endpoints that
// have no targetRef.
func sliceIPs(obj any) ([]string, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, fmt.Errorf("index %s: unexpected object %T", indexByIP, obj)
	}
	var keys []string
	for _, ep := range es.Endpoints {
		if ep.TargetRef != nil {
			continue
		}
		for _, a := range ep.Addresses {
			if addr, err := netip.ParseAddr(a); err == nil {
				keys = append(keys, es.Namespace+"/"+addr.String())
			}
		}
	}
	return keys, nil
}

// trim drops what lookups never read from objects before they enter the
// informer caches: fields, and other nodes' endpoints. It runs on every
// object the reflector delivers.
func (k *Kubernetes) trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *discoveryv1.EndpointSlice:
		out := &discoveryv1.EndpointSlice{
			ObjectMeta:  trimMeta(o.ObjectMeta, discoveryv1.LabelServiceName),
			AddressType: o.AddressType,
			Endpoints:   make([]discoveryv1.Endpoint, 0, len(o.Endpoints)),
		}
		for _, ep := range o.Endpoints {
			if k.nodeName != "" && ep.NodeName != nil && *ep.NodeName != k.nodeName {
				continue
			}
			e := discoveryv1.Endpoint{Addresses: ep.Addresses}
			if r := ep.TargetRef; r != nil {
				e.TargetRef = &corev1.ObjectReference{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
			}
			out.Endpoints = append(out.Endpoints, e)
		}
		return out, nil
	case *corev1.Service:
		// The selector is what the OAP names pods by.
		return &corev1.Service{ObjectMeta: trimMeta(o.ObjectMeta), Spec: corev1.ServiceSpec{Selector: o.Spec.Selector}}, nil
	default:
		// cache.DeletedFinalStateUnknown and anything else: as is.
		return obj, nil
	}
}

// trimMeta keeps identity, the resource version the informer compares, and
// the listed labels.
func trimMeta(m metav1.ObjectMeta, keepLabels ...string) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name:            m.Name,
		Namespace:       m.Namespace,
		UID:             m.UID,
		ResourceVersion: m.ResourceVersion,
	}
	for _, l := range keepLabels {
		if v, ok := m.Labels[l]; ok {
			if out.Labels == nil {
				out.Labels = map[string]string{}
			}
			out.Labels[l] = v
		}
	}
	return out
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
