package monitor

import (
	"fmt"
	"net/http"

	"github.com/weirnet/weir/bpf/event"
	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/export/skywalking"
	"github.com/weirnet/weir/daemon/requests"
)

// RegisterHTTP implements daemon.HTTPRegistrar: /api/v1/connections,
// /api/v1/requests, /api/v1/features and the readiness of capture.
func (m *Monitor) RegisterHTTP(s *api.Server) {
	s.Handle("GET /api/v1/connections", api.ConnectionsHandler(m.table, m.log))
	s.Handle("GET /api/v1/requests", requests.Handler(m.requests, m.cfg.Requests.Keep))
	s.Handle("GET /api/v1/features", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		wire.WriteJSON(w, http.StatusOK, m.Features())
	}))
	s.AddReadyCheck("capture", func() error {
		// Capture switched off is a configured state, not unreadiness:
		// /api/v1/features reports it.
		if n, err := m.enroller.failing(); n > 0 {
			return fmt.Errorf("%d enrolled network namespaces could not be handed to the eBPF collector, e.g.: %w", n, err)
		}
		return nil
	})
}

// Features is the /api/v1/features view.
func (m *Monitor) Features() wire.Features {
	if m.coll == nil {
		return wire.Features{
			Reason: "capture.enabled is false: pods are enrolled but no traffic is captured",
			Tiers:  []wire.TierStatus{}, Hooks: []wire.HookStatus{}, Metrics: []wire.MetricStatus{},
		}
	}
	f := m.coll.Features()
	out := wire.Features{
		Capture: true, Payload: m.cfg.BPF.Payload, Tier: f.Tier.String(), TierError: f.TierError,
		CaptureTier: f.Capture.String(), CaptureTierReason: f.CaptureReason,
		Tiers: []wire.TierStatus{}, Hooks: []wire.HookStatus{}, Metrics: []wire.MetricStatus{},
	}
	if m.tls != nil {
		out.TLS = m.tls.status()
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
