package identity

// These tests run the CRI resolver against an in-process CRI server on a
// unix socket, to reach the error paths a real runtime will not produce on
// demand: a sandbox that is not found yet, a runtime that hangs, a queue
// that overflows. tests/cri runs it against a real containerd.

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/weirnet/weir/daemon/registry"
)

type fakeSandbox struct {
	labels     map[string]string
	notFound   int // answer NotFound this many more times
	containers map[string]string
}

type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer

	mu        sync.Mutex
	sandboxes map[string]*fakeSandbox
	hang      bool // hold calls until the client gives up
	calls     map[string]int
}

func (f *fakeRuntime) call(name string) (hang bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[name]++
	return f.hang
}

func (f *fakeRuntime) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[name]
}

func (f *fakeRuntime) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	if f.call("PodSandboxStatus") {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sandboxes[req.GetPodSandboxId()]
	if !ok || s.notFound > 0 {
		if ok {
			s.notFound--
		}
		return nil, status.Errorf(codes.NotFound, "an error occurred when try to find sandbox %q: not found", req.GetPodSandboxId())
	}
	return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{
		Id: req.GetPodSandboxId(), Labels: s.labels, State: runtimeapi.PodSandboxState_SANDBOX_READY,
	}}, nil
}

func (f *fakeRuntime) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	if f.call("ListContainers") {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &runtimeapi.ListContainersResponse{}
	id := req.GetFilter().GetPodSandboxId()
	if s, ok := f.sandboxes[id]; ok {
		for cid, name := range s.containers {
			resp.Containers = append(resp.Containers, &runtimeapi.Container{
				Id: cid, PodSandboxId: id, Metadata: &runtimeapi.ContainerMetadata{Name: name},
			})
		}
	}
	return resp, nil
}

func (f *fakeRuntime) set(id string, s *fakeSandbox) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sandboxes[id] = s
}

