package bpf

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestCaptureCostPerRoundTripPerTier is a measurement, not an assertion:
// 64-byte request/response round trips over loopback in an enrolled netns,
// with nothing attached and under each capture tier, the order rotating
// each round; it logs wall time per round trip and the collection's eBPF
// run time per round trip (bpf_stats, which adds two clock reads per run).
// Root and real eBPF; runs when WEIR_BPF_TIER_COST=1.
func TestCaptureCostPerRoundTripPerTier(t *testing.T) {
	measurement(t, "WEIR_BPF_TIER_COST")
	const trips, rounds = 20000, 3
	type variant struct {
		name string
		tier CaptureTier
		none bool
	}
	variants := []variant{{"nothing attached", 0, true}, {"socket tier", CaptureSocket, false}, {"syscall tier", CaptureSyscall, false}}
	if !kernelHasSocketTier(t) {
		variants = []variant{variants[0], variants[2]}
	}
	wall := map[string][]float64{}
	bpfNs := map[string][]float64{}
	for round := range rounds {
		for k := range variants {
			v := variants[(k+round)%len(variants)]
			ns := newNetns(t)
			var c *Collector
			if !v.none {
				var err error
				if c, err = Load(Config{CaptureTier: v.tier}, testLogger(t)); err != nil {
					t.Fatal(err)
				}
				if err := c.Enroll(ns.ino, 1); err != nil {
					t.Fatal(err)
				}
			}
			// The reader drains the ring as the daemon's would, so no
			// record is dropped for a full ring.
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			if c != nil {
				go func() { done <- c.Run(ctx, &recorder{}) }()
			} else {
				done <- nil
			}
			stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
			if err != nil {
				t.Fatal(err)
			}
			runtime := func() time.Duration {
				var sum time.Duration
				if c == nil {
					return 0
				}
				for _, p := range c.coll.Programs {
					if st, err := p.Stats(); err == nil {
						sum += st.Runtime
					}
				}
				return sum
			}
			perProg := func() map[string]*ebpf.ProgramStats {
				out := map[string]*ebpf.ProgramStats{}
				if c != nil {
					for name, p := range c.coll.Programs {
						if st, err := p.Stats(); err == nil {
							out[name] = st
						}
					}
				}
				return out
			}
			before, progsBefore := runtime(), perProg()
			d := roundTrips(t, ns, trips)
			after := runtime()
			if round == rounds-1 {
				for name, st := range perProg() {
					if n := st.RunCount - progsBefore[name].RunCount; n > 0 {
						t.Logf("%s: %s %.1f runs per round trip, %v per run", v.name, name,
							float64(n)/trips, (st.Runtime-progsBefore[name].Runtime)/time.Duration(n))
					}
				}
			}
			stats.Close()
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if c != nil {
				lost, err := c.Counters()
				if err != nil {
					t.Fatal(err)
				}
				if lost["ringbuf_full"] != 0 {
					t.Logf("%s: %d records lost to a full ring", v.name, lost["ringbuf_full"])
				}
				c.Close()
			}
			wall[v.name] = append(wall[v.name], float64(d.Nanoseconds())/trips)
			bpfNs[v.name] = append(bpfNs[v.name], float64((after-before).Nanoseconds())/trips)
		}
	}
	base := median(wall[variants[0].name])
	for _, v := range variants {
		w := median(wall[v.name])
		t.Logf("%s: %.0f ns per 64 B round trip (%.3f of nothing attached), eBPF %.0f ns per round trip (medians of %d)",
			v.name, w, w/base, median(bpfNs[v.name]), rounds)
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// roundTrips runs n 64-byte write/read/write/read round trips between a
// client and a server in ns and returns the client's wall time.
func roundTrips(t *testing.T, ns *testNetns, n int) time.Duration {
	t.Helper()
	var lfd, port int
	wait(t, in(ns, func() error { lfd, port = rawListen4(t); return nil }), time.Second)
	msg := bytes.Repeat([]byte("x"), 64)
	srv := in(ns, func() error {
		defer unix.Close(lfd)
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for range n {
			if _, err := readFull(fd, len(msg)); err != nil {
				return err
			}
			if err := writeAll(fd, msg); err != nil {
				return err
			}
		}
		return nil
	})
	var took time.Duration
	cli := in(ns, func() error {
		fd, err := rawConnect4(port)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		start := time.Now()
		for range n {
			if err := writeAll(fd, msg); err != nil {
				return err
			}
			if _, err := readFull(fd, len(msg)); err != nil {
				return fmt.Errorf("read: %w", err)
			}
		}
		took = time.Since(start)
		return nil
	})
	wait(t, cli, time.Minute)
	wait(t, srv, time.Minute)
	return took
}
