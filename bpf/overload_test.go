package bpf

import (
	"github.com/cilium/ebpf"

	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weirnet/weir/bpf/event"
)

// TestOverloadIsCountedAndRunKeepsGoing pushes 8 MiB through a 64 KiB ring
// buffer: the kernel side drops records and counts them, the drops show as
// Seq gaps (a later event of the same direction gets through after the
// drops), and capture carries on afterwards.
//
// The capture limit is lifted so that every chunk carries its payload: one
// 1 MiB write then emits 32 records of 4 KiB from a single program run, more
// than the ring buffer holds, so the overflow does not depend on how fast
// the reader happens to be (under QEMU's emulation it keeps up with a burst
// of size-only records).
func TestOverloadIsCountedAndRunKeepsGoing(t *testing.T) {
	r := startCollector(t, Config{RingBufferSize: 64 << 10, CaptureLimit: NoCaptureLimit})
	ns, after := newNetns(t), newNetns(t)
	if err := r.Enroll(ns.ino, 41); err != nil {
		t.Fatal(err)
	}
	// A drop shows as a Seq gap only when a later event of the same
	// direction gets through: if the reader falls behind for the whole
	// burst, everything up to the close is dropped and nothing after it
	// would show the gap. So the client holds the connection open after
	// the burst and, once the ring has drained, sends a trailer that the
	// server reads: both directions then have an event after every drop.
	const trailer = "end"
	written, drained := make(chan struct{}), make(chan struct{})
	var release sync.Once
	releaseClient := func() { release.Do(func() { close(drained) }) }
	t.Cleanup(releaseClient)
	addrCh := make(chan string, 1)
	srv := in(ns, func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		addrCh <- l.Addr().String()
		c, err := l.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		n, err := io.Copy(io.Discard, c)
		if n != 8<<20+int64(len(trailer)) {
			return fmt.Errorf("server got %d bytes (%v)", n, err)
		}
		return err
	})
	addr := <-addrCh
	client := in(ns, func() error {
		var port int
		fmt.Sscan(addr[strings.LastIndexByte(addr, ':')+1:], &port)
		fd, err := rawConnect4(port)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		chunk := make([]byte, 1<<20)
		for range 8 {
			if err := writeAll(fd, chunk); err != nil {
				return err
			}
		}
		close(written)
		<-drained
		return writeAll(fd, []byte(trailer))
	})
	select {
	case <-written:
	case err := <-client:
		t.Fatalf("client ended before its burst was written: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("timed out after 20s writing the burst")
	}

	counters, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if counters["ringbuf_full"] == 0 {
		t.Fatalf("8 MiB through a 64 KiB ring buffer and no drop counted: %v", counters)
	}
	// The reader sleeps when it finds the ring empty and nothing wakes it
	// (Config.PollInterval): let it drain the burst before the events that
	// must get through, or a still-full 64 KiB ring drops them too.
	eventually(t, 5*time.Second, "the ring buffer drained after the burst", func() bool {
		return r.ReaderStats().RingBufferUsed == 0
	})
	releaseClient()
	wait(t, client, 10*time.Second)
	wait(t, srv, 10*time.Second)
	eventually(t, 5*time.Second, "the ring buffer drained after the trailer", func() bool {
		return r.ReaderStats().RingBufferUsed == 0
	})
	// Everything that was not dropped has been delivered once the
	// exchange in the second netns is seen (ring buffer order).
	if err := r.Enroll(after.ino, 42); err != nil {
		t.Fatal(err)
	}
	convs := exchange(t, after, "tcp4", "127.0.0.1:0", 3, 3)
	checkConversations(t, r, after, 42, convs)

	s := r.rec.snapshot(ns.ino)
	gaps := 0
	for _, o := range s.opens {
		for _, dir := range []event.Direction{event.Egress, event.Ingress} {
			gaps += streamOf(t, s, o.Conn, dir).gaps
		}
	}
	if gaps == 0 && len(s.opens) == 2 {
		t.Fatalf("drops counted (%d) but no Seq gap visible", counters["ringbuf_full"])
	}
	st := r.ReaderStats()
	t.Logf("overload: kernel counters %v; %d records read, %d decode errors; %d data events and %d Seq gaps seen in the burst",
		counters, st.Records, st.DecodeErrors, len(s.data), gaps)
	if st.DecodeErrors != 0 {
		t.Fatalf("%d records failed to decode", st.DecodeErrors)
	}
	if st.RingBufferSize != 64<<10 || st.RingBufferUsed < 0 || st.RingBufferUsed > st.RingBufferSize {
		t.Fatalf("ring buffer use %d of %d, want a size of 64 KiB", st.RingBufferUsed, st.RingBufferSize)
	}
}

