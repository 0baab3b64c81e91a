package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/enrollapi/spool"
	"github.com/weirnet/weir/internal/testenv"
)

// fakeDaemon is an in-process EnrollmentServer that records every request
// and answers with whatever the test configured.
type fakeDaemon struct {
	enrollpb.UnimplementedEnrollmentServer

	mu        sync.Mutex
	enrolls   []*enrollpb.EnrollRequest
	unenrolls []*enrollpb.UnenrollRequest
	gets      []*enrollpb.GetRequest
	gcs       []*enrollpb.GCRequest

	// err, if set, is returned by every RPC.
	err error
	// hang makes every RPC block until the caller gives up.
	hang bool
	// pod is what Get returns; nil means NotFound (set err for that).
	pod *enrollpb.Pod
}

func (d *fakeDaemon) answer(ctx context.Context) error {
	if d.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return d.err
}

func (d *fakeDaemon) Enroll(ctx context.Context, r *enrollpb.EnrollRequest) (*enrollpb.EnrollResponse, error) {
	d.mu.Lock()
	d.enrolls = append(d.enrolls, r)
	d.mu.Unlock()
	if err := d.answer(ctx); err != nil {
		return nil, err
	}
	pod := proto.Clone(r.GetPod()).(*enrollpb.Pod)
	pod.Id = 42
	return &enrollpb.EnrollResponse{Pod: pod}, nil
}

func (d *fakeDaemon) Unenroll(ctx context.Context, r *enrollpb.UnenrollRequest) (*enrollpb.UnenrollResponse, error) {
	d.mu.Lock()
	d.unenrolls = append(d.unenrolls, r)
	d.mu.Unlock()
	if err := d.answer(ctx); err != nil {
		return nil, err
	}
	return &enrollpb.UnenrollResponse{Found: len(d.unenrolls) == 1}, nil
}

func (d *fakeDaemon) Get(ctx context.Context, r *enrollpb.GetRequest) (*enrollpb.GetResponse, error) {
	d.mu.Lock()
	d.gets = append(d.gets, r)
	d.mu.Unlock()
	if err := d.answer(ctx); err != nil {
		return nil, err
	}
	return &enrollpb.GetResponse{Pod: d.pod}, nil
}

func (d *fakeDaemon) GC(ctx context.Context, r *enrollpb.GCRequest) (*enrollpb.GCResponse, error) {
	d.mu.Lock()
	d.gcs = append(d.gcs, r)
	d.mu.Unlock()
	if err := d.answer(ctx); err != nil {
		return nil, err
	}
	return &enrollpb.GCResponse{Removed: []*enrollpb.Pod{{ContainerId: "stale"}}}, nil
}

// shortTempDir returns a fresh directory with a short path: t.TempDir()
// includes the test name and can overflow a unix socket path.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "weir")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startDaemon serves d on a fresh unix socket and returns its path. The
// server is stopped, and its Serve goroutine waited for, at cleanup.
func startDaemon(t *testing.T, d *fakeDaemon) string {
	t.Helper()
	sock := filepath.Join(shortTempDir(t), "weir.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen on %s: %v", sock, err)
	}
	srv := grpc.NewServer()
	enrollpb.RegisterEnrollmentServer(srv, d)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("fake daemon Serve: %v", err)
		}
	})
	return sock
}

// deadSocket returns a socket path nobody listens on.
func deadSocket(t *testing.T) string {
	return filepath.Join(shortTempDir(t), "nobody.sock")
}

// env is one test's plugin, captured output and directories.
type env struct {
	p        *plugin
	stdout   *bytes.Buffer
	stderr   *bytes.Buffer
	spoolDir string
}

var fixedNow = time.Date(2025, 11, 25, 1, 2, 3, 0, time.UTC)

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, spoolDir: filepath.Join(shortTempDir(t), "spool")}
	e.p = &plugin{stdout: e.stdout, stderr: e.stderr, now: func() time.Time { return fixedNow }}
	return e
}

