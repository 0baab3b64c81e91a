package identity

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestContainerIDFromPath(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	id2 := strings.Repeat("f", 64)
	for _, tc := range []struct {
		path, want string
	}{
		{"/k8s.io/" + id, id},                          // containerd, cgroupfs driver
		{"/kubepods/burstable/pod1234-5678/" + id, id}, // kubelet cgroupfs layout
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12_34.slice/cri-containerd-" + id + ".scope", id},
		{"/kubepods.slice/kubepods-pod1.slice/crio-" + id + ".scope", id},
		{"/kubepods.slice/kubepods-pod1.slice/crio-conmon-" + id + ".scope", ""}, // CRI-O's monitor, not the container
		{"/docker/" + id, id},
		{"/system.slice/docker-" + id + ".scope", id},
		{"/machine.slice/libpod-" + id + ".scope", id},
		{"/docker/" + id2 + "/k8s.io/" + id, id}, // nested: the innermost wins
		{"/k8s.io/" + id + "/sub", id},           // a sub-cgroup of the container
		{"/", ""},
		{"", ""},
		{"/system.slice/sshd.service", ""},
		{"/k8s.io/" + strings.ToUpper(id), ""},   // ids are lower case hex
		{"/k8s.io/" + id[:63], ""},               // too short
		{"/k8s.io/" + id + "0", ""},              // too long
		{"/k8s.io/" + id[:63] + "g", ""},         // not hex
		{"/cri-containerd-" + id + ".slice", ""}, // wrong suffix keeps the prefix
	} {
		if got := ContainerIDFromPath(tc.path); got != tc.want {
			t.Errorf("ContainerIDFromPath(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestCgroupResolverRejectsBadConfig(t *testing.T) {
	if _, err := NewCgroupResolver(CgroupResolverConfig{Root: t.TempDir(), CacheSize: -1}); err == nil || !strings.Contains(err.Error(), "CacheSize") {
		t.Errorf("negative CacheSize: error %v", err)
	}
	if _, err := NewCgroupResolver(CgroupResolverConfig{Root: filepath.Join(t.TempDir(), "absent")}); err == nil {
		t.Error("missing root accepted")
	}
}

// The walk logic on an ordinary directory tree standing in for a cgroup
// mount (inode numbers play the cgroup ids), including the bounds.
func TestCgroupResolverWalkCachesAndBounds(t *testing.T) {
	root := t.TempDir()
	ids := []string{strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)}
	var inos []uint64
	for _, id := range ids {
		p := filepath.Join(root, "k8s.io", id)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		inos = append(inos, inode(t, p))
	}
	host := filepath.Join(root, "system.slice", "sshd.service")
	if err := os.MkdirAll(host, 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := NewCgroupResolver(CgroupResolverConfig{Root: root, CacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.ContainerID(inos[0]); got != ids[0] {
		t.Errorf("ContainerID = %q, want %q", got, ids[0])
	}
	if p, err := r.Path(inode(t, host)); err != nil || p != "/system.slice/sshd.service" {
		t.Errorf("Path(host) = %q, %v", p, err)
	}
	if got := r.ContainerID(inode(t, host)); got != "" {
		t.Errorf("host cgroup container id %q", got)
	}
	if _, err := r.Path(1 << 60); err == nil {
		t.Error("Path of an absent id succeeded")
	}
	st := r.Stats()
	if st.Cached > 2 {
		t.Errorf("cache holds %d > CacheSize 2", st.Cached)
	}
	if st.CacheEvictions == 0 {
		t.Error("no cache eviction counted with 3 containers and CacheSize 2")
	}
	walks := st.Walks
	r.ContainerID(1 << 60) // a cached miss: no new walk
	if st := r.Stats(); st.Walks != walks || st.Hits == 0 {
		t.Errorf("repeated miss walked again (walks %d -> %d, hits %d)", walks, st.Walks, st.Hits)
	}

	small, err := NewCgroupResolver(CgroupResolverConfig{Root: root, MaxWalkDirs: 2})
	if err != nil {
		t.Fatal(err)
	}
	small.ContainerID(1 << 61)
	if st := small.Stats(); st.WalkLimitHits != 1 {
		t.Errorf("WalkLimitHits = %d, want 1", st.WalkLimitHits)
	}
}

// The real thing: a cgroup created in the cgroup2 mount is found by the id
// the kernel gives it.
func TestCgroupResolverFindsRealCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a cgroup needs root")
	}
	mnt, err := FindCgroup2Mount()
	if err != nil {
		t.Fatalf("no cgroup2 mount on this machine: %v", err)
	}
	id := "5eed" + strings.Repeat("0", 56) + "cafe"
	top, err := os.MkdirTemp(mnt, "weir-capture-test-")
	if err != nil {
		t.Fatalf("creating a test cgroup under %s: %v", mnt, err)
	}
	cg := filepath.Join(top, "k8s.io", id)
	t.Cleanup(func() {
		// cgroups are removed with rmdir, innermost first.
		for _, p := range []string{cg, filepath.Dir(cg), top} {
			if err := syscall.Rmdir(p); err != nil && !os.IsNotExist(err) {
				t.Errorf("removing test cgroup %s: %v", p, err)
			}
		}
	})
	if err := os.MkdirAll(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := NewCgroupResolver(CgroupResolverConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// The kernel's cgroup id (what bpf_get_current_cgroup_id returns) is
	// the kernfs node id, exported as the directory's file handle; check it
	// is the inode number the resolver matches on.
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, cg, 0)
	if err != nil {
		t.Fatalf("name_to_handle_at %s: %v", cg, err)
	}
	cgid := binary.NativeEndian.Uint64(h.Bytes())
	if ino := inode(t, cg); ino != cgid {
		t.Fatalf("cgroup id %d != inode %d", cgid, ino)
	}
	if got := r.ContainerID(cgid); got != id {
		t.Errorf("ContainerID(%d) = %q, want %q", cgid, got, id)
	}
	want := strings.TrimPrefix(cg, mnt)
	if p, err := r.Path(cgid); err != nil || p != want {
		t.Errorf("Path = %q, %v; want %q", p, err, want)
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// The resolver's metrics keep the names they had under package capture.
func TestCgroupCollectorExportsLookupsAndWalks(t *testing.T) {
	cg, err := NewCgroupResolver(CgroupResolverConfig{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cg.ContainerID(12345)
	cg.ContainerID(12345)
	c := NewCgroupCollector(cg)
	values := lintedValues(t, c)
	for key, want := range map[string]float64{
		"weir_capture_cgroup_walks_total":                      1, // the miss is cached: one walk
		"weir_capture_cgroup_lookups_total{miss}":              1,
		"weir_capture_cgroup_lookups_total{hit}":               1,
		"weir_capture_cgroup_bounds_hit_total{walk_limit}":     0,
		"weir_capture_cgroup_bounds_hit_total{walk_error}":     0,
		"weir_capture_cgroup_bounds_hit_total{cache_eviction}": 0,
		"weir_capture_cgroup_cached":                           1,
	} {
		if got, ok := values[key]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
}