// With RichTier off (bpf.richTier=false) the base tier runs even where a
// richer one attaches, and Features says why the richer one is not in use.
func TestRichTierOffKeepsTheBaseTier(t *testing.T) {
	requireRoot(t)
	c, err := Load(Config{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f := c.Features()
	if f.Tier != TierBase {
		t.Fatalf("active tier %v without RichTier, want base", f.Tier)
	}
	if _, richer := chooseTier(f.Tiers, false); richer && !strings.Contains(f.TierError, "RichTier") {
		t.Fatalf("a richer tier attaches here but the tier error %q does not say it is off", f.TierError)
	}
}

// optionalSocketHook says whether the socket tier runs without hook name.
func optionalSocketHook(name string) bool {
	needed, listed := socketTierHooks[name]
	return listed && !needed
}

func TestFeatureProbeReportsEachTierWithReason(t *testing.T) {
	requireRoot(t)
	c, err := Load(Config{RichTier: true}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f := c.Features()
	if want, _ := chooseTier(f.Tiers, false); f.Tier != want {
		t.Fatalf("active tier %v, want %v from the probes %+v (tier error %q)", f.Tier, want, f.Tiers, f.TierError)
	}
	spec, err := loadCapture()
	if err != nil {
		t.Fatal(err)
	}
	var base, tc int
	for _, p := range spec.Programs {
		if p.Type == ebpf.SchedCLS {
			tc++ // per-pod, attached by EnrollPod
		} else {
			base++
		}
	}
	var baseHooks int
	for _, h := range f.Hooks {
		switch {
		case h.Tier == TierBase && h.Attached:
			baseHooks++
		case h.Tier == TierBase && strings.Contains(h.Reason, "tier only; the "+f.Capture.String()+" tier runs"):
			baseHooks++ // the other capture tier's hook, left out
		case h.Tier == TierBase && optionalSocketHook(h.Name) && strings.Contains(h.Reason, "not in kernel BTF"):
			baseHooks++ // an optional hook this kernel lacks (6.12: tcp_sendmsg_locked)
		case h.Tier == TierBase:
			t.Fatalf("base hook %+v not attached", h)
		case h.Tier != f.Tier:
			t.Fatalf("hook %+v of a tier that is not active (%v)", h, f.Tier)
		case !h.Attached && h.Reason == "":
			t.Fatalf("hook %+v unattached without a reason", h)
		}
	}
	if baseHooks != base || tc != 2 {
		t.Fatalf("%d base hooks reported for %d base programs (%d TC programs)", baseHooks, base, tc)
	}
	if len(f.Tiers) != 3 || f.Tiers[0] != (TierStatus{Tier: TierBase, Available: true}) {
		t.Fatalf("tiers %+v", f.Tiers)
	}
	for _, ts := range f.Tiers[1:] {
		if !ts.Available && ts.Reason == "" {
			t.Fatalf("tier %v unavailable without a reason", ts.Tier)
		}
		t.Logf("tier %v: available=%v reason=%q", ts.Tier, ts.Available, ts.Reason)
	}

	// kprobes exist exactly when the kernel registers the kprobe PMU.
	_, err = os.Stat("/sys/bus/event_source/devices/kprobe")
	if hasKprobes := err == nil; f.Tiers[TierKprobe].Available != hasKprobes {
		t.Fatalf("kprobe tier available=%v, but kprobe PMU present=%v", f.Tiers[TierKprobe].Available, hasKprobes)
	}
	// Under lockdown the kernel refuses fentry with EPERM.
	if mode, err := lockdownMode(t); err != nil {
		t.Logf("lockdown mode unknown (%v): fentry result not cross-checked", err)
	} else if locked := mode != "none"; locked {
		if f.Tiers[TierFentry].Available || !strings.Contains(f.Tiers[TierFentry].Reason, "operation not permitted") {
			t.Fatalf("lockdown %q but fentry tier %+v", mode, f.Tiers[TierFentry])
		}
	}
}

// lockdownMode reads the active lockdown mode, mounting securityfs for the
// duration of the test if it is not mounted.
func lockdownMode(t *testing.T) (string, error) {
	const dir = "/sys/kernel/security"
	b, err := os.ReadFile(dir + "/lockdown")
	if errors.Is(err, os.ErrNotExist) {
		if err := unix.Mount("securityfs", dir, "securityfs", 0, ""); err != nil {
			return "", fmt.Errorf("mount securityfs: %w", err)
		}
		t.Cleanup(func() { unix.Unmount(dir, 0) })
		b, err = os.ReadFile(dir + "/lockdown")
	}
	if err != nil {
		return "", err
	}
	// "none [integrity] confidentiality": the active mode is bracketed.
	s := string(b)
	i, j := strings.IndexByte(s, '['), strings.IndexByte(s, ']')
	if i < 0 || j < i {
		return "", fmt.Errorf("unexpected lockdown file %q", s)
	}
	return s[i+1 : j], nil
}
