package skywalking

import (
	"strings"
	"testing"

	"github.com/weirnet/weir/bpf/event"
)

// On the base tier packets are measured and L4 duration is not: the write
// L4 message is sent for its packets, so its duration arrives as 0, while
// the read L4 message, whose only field is that duration, is left out.
func TestOAPImpactSaysWhichUnmeasuredFieldsArriveAsZero(t *testing.T) {
	base := event.MetricPackets | event.MetricRetransmits | event.MetricDrops | event.MetricL2Duration |
		event.MetricL2Queue | event.MetricRecvQueue | event.MetricRTT
	got := OAPImpact(event.MetricL4Duration, base)
	if !strings.Contains(got, "sent as 0 in write L4") || !strings.Contains(got, "read L4 left out") {
		t.Errorf("l4_duration on the base tier: %q", got)
	}
	if got := OAPImpact(event.MetricL3Duration, base); strings.Contains(got, "sent as 0") || !strings.Contains(got, "write L3, read L3 left out") {
		t.Errorf("l3_duration on the base tier: %q", got)
	}
	if got := OAPImpact(event.MetricPackets, base); strings.Contains(got, "sent as 0") || strings.Contains(got, "left out") {
		t.Errorf("measured packets: %q", got)
	}
	if got := OAPImpact(event.MetricRTT, base); !strings.Contains(got, "not exported") {
		t.Errorf("rtt: %q", got)
	}
	// Every metric the kernel side names is accounted for.
	for m := event.MetricL4Duration; m <= event.MetricRTT; m <<= 1 {
		if OAPImpact(m, 0) == "" {
			t.Errorf("metric %#x has no impact text", m)
		}
	}
}
