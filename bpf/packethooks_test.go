package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// TestPacketHooksRunOnlyWhileANetnsIsEnrolled moves loopback traffic in a
// netns that is not enrolled three times: with nothing enrolled the
// per-packet hooks do not run at all (not attached), while another netns is
// enrolled they run (and return at their gates), and after the last netns
// is unenrolled they stop again. Real eBPF, bpf_stats run counts, either
// capture tier (WEIR_TEST_CAPTURE_TIER).
func TestPacketHooksRunOnlyWhileANetnsIsEnrolled(t *testing.T) {
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF run stats: %v", err)
	}
	defer stats.Close()
	r := startCollector(t, Config{})
	enrolled, other := newNetns(t), newNetns(t)
	runs := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, h := range r.packet.hooks {
			st, err := r.coll.Programs[h.program].Stats()
			if err != nil {
				t.Fatal(err)
			}
			out[h.name] = st.RunCount
		}
		return out
	}
	if len(r.packet.hooks) == 0 {
		t.Fatal("no per-packet hooks loaded")
	}
	ran := func(what string) map[string]uint64 {
		before := runs()
		exchange(t, other, "tcp4", "127.0.0.1:0", 2, 1)
		after := runs()
		d := map[string]uint64{}
		for name, n := range after {
			d[name] = n - before[name]
		}
		t.Logf("%s: per-packet hook runs %v", what, d)
		return d
	}
	for name, n := range ran("nothing enrolled") {
		if n != 0 {
			t.Errorf("nothing enrolled, yet %s ran %d times", name, n)
		}
	}
	if err := r.Enroll(enrolled.ino, 31); err != nil {
		t.Fatal(err)
	}
	if d := ran("a netns enrolled"); d["tp_btf/net_dev_queue"] == 0 || d["tp_btf/skb_copy_datagram_iovec"] == 0 {
		t.Errorf("with a netns enrolled the per-packet hooks did not run: %v", d)
	}
	if err := r.Unenroll(enrolled.ino); err != nil {
		t.Fatal(err)
	}
	for name, n := range ran("last netns unenrolled") {
		if n != 0 {
			t.Errorf("after the last unenrollment %s ran %d times", name, n)
		}
	}
}
