package registry

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func pod(id string) *Pod {
	return &Pod{
		Network: "kindnet", ContainerID: id, Ifname: "eth0",
		Netns: "/var/run/netns/" + id, NetnsInode: 4026532000,
		Namespace: "default", Name: "pod-" + id, UID: "uid-" + id,
		IPs: []IPConfig{{Address: podAddr(id) + "/8", Gateway: "10.0.0.1"}},
	}
}

// podAddr gives every test pod id its own address, as IPAM would.
func podAddr(id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	v := h.Sum32()
	return fmt.Sprintf("10.%d.%d.%d", byte(v>>16), byte(v>>8), byte(v)|1)
}

func TestEnrollRefusesAnAddressAnotherPodHolds(t *testing.T) {
	r := open(t, t.TempDir())
	if _, err := r.Enroll(pod("a")); err != nil {
		t.Fatal(err)
	}
	thief := pod("b")
	thief.IPs = pod("a").IPs
	_, err := r.Enroll(thief)
	var inUse *IPInUseError
	if !errors.As(err, &inUse) || !errors.Is(err, ErrIPInUse) || inUse.Owner.ContainerID != "a" {
		t.Fatalf("Enroll of a pod claiming a's address = %v, want an IPInUseError naming a", err)
	}
	// Re-enrolling the owner with the same address is a replacement, not a conflict.
	if _, err := r.Enroll(pod("a")); err != nil {
		t.Fatalf("re-enroll of the owner: %v", err)
	}
	if _, err := r.Remove(KeyOf(pod("a"))); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Enroll(thief); err != nil {
		t.Fatalf("enroll after the owner left: %v", err)
	}
}

func TestReenrollWithANewAddressFreesTheOldOne(t *testing.T) {
	r := open(t, t.TempDir())
	a := pod("a")
	mustEnroll(t, r, a)
	moved := pod("a")
	moved.IPs = pod("moved").IPs
	mustEnroll(t, r, moved)
	b := pod("b")
	b.IPs = a.IPs
	if _, err := r.Enroll(b); err != nil {
		t.Fatalf("enroll of a's old address after a moved: %v", err)
	}
	c := pod("c")
	c.IPs = moved.IPs
	if _, err := r.Enroll(c); !errors.Is(err, ErrIPInUse) {
		t.Fatalf("enroll of a's new address = %v, want ErrIPInUse", err)
	}
}

func TestAddressOwnershipSurvivesARestart(t *testing.T) {
	dir := t.TempDir()
	mustEnroll(t, open(t, dir), pod("a"))
	r := open(t, dir)
	b := pod("b")
	b.IPs = pod("a").IPs
	if _, err := r.Enroll(b); !errors.Is(err, ErrIPInUse) {
		t.Fatalf("after reopening, enroll of a's address = %v, want ErrIPInUse", err)
	}
}

func TestEnrollBeyondTheFileBoundIsRefusedAndNothingChanges(t *testing.T) {
	r, err := Open(Options{Dir: t.TempDir(), MaxFileBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Enroll(pod("a")); err != nil {
		t.Fatal(err)
	}
	big := pod("b")
	big.Name = strings.Repeat("x", 3000)
	if _, err := r.Enroll(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Enroll past the file bound = %v, want ErrTooLarge", err)
	}
	if st := r.Stats(); st.Pods != 1 {
		t.Errorf("%d pods after a refused enroll, want 1", st.Pods)
	}
}

// recorder is an Observer that logs events as "+id:container" / "-id:container".
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) PodEnrolled(p *Pod) {
	r.add(fmt.Sprintf("+%d:%s", p.ID, p.ContainerID))
}
func (r *recorder) PodRemoved(p *Pod) {
	r.add(fmt.Sprintf("-%d:%s", p.ID, p.ContainerID))
}
func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, s)
}
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.events, " ")
}

func clock() func() time.Time {
	t := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Second); return t }
}

