package identity

// These tests drive the informer wiring with client-go's fake clientset: no
// cluster exists on this machine. They pin down what the resolver does with
// the objects a real API server would send (add, update, delete of
// EndpointSlices and Services); they do not test an API server.

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/weirnet/weir/daemon/registry"
)

// startKube runs a Kubernetes resolver on a fake clientset holding objs and
// waits until it has synced and both watches are established (the fake does
// not replay objects created between a list and its watch).
func startKube(t *testing.T, objs ...runtime.Object) (*Kubernetes, *fake.Clientset) {
	t.Helper()
	return startKubeWith(t, KubernetesOptions{Resync: time.Minute}, objs...)
}

func startKubeWith(t *testing.T, opts KubernetesOptions, objs ...runtime.Object) (*Kubernetes, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	var mu sync.Mutex
	watching := map[string]bool{}
	client.PrependWatchReactor("*", func(action k8stesting.Action) (bool, watch.Interface, error) {
		gvr := action.GetResource()
		w, err := client.Tracker().Watch(gvr, action.GetNamespace())
		mu.Lock()
		watching[gvr.Resource] = true
		mu.Unlock()
		return true, w, err
	})
	k, err := NewKubernetes(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	waitFor(t, "informers synced and watching", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return k.HasSynced() && watching["endpointslices"] && watching["services"]
	})
	return k, client
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func service(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": name}},
	}
}

// slice is an EndpointSlice of service svc; each endpoint is "pod=ip" (with a
// targetRef) or just "ip" (without, as in a hand-managed slice).
func slice(ns, name, svc string, endpoints ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels:      map[string]string{discoveryv1.LabelServiceName: svc, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
			Annotations: map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   endpoints,
		Ports:       []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080))}},
	}
}

func podEndpoint(ns, pod, ip string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses: []string{ip},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod},
		NodeName:  new("node-1"),
	}
}

func enrolled(ns, name string, ips ...string) *registry.Pod {
	p := &registry.Pod{Namespace: ns, Name: name, ContainerID: "sandbox-" + name}
	for _, ip := range ips {
		p.IPs = append(p.IPs, registry.IPConfig{Address: ip + "/24"})
	}
	return p
}

func TestKubernetesNamesPodAfterServiceOfItsEndpointSlice(t *testing.T) {
	k, _ := startKube(t,
		service("shop", "checkout"),
		slice("shop", "checkout-abcde", "checkout", podEndpoint("shop", "checkout-7d4b9c8f6d-x2kq9", "10.1.0.5")),
	)
	if got := k.Service(enrolled("shop", "checkout-7d4b9c8f6d-x2kq9", "10.1.0.5")); got != "checkout" {
		t.Errorf("got %q, want checkout", got)
	}
	// Same name in another namespace: not the same pod.
	if got := k.Service(enrolled("other", "checkout-7d4b9c8f6d-x2kq9", "10.1.0.5")); got != "" {
		t.Errorf("pod in another namespace named %q", got)
	}
	// A pod no Service selects.
	if got := k.Service(enrolled("shop", "batch-x2kq9", "10.1.0.9")); got != "" {
		t.Errorf("unselected pod named %q", got)
	}
	st := k.Stats()
	if !st.Synced || st.Services != 1 || st.EndpointSlices != 1 || st.Lookups != 3 || st.Answered != 1 {
		t.Errorf("stats %+v: want synced, 1 service, 1 slice, 3 lookups, 1 answered", st)
	}
}

