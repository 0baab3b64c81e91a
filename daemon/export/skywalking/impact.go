package skywalking

import (
	"strings"

	"github.com/weirnet/weir/bpf/event"
)

// layer is one metrics message of the access-log protocol and the kernel
// metrics that fill its fields.
type layer struct {
	name    string
	metrics event.Metric
}

// layers are the kernel-log metric messages, as appendWriteMetrics and
// appendReadMetrics fill them.
var layers = []layer{
	{"write L4", writeL4Bits},
	{"write L3", writeL3Bits},
	{"write L2", writeL2Bits},
	{"read L2", readL2Bits},
	{"read L3", readL3Bits},
	{"read L4", readL4Bits},
}

// metricFields are the access-log fields each kernel metric fills (what the
// OAP's TCP metrics of services, instances and relations average or sum).
var metricFields = map[event.Metric]string{
	event.MetricL4Duration:  "write L4 total duration, read L4 total duration",
	event.MetricPackets:     "write L4 packet count and size, read L2 packet count and size",
	event.MetricRetransmits: "write L4 retransmit packets",
	event.MetricDrops:       "write L4 loss packages",
	event.MetricL3Duration:  "write and read L3 total duration",
	event.MetricL3Split:     "write L3 local/output duration, read L3 receive/local duration",
	event.MetricNetfilter:   "write and read L3 netfilter count and duration",
	event.MetricResolveMAC:  "write L3 resolve-MAC count and duration",
	event.MetricL2Duration:  "write L2 total duration",
	event.MetricL2Queue:     "write L2 enter-queue count, ready-send and device-send duration",
	event.MetricRecvQueue:   "read L2 to-queue and from-queue duration",
}

// OAPImpact says, for kernel metric m, which access-log fields it fills and
// what the OAP gets when this node does not measure it, given which metrics
// it does measure. Proto3 scalars have no presence, so an unmeasured field
// of a metrics message that is sent (because another field of it is
// measured) arrives as 0 and is averaged as 0; a message none of whose
// fields is measured is left out.
func OAPImpact(m event.Metric, measured event.Metric) string {
	fields, ok := metricFields[m]
	if !ok {
		return "no access-log field (not exported)"
	}
	if measured&m != 0 {
		return fields
	}
	var zero, absent []string
	for _, l := range layers {
		if l.metrics&m == 0 {
			continue
		}
		if measured&l.metrics != 0 {
			zero = append(zero, l.name)
		} else {
			absent = append(absent, l.name)
		}
	}
	var b strings.Builder
	b.WriteString(fields)
	if len(zero) > 0 {
		b.WriteString(": sent as 0 in " + strings.Join(zero, ", ") + " (pulls the OAP's averages of these down)")
	}
	if len(absent) > 0 {
		if len(zero) > 0 {
			b.WriteString("; ")
		} else {
			b.WriteString(": ")
		}
		b.WriteString(strings.Join(absent, ", ") + " left out")
	}
	return b.String()
}
