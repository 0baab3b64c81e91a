package enroll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weirnet/weir/daemon/registry"
	"github.com/weirnet/weir/enrollapi/enrollpb"
	"github.com/weirnet/weir/internal/testenv"
)

const repairSocket = "/run/weir-test/weir.sock"

// writeCacheEntry writes a libcni cache file as libcni does.
func writeCacheEntry(t *testing.T, dir, network, id, netns, namespace, socket string) {
	t.Helper()
	conflist := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"bridge"},{"type":"weir","daemonSocket":%q}]}`, network, socket)
	e := map[string]any{
		"kind": "cniCacheV1", "containerId": id, "config": []byte(conflist), "ifName": "eth0",
		"networkName": network, "netns": netns,
		"cniArgs": [][2]string{{"K8S_POD_NAMESPACE", namespace}, {"K8S_POD_NAME", "pod-" + id}},
		"result":  map[string]any{"cniVersion": "1.0.0", "ips": []map[string]any{{"address": podAddr(id) + "/8"}}},
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "results"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results", network+"-"+id+"-eth0"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeSandboxes is a CRI that knows some sandboxes.
type fakeSandboxes struct {
	ready map[string]string // id -> netns
	err   error
}

func (f *fakeSandboxes) Ready(context.Context) (map[string]bool, error) {
	if f.err != nil {
		return nil, f.err
	}
	out := map[string]bool{}
	for id := range f.ready {
		out[id] = true
	}
	return out, nil
}

func (f *fakeSandboxes) Netns(_ context.Context, id string) (string, error) { return f.ready[id], nil }

// podNetns makes a netns holding eth0, a veth whose peer is on the host
// (privileged), as a bridge plugin's ADD leaves a pod.
func podNetns(t testing.TB, id string) string {
	t.Helper()
	testenv.Privileged(t, "creates network namespaces")
	name := fmt.Sprintf("weir-rp-%d-%s", os.Getpid(), id)
	host := fmt.Sprintf("wrp%d%s", os.Getpid()%10000, id)
	for _, args := range [][]string{
		{"netns", "add", name},
		{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", name},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("ip", "link", "delete", host).Run()
		exec.Command("ip", "netns", "delete", name).Run()
	})
	return "/var/run/netns/" + name
}

func TestRepairEnrollsOnlyLiveMissingAttachmentsOfThisDaemon(t *testing.T) {
	live, other := podNetns(t, "a"), podNetns(t, "b")
	cache := t.TempDir()
	writeCacheEntry(t, cache, "net", "a", live, "shop", repairSocket)                  // repaired
	writeCacheEntry(t, cache, "net", "b", other, "shop", "/run/other/weir.sock")       // another daemon's
	writeCacheEntry(t, cache, "net", "c", live, "kube-system", repairSocket)           // excluded namespace
	writeCacheEntry(t, cache, "net", "d", "/var/run/netns/gone", "shop", repairSocket) // netns gone
	writeCacheEntry(t, cache, "net", "e", other, "shop", repairSocket)                 // deleted live
	reg, err := registry.Open(registry.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(reg, slog.New(slog.DiscardHandler), ServerOptions{})
	if _, err := s.Unenroll(context.Background(), &enrollpb.UnenrollRequest{Network: "net", Attachment: att("e")}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Repair(context.Background(), RepairOptions{CacheDir: cache, Socket: repairSocket})
	if err != nil {
		t.Fatal(err)
	}
	pods := reg.List()
	if len(pods) != 1 || pods[0].ContainerID != "a" {
		t.Fatalf("repaired %v, want only a", pods)
	}
	p := pods[0]
	if p.Netns != live || p.HostVeth == "" || p.HostVethIndex == 0 || p.Namespace != "shop" ||
		len(p.IPs) != 1 || p.IPs[0].Address != podAddr("a")+"/8" {
		t.Errorf("repaired record %v lacks what the plugin's ADD would have sent", p)
	}
	if st.Repaired != 1 || testutil.ToFloat64(s.Metrics().Repaired) != 1 {
		t.Errorf("stats %+v, repaired_total %v; want 1 repaired", st, testutil.ToFloat64(s.Metrics().Repaired))
	}
	// A second round finds nothing missing.
	if st, _ := s.Repair(context.Background(), RepairOptions{CacheDir: cache, Socket: repairSocket}); st.Repaired != 0 {
		t.Errorf("second round repaired %d", st.Repaired)
	}
}

func TestRepairWithCRITrustsOnlyReadySandboxesAndTheirNetns(t *testing.T) {
	live := podNetns(t, "a")
	cache := t.TempDir()
	// containerd 1.6 writes no netns into the cache: the CRI supplies it.
	writeCacheEntry(t, cache, "net", "a", "", "shop", repairSocket)
	writeCacheEntry(t, cache, "net", "stopped", "", "shop", repairSocket)
	reg, err := registry.Open(registry.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(reg, slog.New(slog.DiscardHandler), ServerOptions{})
	cri := &fakeSandboxes{ready: map[string]string{"a": live}}
	if _, err := s.Repair(context.Background(), RepairOptions{CacheDir: cache, Socket: repairSocket, Sandboxes: cri}); err != nil {
		t.Fatal(err)
	}
	if pods := reg.List(); len(pods) != 1 || pods[0].ContainerID != "a" || pods[0].Netns != live {
		t.Fatalf("repaired %v, want a in %s", pods, live)
	}
	// The CRI down: the cache has no netns, so nothing more can be repaired, and nothing fails.
	cri.err = errors.New("connection refused")
	if _, err := s.Repair(context.Background(), RepairOptions{CacheDir: cache, Socket: repairSocket, Sandboxes: cri}); err != nil {
		t.Fatalf("Repair with the CRI down: %v", err)
	}
}

func TestRepairStopsAtAFullRegistryAndCountsNoRefusal(t *testing.T) {
	a, b := podNetns(t, "a"), podNetns(t, "b")
	cache := t.TempDir()
	writeCacheEntry(t, cache, "net", "a", a, "shop", repairSocket)
	writeCacheEntry(t, cache, "net", "b", b, "shop", repairSocket)
	reg, err := registry.Open(registry.Options{Dir: t.TempDir(), MaxPods: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(reg, slog.New(slog.DiscardHandler), ServerOptions{})
	st, err := s.Repair(context.Background(), RepairOptions{CacheDir: cache, Socket: repairSocket})
	if err != nil {
		t.Fatal(err)
	}
	if st.Repaired != 1 || st.Failed != 1 || len(reg.List()) != 1 {
		t.Errorf("stats %+v with %d pods, want 1 repaired and 1 still missing", st, len(reg.List()))
	}
	if got := testutil.ToFloat64(s.Metrics().Refused.WithLabelValues(ReasonRegistryFull)); got != 0 {
		t.Errorf("refused{registry_full} = %v: repair rounds are not refused ADDs", got)
	}
}

// The libcni cache is written by the runtime; whatever it holds, parsing
// must not panic.
func FuzzCacheEntry(f *testing.F) {
	f.Add([]byte(`{"kind":"cniCacheV1","containerId":"a","ifName":"eth0","networkName":"n",` +
		`"config":"eyJjbmlWZXJzaW9uIjoiMS4wLjAiLCJwbHVnaW5zIjpbeyJ0eXBlIjoid2VpciJ9XX0=",` +
		`"result":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.1.2.3/24","interface":0}]}}`))
	f.Add([]byte(`{"result":{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.2.3/24","interface":7}]}}`))
	f.Add([]byte(`{"result":{"cniVersion":"9.9.9"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e cacheEntry
		if json.Unmarshal(b, &e) != nil {
			return
		}
		e.weirConf()
		e.ips()
		e.arg("K8S_POD_NAMESPACE")
	})
}
