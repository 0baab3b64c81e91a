package features

import (
	"testing"

	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/export/skywalking"
)

func TestOffSaysWhyAndListsNothing(t *testing.T) {
	f := Off()
	if f.Capture || f.Reason == "" || f.Tiers == nil || f.Hooks == nil || f.Metrics == nil ||
		len(f.Tiers)+len(f.Hooks)+len(f.Metrics) != 0 {
		t.Fatalf("Off() = %+v: want no capture, a reason and empty (not null) lists", f)
	}
}

func TestViewMapsTiersHooksMetricsAndTheirSkyWalkingImpact(t *testing.T) {
	tls := &wire.TLSFeatures{}
	in := bpf.Features{
		Capture: bpf.CaptureSocket, CaptureReason: "sock tracepoints present", Tier: bpf.TierBase, TierError: "fentry: EPERM",
		Tiers: []bpf.TierStatus{{Tier: bpf.TierBase, Available: true}, {Tier: bpf.TierFentry, Reason: "EPERM"}},
		Hooks: []bpf.HookStatus{{Name: "sock_send_length", Tier: bpf.TierBase, Attached: true}},
		Metrics: []bpf.MetricStatus{
			{Metric: event.MetricRTT, Name: "rtt", Available: true},
			{Metric: event.MetricL4Duration, Name: "l4", Reason: "needs fentry"},
		},
	}
	out := View(in, true, tls)
	if !out.Capture || !out.Payload || out.TLS != tls || out.Tier != bpf.TierBase.String() || out.TierError != "fentry: EPERM" ||
		out.CaptureTier != bpf.CaptureSocket.String() || out.CaptureTierReason != "sock tracepoints present" {
		t.Fatalf("View() header = %+v", out)
	}
	if len(out.Tiers) != 2 || out.Tiers[1] != (wire.TierStatus{Tier: bpf.TierFentry.String(), Reason: "EPERM"}) {
		t.Fatalf("tiers %+v", out.Tiers)
	}
	if len(out.Hooks) != 1 || out.Hooks[0] != (wire.HookStatus{Name: "sock_send_length", Tier: bpf.TierBase.String(), Available: true}) {
		t.Fatalf("hooks %+v", out.Hooks)
	}
	measured := event.MetricRTT
	if len(out.Metrics) != 2 ||
		out.Metrics[0].SkyWalking != skywalking.OAPImpact(event.MetricRTT, measured) ||
		out.Metrics[1].SkyWalking != skywalking.OAPImpact(event.MetricL4Duration, measured) ||
		out.Metrics[1].Available || out.Metrics[1].Reason != "needs fentry" {
		t.Fatalf("metrics %+v", out.Metrics)
	}
}