func TestKubernetesFollowsSliceAddUpdateDelete(t *testing.T) {
	k, client := startKube(t, service("shop", "cart"), service("shop", "cart-canary"))
	ctx := context.Background()
	slices := client.DiscoveryV1().EndpointSlices("shop")
	pod := enrolled("shop", "cart-0", "10.1.0.7")

	if got := k.Service(pod); got != "" {
		t.Fatalf("before any slice: got %q", got)
	}
	gen := k.Generation()

	// Add.
	s := slice("shop", "cart-canary-1", "cart-canary", podEndpoint("shop", "cart-0", "10.1.0.7"))
	if _, err := slices.Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "slice add to name the pod cart-canary", func() bool { return k.Service(pod) == "cart-canary" })
	if g := k.Generation(); g <= gen {
		t.Errorf("generation %d after a slice add, was %d: consumers keeping names would not re-resolve", g, gen)
	}

	// A second Service selecting the same pod: the alphabetically first
	// wins, whatever the order of events.
	s2 := slice("shop", "cart-1", "cart", podEndpoint("shop", "cart-0", "10.1.0.7"))
	if _, err := slices.Create(ctx, s2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second slice to make the pod cart", func() bool { return k.Service(pod) == "cart" })

	// Update: the pod leaves cart's slice.
	s2.Endpoints = []discoveryv1.Endpoint{podEndpoint("shop", "cart-1", "10.1.0.8")}
	if _, err := slices.Update(ctx, s2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "slice update to drop the pod from cart", func() bool { return k.Service(pod) == "cart-canary" })
	if got := k.Service(enrolled("shop", "cart-1", "10.1.0.8")); got != "cart" {
		t.Errorf("pod added by the update: got %q, want cart", got)
	}

	// Delete.
	if err := slices.Delete(ctx, "cart-canary-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "slice delete to unname the pod", func() bool { return k.Service(pod) == "" })
	if st := k.Stats(); st.Events < 6 { // 2 services + 2 slice adds + update + delete
		t.Errorf("events counted %d, want at least 6", st.Events)
	}
}

func TestKubernetesIgnoresSlicesOfDeletedService(t *testing.T) {
	k, client := startKube(t,
		service("shop", "legacy"),
		slice("shop", "legacy-1", "legacy", podEndpoint("shop", "web-0", "10.1.0.3")),
	)
	pod := enrolled("shop", "web-0", "10.1.0.3")
	if got := k.Service(pod); got != "legacy" {
		t.Fatalf("got %q, want legacy", got)
	}
	// The slice lingers until garbage collection; the Service is gone.
	if err := client.CoreV1().Services("shop").Delete(context.Background(), "legacy", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "service delete to unname the pod", func() bool { return k.Service(pod) == "" })
}

func TestKubernetesMatchesAddressOnlyWithoutTargetRef(t *testing.T) {
	k, _ := startKube(t,
		service("shop", "external-db"),
		service("shop", "old-owner"),
		// Hand-managed slice: addresses only.
		slice("shop", "external-db-1", "external-db", discoveryv1.Endpoint{Addresses: []string{"10.1.0.20"}}),
		// The controller's slice still lists a deleted pod whose IP was
		// reused by the pod under test.
		slice("shop", "old-owner-1", "old-owner", podEndpoint("shop", "deleted-pod", "10.1.0.21")),
	)
	if got := k.Service(enrolled("shop", "db-proxy", "10.1.0.20")); got != "external-db" {
		t.Errorf("address match without targetRef: got %q, want external-db", got)
	}
	if got := k.Service(enrolled("other", "db-proxy", "10.1.0.20")); got != "" {
		t.Errorf("address match across namespaces: got %q", got)
	}
	if got := k.Service(enrolled("shop", "new-pod", "10.1.0.21")); got != "" {
		t.Errorf("reused IP named after the old pod's service: %q", got)
	}
}

func TestKubernetesCachesOnlyWhatLookupsRead(t *testing.T) {
	k, _ := startKube(t,
		service("shop", "checkout"),
		slice("shop", "checkout-1", "checkout", podEndpoint("shop", "checkout-0", "10.1.0.5")),
	)
	obj, ok, err := k.slices.GetStore().GetByKey("shop/checkout-1")
	if err != nil || !ok {
		t.Fatalf("slice not cached: %v %v", ok, err)
	}
	es := obj.(*discoveryv1.EndpointSlice)
	if len(es.Annotations) != 0 || len(es.Ports) != 0 || es.Endpoints[0].NodeName != nil || len(es.Labels) != 1 {
		t.Errorf("cached slice not trimmed: %+v", es)
	}
	obj, ok, _ = k.services.GetStore().GetByKey("shop/checkout")
	if svc, _ := obj.(*corev1.Service); !ok || svc.Spec.Selector["app"] != "checkout" || svc.Spec.Ports != nil {
		t.Errorf("cached service not trimmed to its selector: %+v", obj)
	}
}

func TestKubernetesAnswersNothingBeforeSync(t *testing.T) {
	client := fake.NewClientset(service("shop", "a"), slice("shop", "a-1", "a", podEndpoint("shop", "p", "10.1.0.1")))
	k, err := NewKubernetes(client, KubernetesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if k.HasSynced() {
		t.Error("synced before Run")
	}
	if got := k.Service(enrolled("shop", "p", "10.1.0.1")); got != "" {
		t.Errorf("answered %q before Run", got)
	}
	if _, err := NewKubernetes(nil, KubernetesOptions{}); err == nil {
		t.Error("nil client accepted")
	}
	if _, err := NewKubernetes(client, KubernetesOptions{Resync: -time.Second}); err == nil {
		t.Error("negative resync accepted")
	}
}

func TestKubernetesClientOutsideClusterIsNotAnError(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	c, ok, err := KubernetesClient("")
	if c != nil || ok || err != nil {
		t.Errorf("outside a cluster: client %v ok %v err %v, want none and no error", c, ok, err)
	}
	if _, _, err := KubernetesClient("/nonexistent/kubeconfig"); err == nil {
		t.Error("missing kubeconfig accepted")
	}
}

func TestKubernetesKeepsOnlyThisNodesEndpoints(t *testing.T) {
	remote := podEndpoint("shop", "web-remote", "10.2.0.5")
	remote.NodeName = new("node-2")
	handMade := discoveryv1.Endpoint{Addresses: []string{"10.1.0.30"}} // no node
	k, _ := startKubeWith(t, KubernetesOptions{NodeName: "node-1"},
		service("shop", "web"),
		slice("shop", "web-1", "web", podEndpoint("shop", "web-local", "10.1.0.5"), remote, handMade),
	)
	if got := k.Service(enrolled("shop", "web-local", "10.1.0.5")); got != "web" {
		t.Errorf("local endpoint: got %q, want web", got)
	}
	if got := k.Service(enrolled("shop", "web-remote", "10.2.0.5")); got != "" {
		t.Errorf("another node's endpoint answered %q", got)
	}
	if got := k.Service(enrolled("shop", "proxy", "10.1.0.30")); got != "web" {
		t.Errorf("endpoint without a node: got %q, want web", got)
	}
	obj, _, _ := k.slices.GetStore().GetByKey("shop/web-1")
	if n := len(obj.(*discoveryv1.EndpointSlice).Endpoints); n != 2 {
		t.Errorf("cached slice holds %d endpoints, want 2 (node-2's dropped)", n)
	}
}

// The OAP names a pod after a Service of its namespace whose selector its
// labels contain; with the pod's labels known, Weir does the same.
func TestKubernetesNamesPodAfterTheServiceSelectingItsLabels(t *testing.T) {
	labels := map[string]map[string]string{
		"sandbox-web-0":   {"app": "web", "tier": "front", "pod-template-hash": "abc"},
		"sandbox-batch-0": {"app": "batch"},
		"sandbox-other-0": {"app": "web"},
	}
	withSelector := func(ns, name string, sel map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Selector: sel}}
	}
	k, _ := startKubeWith(t, KubernetesOptions{Resync: time.Minute, Labels: func(id string) map[string]string { return labels[id] }},
		withSelector("shop", "web", map[string]string{"app": "web"}),
		withSelector("shop", "storefront", map[string]string{"app": "web", "tier": "front"}),
		withSelector("shop", "web-canary", map[string]string{"app": "web", "track": "canary"}),
		withSelector("shop", "manual", nil), // selectorless: its slices are hand-managed
		slice("shop", "manual-1", "manual", podEndpoint("shop", "batch-0", "10.1.0.9")),
	)
	// storefront and web both select web-0: the alphabetically first.
	if got := k.Service(enrolled("shop", "web-0", "10.1.0.5")); got != "storefront" {
		t.Errorf("web-0 named %q, want storefront", got)
	}
	// Listed by a selectorless Service's slice only: the OAP cannot match
	// it, so neither does Weir.
	if got := k.Service(enrolled("shop", "batch-0", "10.1.0.9")); got != "" {
		t.Errorf("batch-0 named %q, want none", got)
	}
	// Same labels in another namespace: no Service there.
	if got := k.Service(enrolled("other", "other-0", "10.2.0.5")); got != "" {
		t.Errorf("other-0 named %q, want none", got)
	}
	// Labels not known yet: EndpointSlices stand in, selectorless ones
	// left out.
	if got := k.Service(enrolled("shop", "unknown-0", "10.1.0.9")); got != "" {
		t.Errorf("pod with unknown labels named %q by a selectorless Service", got)
	}
}