func open(t *testing.T, dir string, obs ...Observer) *Registry {
	t.Helper()
	r, err := Open(Options{Dir: dir, Observers: obs, Now: clock()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

func mustEnroll(t *testing.T, r *Registry, p *Pod) *Pod {
	t.Helper()
	got, err := r.Enroll(p)
	if err != nil {
		t.Fatalf("Enroll(%s): %v", KeyOf(p), err)
	}
	return got
}

func TestEnrollAssignsIncreasingIDsAndEnrollTime(t *testing.T) {
	r := open(t, t.TempDir())
	a := mustEnroll(t, r, pod("a"))
	b := mustEnroll(t, r, pod("b"))
	if a.ID != 1 || b.ID != 2 {
		t.Fatalf("ids = %d, %d, want 1, 2", a.ID, b.ID)
	}
	if a.EnrolledAt.IsZero() || !a.EnrolledAt.Before(b.EnrolledAt) {
		t.Fatalf("enrolledAt not set in order: %v, %v", a.EnrolledAt, b.EnrolledAt)
	}
	got, ok := r.Get(KeyOf(pod("a")))
	if !ok || got.Name != "pod-a" || got.ID != 1 {
		t.Fatalf("Get(a) = %v, %v", got, ok)
	}
}

func TestEnrollRejectsIncompleteKey(t *testing.T) {
	r := open(t, t.TempDir())
	p := pod("a")
	p.Ifname = ""
	if _, err := r.Enroll(p); err == nil {
		t.Fatal("Enroll with empty ifname succeeded")
	}
}

func TestReenrollKeepsIDAndReplacesRecord(t *testing.T) {
	rec := &recorder{}
	r := open(t, t.TempDir(), rec)
	first := mustEnroll(t, r, pod("a"))
	mustEnroll(t, r, pod("b"))

	again := pod("a")
	again.IPs = []IPConfig{{Address: "10.0.0.9/24"}}
	second := mustEnroll(t, r, again)
	if second.ID != first.ID {
		t.Fatalf("re-enroll changed id %d -> %d", first.ID, second.ID)
	}
	if !second.EnrolledAt.Equal(first.EnrolledAt) {
		t.Errorf("re-enroll of the same netns changed enrolledAt")
	}
	if got := second.IPs[0].Address; got != "10.0.0.9/24" {
		t.Errorf("re-enroll did not replace ips: %s", got)
	}
	if n := len(r.List()); n != 2 {
		t.Fatalf("List has %d pods, want 2", n)
	}

	// A new netns for the same attachment: observers drop the old netns first.
	moved := pod("a")
	moved.NetnsInode = 4026539999
	third := mustEnroll(t, r, moved)
	if third.ID != first.ID || third.EnrolledAt.Equal(first.EnrolledAt) {
		t.Errorf("netns change: id %d enrolledAt %v; want same id, new time", third.ID, third.EnrolledAt)
	}
	if got, want := rec.String(), "+1:a +2:b +1:a -1:a +1:a"; got != want {
		t.Fatalf("observer events = %q, want %q", got, want)
	}
}

func TestRestartKeepsPodsIDsAndNeverReusesIDs(t *testing.T) {
	dir := t.TempDir()
	r := open(t, dir)
	mustEnroll(t, r, pod("a"))
	mustEnroll(t, r, pod("b"))
	mustEnroll(t, r, pod("c"))
	if _, err := r.Remove(KeyOf(pod("c"))); err != nil { // the highest id
		t.Fatal(err)
	}

	rec := &recorder{}
	r2 := open(t, dir, rec)
	pods := r2.List()
	if len(pods) != 2 || pods[0].ContainerID != "a" || pods[0].ID != 1 || pods[1].ID != 2 {
		t.Fatalf("after restart List = %v", pods)
	}
	if pods[0].Name != "pod-a" || pods[0].IPs[0].Gateway != "10.0.0.1" || pods[0].EnrolledAt.IsZero() {
		t.Fatalf("after restart pod a lost fields: %v", pods[0])
	}
	if got := rec.String(); got != "+1:a +2:b" {
		t.Fatalf("observers at Open saw %q, want every loaded pod", got)
	}
	d := mustEnroll(t, r2, pod("d"))
	if d.ID != 4 {
		t.Fatalf("new pod after restart got id %d, want 4 (3 was used before)", d.ID)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("registry file mode = %v, want 0600", fi.Mode().Perm())
	}
}

// A crash after the temporary file is written but before it is renamed leaves
// the temp file behind: the previous file stays authoritative.
func TestLeftoverTempFileFromCrashIsIgnoredAndRemoved(t *testing.T) {
	dir := t.TempDir()
	r := open(t, dir)
	mustEnroll(t, r, pod("a"))

	// The interrupted write: a complete, newer state that never got renamed,
	// and a torn one; both must lose to the renamed file.
	tmp := filepath.Join(dir, FileName+tempSuffix)
	for _, content := range []string{
		`{"version":1,"nextId":3,"pods":[{"id":1,"network":"kindnet","containerId":"a","ifname":"eth0"},{"id":2,"network":"kindnet","containerId":"ghost","ifname":"eth0"}]}`,
		`{"version":1,"nextId":3,"pods":[{"id":1,"netw`,
	} {
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		r2 := open(t, dir)
		pods := r2.List()
		if len(pods) != 1 || pods[0].ContainerID != "a" {
			t.Fatalf("after crash List = %v, want only pod a", pods)
		}
		if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("leftover temp file not removed: %v", err)
		}
	}
}

// A failure between write and rename must not be acknowledged, and memory
// must not run ahead of disk.
func TestFailedPersistIsNotAcknowledgedNorApplied(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{}
	r := open(t, dir, rec)
	mustEnroll(t, r, pod("a"))

	crash := errors.New("simulated crash before rename")
	r.beforeRename = func() error { return crash }
	if _, err := r.Enroll(pod("b")); !errors.Is(err, crash) {
		t.Fatalf("Enroll error = %v, want the persist failure", err)
	}
	if _, err := r.Remove(KeyOf(pod("a"))); !errors.Is(err, crash) {
		t.Fatalf("Remove error = %v, want the persist failure", err)
	}
	if _, ok := r.Get(KeyOf(pod("b"))); ok {
		t.Fatal("pod b is in memory although its enrollment was not persisted")
	}
	if _, ok := r.Get(KeyOf(pod("a"))); !ok {
		t.Fatal("pod a left memory although its removal was not persisted")
	}
	if got := rec.String(); got != "+1:a" {
		t.Fatalf("observers saw unpersisted changes: %q", got)
	}

	r.beforeRename = nil
	b := mustEnroll(t, r, pod("b"))
	if b.ID != 2 {
		t.Fatalf("id after failed enroll = %d, want 2 (failed attempt consumes no id)", b.ID)
	}
	if n := len(open(t, dir).List()); n != 2 {
		t.Fatalf("restart sees %d pods, want 2", n)
	}
}

func TestCorruptFileIsAClearError(t *testing.T) {
	for name, content := range map[string]string{
		"not json":        `{"version":1,"nextId":`,
		"bad pod":         `{"version":1,"nextId":2,"pods":[{"id":"x"}]}`,
		"id beyond next":  `{"version":1,"nextId":2,"pods":[{"id":5,"network":"n","containerId":"c","ifname":"eth0"}]}`,
		"duplicate key":   `{"version":1,"nextId":3,"pods":[{"id":1,"network":"n","containerId":"c","ifname":"eth0"},{"id":2,"network":"n","containerId":"c","ifname":"eth0"}]}`,
		"zero next id":    `{"version":1,"nextId":0,"pods":[]}`,
		"unknown version": `{"version":7,"nextId":1,"pods":[]}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(Options{Dir: dir})
			if err == nil {
				t.Fatal("Open of a corrupt registry succeeded")
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
}

func TestMaxPodsBoundIsEnforcedAndCounted(t *testing.T) {
	r, err := Open(Options{Dir: t.TempDir(), MaxPods: 2})
	if err != nil {
		t.Fatal(err)
	}
	mustEnroll(t, r, pod("a"))
	mustEnroll(t, r, pod("b"))
	for range 2 {
		if _, err := r.Enroll(pod("c")); !errors.Is(err, ErrFull) {
			t.Fatalf("Enroll over bound: %v, want ErrFull", err)
		}
	}
	mustEnroll(t, r, pod("a")) // replacing is allowed when full
	st := r.Stats()
	if st.FullRejections != 2 || st.Pods != 2 || st.MaxPods != 2 {
		t.Fatalf("Stats = %+v, want 2 rejections, 2 of 2 pods", st)
	}
	if _, err := Open(Options{Dir: t.TempDir(), MaxPods: -1}); err == nil {
		t.Fatal("Open with negative MaxPods succeeded")
	}
}

func TestRemoveUnknownIsNotAnError(t *testing.T) {
	r := open(t, t.TempDir())
	p, err := r.Remove(KeyOf(pod("nope")))
	if err != nil || p != nil {
		t.Fatalf("Remove(unknown) = %v, %v; want nil, nil", p, err)
	}
}

func TestGCDropsOnlyInvalidAttachmentsOfThatNetwork(t *testing.T) {
	rec := &recorder{}
	r := open(t, t.TempDir(), rec)
	mustEnroll(t, r, pod("keep"))
	mustEnroll(t, r, pod("stale"))
	other := pod("other-net")
	other.Network = "second"
	mustEnroll(t, r, other)

	removed, err := r.GC("kindnet", []Key{{Network: "kindnet", ContainerID: "keep", Ifname: "eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].ContainerID != "stale" {
		t.Fatalf("GC removed %v, want only stale", removed)
	}
	var left []string
	for _, p := range r.List() {
		left = append(left, p.ContainerID)
	}
	if strings.Join(left, ",") != "keep,other-net" {
		t.Fatalf("left %v", left)
	}
	if !strings.HasSuffix(rec.String(), "-2:stale") {
		t.Fatalf("observer did not see the GC removal: %q", rec)
	}
}

func TestConcurrentEnrollsGetDistinctIDs(t *testing.T) {
	dir := t.TempDir()
	r := open(t, dir)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := r.Enroll(pod(fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	seen := map[uint32]bool{}
	for _, p := range open(t, dir).List() {
		if seen[p.ID] {
			t.Fatalf("id %d assigned twice", p.ID)
		}
		seen[p.ID] = true
	}
	if len(seen) != 20 {
		t.Fatalf("%d pods persisted, want 20", len(seen))
	}
}