// startFakeCRI serves f on a unix socket and returns its path.
func startFakeCRI(t *testing.T, f *fakeRuntime) string {
	t.Helper()
	f.sandboxes = map[string]*fakeSandbox{}
	f.calls = map[string]int{}
	sock := filepath.Join(t.TempDir(), "cri.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return sock
}

// runCRI starts the resolver's workers for the test's duration.
func runCRI(t *testing.T, opts CRIOptions) *CRI {
	t.Helper()
	c, err := NewCRI(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
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
	return c
}

func sandboxPod(id, name string) *registry.Pod {
	return &registry.Pod{ContainerID: id, Namespace: "shop", Name: name}
}

func TestCRIServiceFromLabelsPrefersRecommendedLabel(t *testing.T) {
	f := &fakeRuntime{}
	sock := startFakeCRI(t, f)
	f.set("s1", &fakeSandbox{labels: map[string]string{LabelName: "checkout", LabelApp: "legacy-name"}})
	f.set("s2", &fakeSandbox{labels: map[string]string{LabelApp: "cart"}})
	f.set("s3", &fakeSandbox{labels: map[string]string{"tier": "web"}})
	c := runCRI(t, CRIOptions{Socket: sock})

	for id, want := range map[string]string{"s1": "checkout", "s2": "cart"} {
		waitFor(t, id+" labels", func() bool { return c.Service(sandboxPod(id, "x")) == want })
	}
	waitFor(t, "s3 fetched", func() bool { return c.Labels("s3") != nil })
	if got := c.Service(sandboxPod("s3", "x")); got != "" {
		t.Errorf("sandbox without a name label: got %q", got)
	}
	if got := c.Labels("s3")["tier"]; got != "web" {
		t.Errorf("labels of s3: tier = %q", got)
	}
	// Labels are immutable: asking again does not call the runtime again.
	before := f.count("PodSandboxStatus")
	for range 100 {
		c.Service(sandboxPod("s1", "x"))
	}
	if after := f.count("PodSandboxStatus"); after != before {
		t.Errorf("cached lookups made %d PodSandboxStatus calls", after-before)
	}
}

func TestCRIRetriesSandboxNotFoundDuringCNIAdd(t *testing.T) {
	f := &fakeRuntime{}
	sock := startFakeCRI(t, f)
	// The plugin enrolls during CNI ADD, before the runtime records the
	// sandbox: the first calls answer NotFound.
	f.set("s1", &fakeSandbox{labels: map[string]string{LabelApp: "web"}, notFound: 3})
	c := runCRI(t, CRIOptions{Socket: sock, Retry: 10 * time.Millisecond})

	pod := sandboxPod("s1", "web-x2kq9")
	gen := c.Generation()
	c.PodEnrolled(pod) // prefetch, no lookup needed
	waitFor(t, "labels fetched after retries", func() bool { return c.Generation() > gen })
	if got := c.Service(pod); got != "web" {
		t.Errorf("after the generation moved: got %q, want web", got)
	}
	st := c.Stats()
	if st.NotFound != 3 || st.GaveUp != 0 || st.Errors != 0 {
		t.Errorf("stats %+v: want 3 NotFound, no give-up, no errors", st)
	}
}

func TestCRIGivesUpAfterMaxAttempts(t *testing.T) {
	f := &fakeRuntime{}
	sock := startFakeCRI(t, f)
	c := runCRI(t, CRIOptions{Socket: sock, Retry: time.Millisecond, MaxAttempts: 4})

	c.PodEnrolled(sandboxPod("gone", "x"))
	waitFor(t, "give-up", func() bool { return c.Stats().GaveUp == 1 })
	if n := f.count("PodSandboxStatus"); n != 4 {
		t.Errorf("PodSandboxStatus called %d times, want MaxAttempts=4", n)
	}
	if got := c.Service(sandboxPod("gone", "x")); got != "" {
		t.Errorf("given-up sandbox answered %q", got)
	}
	if st := c.Stats(); st.RetryPending != 0 {
		t.Errorf("retries still pending after give-up: %+v", st)
	}
}

func TestCRITimeoutIsCountedAndLookupsDoNotWait(t *testing.T) {
	f := &fakeRuntime{hang: true}
	sock := startFakeCRI(t, f)
	c := runCRI(t, CRIOptions{Socket: sock, Timeout: 50 * time.Millisecond, Retry: time.Hour})

	start := time.Now()
	for range 1000 {
		if got := c.Service(sandboxPod("s1", "x")); got != "" {
			t.Fatalf("hung runtime answered %q", got)
		}
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("1000 lookups against a hung runtime took %v", d)
	}
	waitFor(t, "timeout counted", func() bool { return c.Stats().Timeouts == 1 })
	if st := c.Stats(); st.RetryPending != 1 {
		t.Errorf("stats %+v: want a retry scheduled after the timeout", st)
	}
}

func TestCRIContainerNameRefreshesOnUnknownID(t *testing.T) {
	f := &fakeRuntime{}
	sock := startFakeCRI(t, f)
	f.set("s1", &fakeSandbox{labels: map[string]string{LabelApp: "web"}, containers: map[string]string{"c1": "nginx"}})
	c := runCRI(t, CRIOptions{Socket: sock, ContainerRefresh: 50 * time.Millisecond})

	waitFor(t, "container c1", func() bool { return c.ContainerName("s1", "c1") == "nginx" })
	if got := c.ContainerName("s1", "s1"); got != "" {
		t.Errorf("the sandbox itself named %q", got)
	}

	// A container created (or restarted) later: its id is unknown until the
	// sandbox is listed again.
	f.set("s1", &fakeSandbox{labels: map[string]string{LabelApp: "web"}, containers: map[string]string{"c1": "nginx", "c2": "sidecar"}})
	waitFor(t, "container c2", func() bool { return c.ContainerName("s1", "c2") == "sidecar" })

	// Unknown ids asked about in a burst list the sandbox at most once per
	// ContainerRefresh.
	before := f.count("ListContainers")
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		c.ContainerName("s1", "unknown")
		time.Sleep(time.Millisecond)
	}
	if n := f.count("ListContainers") - before; n < 1 || n > 5 {
		t.Errorf("200ms of unknown-id lookups listed containers %d times, want 1..5 (refresh 50ms)", n)
	}
}

func TestCRIForgetsRemovedPodsAndEvictsWhenFull(t *testing.T) {
	f := &fakeRuntime{}
	sock := startFakeCRI(t, f)
	for _, id := range []string{"a", "b", "c"} {
		f.set(id, &fakeSandbox{labels: map[string]string{LabelApp: "app-" + id}})
	}
	c := runCRI(t, CRIOptions{Socket: sock, MaxSandboxes: 2})

	waitFor(t, "a", func() bool { return c.Service(sandboxPod("a", "x")) == "app-a" })
	waitFor(t, "b", func() bool { return c.Service(sandboxPod("b", "x")) == "app-b" })
	c.Service(sandboxPod("a", "x")) // a is now the most recently used
	waitFor(t, "c", func() bool { return c.Service(sandboxPod("c", "x")) == "app-c" })
	st := c.Stats()
	if st.Sandboxes != 2 || st.Evictions != 1 {
		t.Errorf("stats %+v: want 2 cached, 1 eviction", st)
	}
	c.mu.Lock()
	_, hasA := c.sandboxes["a"]
	_, hasB := c.sandboxes["b"]
	c.mu.Unlock()
	if !hasA || hasB {
		t.Errorf("evicted the wrong sandbox: a cached %v, b cached %v (b was least recently used)", hasA, hasB)
	}

	c.PodRemoved(sandboxPod("a", "x"))
	if st := c.Stats(); st.Sandboxes != 1 {
		t.Errorf("after PodRemoved: %d sandboxes cached, want 1", st.Sandboxes)
	}
}

func TestCRIQueueFullIsCountedAndRetriedByLaterLookup(t *testing.T) {
	f := &fakeRuntime{}
	sock := startFakeCRI(t, f)
	f.set("a", &fakeSandbox{labels: map[string]string{LabelApp: "a"}})
	f.set("b", &fakeSandbox{labels: map[string]string{LabelApp: "b"}})
	c, err := NewCRI(CRIOptions{Socket: sock, QueueSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	// No workers yet: the second sandbox does not fit in the queue.
	c.Service(sandboxPod("a", "x"))
	c.Service(sandboxPod("b", "x"))
	if st := c.Stats(); st.QueueFull != 1 {
		t.Fatalf("stats %+v: want 1 queue-full drop", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "a", func() bool { return c.Service(sandboxPod("a", "x")) == "a" })
	// b's entry exists but was never fetched; the next lookup queues it.
	waitFor(t, "b after a later lookup", func() bool { return c.Service(sandboxPod("b", "x")) == "b" })
}

func TestNewCRIRejectsBadOptions(t *testing.T) {
	for _, o := range []CRIOptions{
		{},
		{Socket: "run/containerd/containerd.sock"},
		{Socket: "/run/x.sock", Timeout: -1},
		{Socket: "/run/x.sock", MaxSandboxes: -1},
		{Socket: "/run/x.sock", Workers: -2},
	} {
		if _, err := NewCRI(o); err == nil {
			t.Errorf("NewCRI(%+v) accepted", o)
		}
	}
}
