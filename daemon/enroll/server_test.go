package enroll

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/enrollapi/spool"
	"github.com/weirnet/weir/internal/testenv"
)

// shortDir returns a fresh directory with a short path: unix socket paths
// are limited to 108 bytes, and t.TempDir includes the test name.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "weir")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type fixture struct {
	srv    *Server
	reg    *registry.Registry
	ln     *Listener
	client enrollpb.EnrollmentClient
	socket string
}

// serve runs the enrollment service on a real unix socket and returns a
// client connected to it.
func serve(t *testing.T, allowed []uint32, maxPods int) *fixture {
	t.Helper()
	dir := shortDir(t)
	reg, err := registry.Open(registry.Options{Dir: filepath.Join(dir, "state"), MaxPods: maxPods})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "run", "weir.sock")
	if allowed == nil && os.Getuid() != 0 {
		// The default admits root only; unprivileged, the test admits
		// itself (as root it keeps exercising the default).
		allowed = []uint32{uint32(os.Getuid())}
	}
	ln, err := Listen(ListenOptions{Path: socket, AllowedUIDs: allowed})
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	srv := NewServer(reg, slog.New(slog.DiscardHandler), ServerOptions{Host: openHost{}})
	g := NewGRPCServer(srv)
	done := make(chan error, 1)
	go func() { done <- g.Serve(ln) }()
	t.Cleanup(func() {
		g.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &fixture{reg: reg, ln: ln, client: enrollpb.NewEnrollmentClient(conn), socket: socket, srv: srv}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func testPod(id string) *enrollpb.Pod {
	return &enrollpb.Pod{
		Network: "kindnet", ContainerId: id, Ifname: "eth0",
		Netns: "/var/run/netns/cni-" + id, NetnsInode: 4026532001,
		IfIndex: 2, HostVeth: "veth" + id, HostVethIndex: 17,
		Ips:       []*enrollpb.IPConfig{{Address: podAddr(id) + "/8", Gateway: "10.0.0.1"}},
		Namespace: "default", Name: "web-" + id, Uid: "uid-" + id,
	}
}

// podAddr gives every test pod id its own address, as IPAM would.
func podAddr(id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	v := h.Sum32()
	return fmt.Sprintf("10.%d.%d.%d", byte(v>>16), byte(v>>8), byte(v)|1)
}

// openHost accepts every record: for tests whose netns paths are made up.
// The privileged tests use NodeHost.
type openHost struct{}

func (openHost) CheckNetns(string, uint64) error   { return nil }
func (openHost) CheckHostLink(int32, string) error { return nil }

func att(id string) *enrollpb.Attachment {
	return &enrollpb.Attachment{ContainerId: id, Ifname: "eth0"}
}

func TestEnrollGetListUnenrollOverUnixSocket(t *testing.T) {
	f := serve(t, nil, 0)
	c := ctx(t)

	resp, err := f.client.Enroll(c, &enrollpb.EnrollRequest{Pod: testPod("a")})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	if resp.GetPod().GetId() != 1 || resp.GetPod().GetEnrolledAt() == nil {
		t.Fatalf("Enroll returned %v, want id 1 and enrolledAt set", resp.GetPod())
	}
	if _, err := f.client.Enroll(c, &enrollpb.EnrollRequest{Pod: testPod("b")}); err != nil {
		t.Fatal(err)
	}
	// Re-enroll (a retried ADD) replaces the record and keeps the id.
	again := testPod("a")
	again.Name = "web-a-renamed"
	resp, err = f.client.Enroll(c, &enrollpb.EnrollRequest{Pod: again})
	if err != nil || resp.GetPod().GetId() != 1 {
		t.Fatalf("re-Enroll = %v, %v; want id 1", resp.GetPod(), err)
	}

	got, err := f.client.Get(c, &enrollpb.GetRequest{Network: "kindnet", Attachment: att("a")})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.GetPod().GetName() != "web-a-renamed" || got.GetPod().GetHostVeth() != "veth"+"a" {
		t.Fatalf("Get returned %v", got.GetPod())
	}

	list, err := f.client.List(c, &enrollpb.ListRequest{})
	if err != nil || len(list.GetPods()) != 2 {
		t.Fatalf("List = %v, %v; want 2 pods", list.GetPods(), err)
	}

	un, err := f.client.Unenroll(c, &enrollpb.UnenrollRequest{Network: "kindnet", Attachment: att("a")})
	if err != nil || !un.GetFound() {
		t.Fatalf("Unenroll(a) = %v, %v; want found", un, err)
	}
	// DEL is idempotent: a second Unenroll is found=false, not an error.
	un, err = f.client.Unenroll(c, &enrollpb.UnenrollRequest{Network: "kindnet", Attachment: att("a")})
	if err != nil || un.GetFound() {
		t.Fatalf("second Unenroll(a) = %v, %v; want found=false and no error", un, err)
	}
	_, err = f.client.Get(c, &enrollpb.GetRequest{Network: "kindnet", Attachment: att("a")})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("Get(unenrolled) error = %v, want NotFound", err)
	}
	// The acknowledged state is on disk.
	reopened, err := registry.Open(registry.Options{Dir: filepath.Dir(f.reg.Path())})
	if err != nil {
		t.Fatal(err)
	}
	if pods := reopened.List(); len(pods) != 1 || pods[0].ContainerID != "b" {
		t.Fatalf("persisted registry = %v, want only b", pods)
	}
}

func TestEnrollValidationNamesTheField(t *testing.T) {
	f := serve(t, nil, 0)
	for field, mutate := range map[string]func(*enrollpb.Pod){
		"pod.network":      func(p *enrollpb.Pod) { p.Network = "" },
		"pod.container_id": func(p *enrollpb.Pod) { p.ContainerId = "" },
		"pod.ifname":       func(p *enrollpb.Pod) { p.Ifname = "" },
		"pod.netns ":       func(p *enrollpb.Pod) { p.Netns = "" },
		"pod.netns_inode":  func(p *enrollpb.Pod) { p.NetnsInode = 0 },
		"pod.ips[0].address": func(p *enrollpb.Pod) {
			p.Ips = []*enrollpb.IPConfig{{Address: "10.0.0.5"}}
		},
		"pod.ips[0].gateway": func(p *enrollpb.Pod) {
			p.Ips = []*enrollpb.IPConfig{{Address: "10.0.0.5/24", Gateway: "gw"}}
		},
	} {
		t.Run(field, func(t *testing.T) {
			p := testPod("x")
			mutate(p)
			_, err := f.client.Enroll(ctx(t), &enrollpb.EnrollRequest{Pod: p})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("error = %v, want InvalidArgument", err)
			}
			if msg := status.Convert(err).Message() + " "; !strings.Contains(msg, field) {
				t.Fatalf("message %q does not name %q", msg, field)
			}
		})
	}
	if _, err := f.client.Enroll(ctx(t), &enrollpb.EnrollRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Enroll without pod: %v, want InvalidArgument", err)
	}
	for name, req := range map[string]*enrollpb.UnenrollRequest{
		"attachment is":           {Network: "n"},
		"attachment.container_id": {Network: "n", Attachment: &enrollpb.Attachment{Ifname: "eth0"}},
		"attachment.ifname":       {Network: "n", Attachment: &enrollpb.Attachment{ContainerId: "a"}},
	} {
		_, err := f.client.Unenroll(ctx(t), req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), name) {
			t.Errorf("Unenroll missing %s: error = %v", name, err)
		}
	}
	if n := len(f.reg.List()); n != 0 {
		t.Fatalf("invalid calls enrolled %d pods", n)
	}
}

