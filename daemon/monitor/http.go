package monitor

import (
	"fmt"
	"net/http"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/features"
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
		if n, err := m.enroller.Failing(); n > 0 {
			return fmt.Errorf("%d enrolled network namespaces could not be handed to the eBPF collector, e.g.: %w", n, err)
		}
		return nil
	})
}

// Features is the /api/v1/features view.
func (m *Monitor) Features() wire.Features {
	if m.coll == nil {
		return features.Off()
	}
	var tls *wire.TLSFeatures
	if m.tls != nil {
		tls = m.tls.status()
	}
	return features.View(m.coll.Features(), m.cfg.BPF.Payload, tls)
}
