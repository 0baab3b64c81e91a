// Package features maps what the eBPF collector reports about itself
// (bpf.Features: the capture and per-function tiers, each hook, each kernel
// metric and why it is or is not available) to the /api/v1/features
// document, with what a missing metric costs the SkyWalking export.
package features

import (
	"github.com/weirnet/weir/bpf"
	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/export/skywalking"
)

// Off is the document of a daemon that runs no capture (capture.enabled
// false).
func Off() wire.Features {
	return wire.Features{
		Reason: "capture.enabled is false: pods are enrolled but no traffic is captured",
		Tiers:  []wire.TierStatus{}, Hooks: []wire.HookStatus{}, Metrics: []wire.MetricStatus{},
	}
}

// View is the document of a running collector that reports f; payload says
// whether payload capture is on (bpf.payload), tls is the TLS libraries'
// state (nil when the TLS set is off).
func View(f bpf.Features, payload bool, tls *wire.TLSFeatures) wire.Features {
	out := wire.Features{
		Capture: true, Payload: payload, Tier: f.Tier.String(), TierError: f.TierError,
		CaptureTier: f.Capture.String(), CaptureTierReason: f.CaptureReason,
		Tiers: []wire.TierStatus{}, Hooks: []wire.HookStatus{}, Metrics: []wire.MetricStatus{},
		TLS: tls,
	}
	for _, t := range f.Tiers {
		out.Tiers = append(out.Tiers, wire.TierStatus{Tier: t.Tier.String(), Available: t.Available, Reason: t.Reason})
	}
	for _, h := range f.Hooks {
		out.Hooks = append(out.Hooks, wire.HookStatus{Name: h.Name, Tier: h.Tier.String(), Available: h.Attached, Reason: h.Reason})
	}
	var measured event.Metric
	for _, ms := range f.Metrics {
		if ms.Available {
			measured |= ms.Metric
		}
	}
	for _, ms := range f.Metrics {
		out.Metrics = append(out.Metrics, wire.MetricStatus{Name: ms.Name, Available: ms.Available, Reason: ms.Reason,
			SkyWalking: skywalking.OAPImpact(ms.Metric, measured)})
	}
	return out
}