func TestGCRemovesAttachmentsNotInValidSet(t *testing.T) {
	f := serve(t, nil, 0)
	c := ctx(t)
	for _, id := range []string{"keep", "stale1", "stale2"} {
		if _, err := f.client.Enroll(c, &enrollpb.EnrollRequest{Pod: testPod(id)}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := f.client.GC(c, &enrollpb.GCRequest{Network: "kindnet", ValidAttachments: []*enrollpb.Attachment{att("keep")}})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	var removed []string
	for _, p := range resp.GetRemoved() {
		removed = append(removed, p.GetContainerId())
	}
	if strings.Join(removed, ",") != "stale1,stale2" {
		t.Fatalf("GC removed %v, want stale1,stale2", removed)
	}
	if pods := f.reg.List(); len(pods) != 1 || pods[0].ContainerID != "keep" {
		t.Fatalf("after GC registry = %v", pods)
	}
	if _, err := f.client.GC(c, &enrollpb.GCRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("GC without network: %v, want InvalidArgument", err)
	}
}

func TestEnrollIntoFullRegistryIsResourceExhausted(t *testing.T) {
	f := serve(t, nil, 1)
	c := ctx(t)
	if _, err := f.client.Enroll(c, &enrollpb.EnrollRequest{Pod: testPod("a")}); err != nil {
		t.Fatal(err)
	}
	_, err := f.client.Enroll(c, &enrollpb.EnrollRequest{Pod: testPod("b")})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Enroll over bound: %v, want ResourceExhausted", err)
	}
}

func TestPeerWithDisallowedUIDIsRefused(t *testing.T) {
	f := serve(t, []uint32{12345}, 0)
	if os.Getuid() == 12345 {
		t.Skip("test process runs as the uid the test allows")
	}
	_, err := f.client.List(ctx(t), &enrollpb.ListRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("List from a disallowed uid: %v, want Unavailable", err)
	}
	if f.ln.Refused() == 0 {
		t.Fatal("listener did not count the refusal")
	}
}

func TestPeerWithAllowedUIDIsServed(t *testing.T) {
	f := serve(t, []uint32{12345, uint32(os.Getuid())}, 0)
	if _, err := f.client.List(ctx(t), &enrollpb.ListRequest{}); err != nil {
		t.Fatalf("List from an allowed uid: %v", err)
	}
	if f.ln.Refused() != 0 {
		t.Fatalf("Refused = %d, want 0", f.ln.Refused())
	}
}

func TestListenSocketModesAndStaleSocket(t *testing.T) {
	dir := shortDir(t)
	socket := filepath.Join(dir, "run", "weir", "weir.sock")

	// A socket file left behind by a dead daemon.
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		t.Fatal(err)
	}
	dead, err := net.ListenUnix("unix", &net.UnixAddr{Name: socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	dead.SetUnlinkOnClose(false)
	dead.Close()

	ln, err := Listen(ListenOptions{Path: socket})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	fi, err := os.Stat(socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(socket))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o755 {
		t.Errorf("socket dir mode = %v, want 0755", di.Mode().Perm())
	}

	// A live socket belongs to another daemon: never steal it.
	if _, err := Listen(ListenOptions{Path: socket}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("Listen over a live socket: %v, want an in-use error", err)
	}
	// A regular file is not ours to delete.
	file := filepath.Join(dir, "not-a-socket")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(ListenOptions{Path: file}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v, want a not-a-socket error", err)
	}
}

func TestSpoolDrainIntoServer(t *testing.T) {
	f := serve(t, nil, 0)
	sp := spool.New(filepath.Join(shortDir(t), "spool"), 16)
	invalid := testPod("bad")
	invalid.NetnsInode = 0
	for _, rec := range []*enrollpb.SpoolRecord{
		{Op: &enrollpb.SpoolRecord_Enroll{Enroll: &enrollpb.EnrollRequest{Pod: testPod("a")}}},
		{Op: &enrollpb.SpoolRecord_Enroll{Enroll: &enrollpb.EnrollRequest{Pod: testPod("b")}}},
		{Op: &enrollpb.SpoolRecord_Enroll{Enroll: &enrollpb.EnrollRequest{Pod: invalid}}},
		{Op: &enrollpb.SpoolRecord_Unenroll{Unenroll: &enrollpb.UnenrollRequest{Network: "kindnet", Attachment: att("a")}}},
		{Op: &enrollpb.SpoolRecord_Unenroll{Unenroll: &enrollpb.UnenrollRequest{Network: "kindnet", Attachment: att("never")}}},
	} {
		if _, err := sp.Write(rec); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Microsecond) // distinct timestamps keep write order
	}
	srv := f.srv
	st, err := sp.Drain(ctx(t), func(r *enrollpb.SpoolRecord) error { return srv.Apply(context.Background(), r) })
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if st.Applied != 4 || st.Rejected != 1 {
		t.Fatalf("drain stats %+v, want 4 applied, 1 rejected", st)
	}
	list, err := f.client.List(ctx(t), &enrollpb.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetPods()) != 1 || list.GetPods()[0].GetContainerId() != "b" {
		t.Fatalf("after drain the daemon lists %v, want only b", list.GetPods())
	}
}

func inodeOf(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestReconcileDropsPodsWhoseNetnsPathIsGoneOrReplaced(t *testing.T) {
	dir := t.TempDir()
	reg, err := registry.Open(registry.Options{Dir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	// Reconcile only compares paths and inodes; plain files stand in for the
	// nsfs bind mounts here (the privileged test below uses real ones).
	paths := map[string]string{}
	for _, id := range []string{"alive", "gone", "replaced"} {
		paths[id] = filepath.Join(dir, id)
		if err := os.WriteFile(paths[id], nil, 0o600); err != nil {
			t.Fatal(err)
		}
		p := testPod(id)
		p.Netns, p.NetnsInode = paths[id], inodeOf(t, paths[id])
		if _, err := reg.Enroll(registry.PodFromProto(p)); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(paths["gone"])
	// Keep the old file open so the new one cannot reuse its inode.
	old, err := os.Open(paths["replaced"])
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	os.Remove(paths["replaced"])
	if err := os.WriteFile(paths["replaced"], nil, 0o600); err != nil {
		t.Fatal(err)
	}

	removed, err := Reconcile(reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range removed {
		ids = append(ids, p.ContainerID)
	}
	if strings.Join(ids, ",") != "gone,replaced" {
		t.Fatalf("Reconcile removed %v, want gone,replaced", ids)
	}
	if pods := reg.List(); len(pods) != 1 || pods[0].ContainerID != "alive" {
		t.Fatalf("after reconcile: %v", pods)
	}
	if again, err := Reconcile(reg, slog.New(slog.DiscardHandler)); err != nil || len(again) != 0 {
		t.Fatalf("second Reconcile = %v, %v; want nothing", again, err)
	}
}

// With real network namespaces: one the test deletes is dropped, one that
// lives is kept.
func TestReconcileWithRealNetworkNamespaces(t *testing.T) {
	testenv.Privileged(t, "creates network namespaces")
	reg, err := registry.Open(registry.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	for _, id := range []string{"live", "deleted"} {
		name := "weir-rec-" + id + "-" + suffix
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
		path := "/var/run/netns/" + name
		p := testPod(id)
		p.Netns, p.NetnsInode = path, inodeOf(t, path)
		if _, err := reg.Enroll(registry.PodFromProto(p)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("ip", "netns", "delete", "weir-rec-deleted-"+suffix).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete: %v: %s", err, out)
	}
	removed, err := Reconcile(reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].ContainerID != "deleted" {
		t.Fatalf("Reconcile removed %v, want the deleted netns' pod", removed)
	}
	if pods := reg.List(); len(pods) != 1 || pods[0].ContainerID != "live" {
		t.Fatalf("after reconcile: %v", pods)
	}
}