// spooled returns the records in the env's spool, oldest first, leaving
// them in place.
func (e *env) spooled(t *testing.T) []*enrollpb.SpoolRecord {
	t.Helper()
	// Drain consumes; copy the directory so the test sees, not changes.
	entries, err := os.ReadDir(e.spoolDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(shortTempDir(t), "spool")
	if err := os.Mkdir(cp, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		b, err := os.ReadFile(filepath.Join(e.spoolDir, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cp, ent.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var recs []*enrollpb.SpoolRecord
	stats, err := spool.New(cp, 0).Drain(context.Background(), func(r *enrollpb.SpoolRecord) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil || stats.Corrupt != 0 {
		t.Fatalf("read spool: stats %+v, err %v", stats, err)
	}
	return recs
}

// netConf is the weir entry of a conflist as a map, so tests can change or
// drop keys.
func netConf(cniVersion, socket, spoolDir string) map[string]any {
	return map[string]any{
		"cniVersion":      cniVersion,
		"name":            "weirnet",
		"type":            "weir",
		"daemonSocket":    socket,
		"spoolDir":        spoolDir,
		"timeout":         "1s",
		"runtimeConfig":   map[string]any{"portMappings": []any{}},
		"someFutureKnob":  true,
		"spoolMaxRecords": 16,
	}
}

// prevResult110 is what the bridge plugin returns in CNI 1.1.0: bridge,
// host veth, pod interface; one pod address and, to check that weir picks
// the pod's own addresses, one on the bridge.
func prevResult110(netnsPath string) map[string]any {
	return map[string]any{
		"cniVersion": "1.1.0",
		"interfaces": []any{
			map[string]any{"name": "cni0", "mac": "0a:58:0a:16:00:01"},
			map[string]any{"name": "veth1234", "mac": "0a:58:0a:16:00:02"},
			map[string]any{"name": "eth0", "mac": "0a:58:0a:16:00:05", "sandbox": netnsPath},
		},
		"ips": []any{
			map[string]any{"interface": 2, "address": "10.22.0.5/16", "gateway": "10.22.0.1"},
			map[string]any{"interface": 0, "address": "10.22.0.1/16"},
			map[string]any{"interface": 2, "address": "fd00:22::5/64"},
		},
		"routes": []any{map[string]any{"dst": "0.0.0.0/0", "gw": "10.22.0.1"}},
	}
}

// prevResult040 is the same result in CNI 0.4.0 form.
func prevResult040(netnsPath string) map[string]any {
	r := prevResult110(netnsPath)
	r["cniVersion"] = "0.4.0"
	for i, ip := range r["ips"].([]any) {
		v := "4"
		if i == 2 {
			v = "6"
		}
		ip.(map[string]any)["version"] = v
	}
	return r
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cmdArgs(t *testing.T, netnsPath string, conf map[string]any, cniArgs string) *skel.CmdArgs {
	return &skel.CmdArgs{
		ContainerID: "c0ffee",
		Netns:       netnsPath,
		IfName:      "eth0",
		Args:        cniArgs,
		Path:        "/opt/cni/bin",
		StdinData:   mustJSON(t, conf),
	}
}

const k8sCNIArgs = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-7d9f;" +
	"K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=0b5e3c9a-1f2d-4e5f-8a9b-0c1d2e3f4a5b;SOMETHING_ELSE=x"

// cniCode returns the CNI error code of err, failing the test if err is not
// a *types.Error.
func cniCode(t *testing.T, err error) uint {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a CNI *types.Error", err, err)
	}
	return e.Code
}

// podNet is a pod network namespace wired like the bridge plugin wires
// one: eth0 inside, its veth peer in the host netns.
type podNet struct {
	ns         ns.NetNS
	hostVeth   string
	hostIndex  int
	podIndex   int
	netnsInode uint64
}

func randName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// newNetNS creates a network namespace removed at cleanup.
func newNetNS(t *testing.T) ns.NetNS {
	t.Helper()
	testenv.Privileged(t, "creates network namespaces and veth pairs")
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		n.Close()
		if err := testutils.UnmountNS(n); err != nil {
			t.Errorf("remove netns: %v", err)
		}
	})
	return n
}

// newPodNet creates a netns holding eth0, a veth whose peer is in the host
// netns, and records the indexes and inode independently of the code under
// test.
func newPodNet(t *testing.T) *podNet {
	t.Helper()
	n := newNetNS(t)
	pn := &podNet{ns: n, hostVeth: randName("wt")}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: pn.hostVeth},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(n.Fd())),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("create veth %s: %v", pn.hostVeth, err)
	}
	t.Cleanup(func() {
		// Gone already if the netns went first; anything else is a leak.
		if l, err := netlink.LinkByName(pn.hostVeth); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete veth %s: %v", pn.hostVeth, err)
			}
		}
	})
	host, err := netlink.LinkByName(pn.hostVeth)
	if err != nil {
		t.Fatal(err)
	}
	pn.hostIndex = host.Attrs().Index
	if err := n.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		pn.podIndex = l.Attrs().Index
		// The kernel names a thread's net ns "net:[<inode>]": a second
		// source for the inode, independent of stat on the bind mount.
		link, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil {
			return err
		}
		if _, err := fmt.Sscanf(link, "net:[%d]", &pn.netnsInode); err != nil {
			return fmt.Errorf("parse %q: %w", link, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("inspect netns from inside: %v", err)
	}
	return pn
}

// Accessors copy under the lock: a handler may still be running (hang)
// when the test looks.
func (d *fakeDaemon) Enrolls() []*enrollpb.EnrollRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.enrolls)
}

func (d *fakeDaemon) Unenrolls() []*enrollpb.UnenrollRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.unenrolls)
}

func (d *fakeDaemon) Gets() []*enrollpb.GetRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.gets)
}

func (d *fakeDaemon) GCs() []*enrollpb.GCRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.gcs)
}
