package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/weirnet/weir/daemon/api"
	"github.com/weirnet/weir/daemon/api/wire"
)

// RegisterHTTP adds the aggregation API to the daemon's HTTP server:
//
//	GET /api/v1/services                      ?window=
//	GET /api/v1/topology                      ?window=
//	GET /api/v1/services/{name}/endpoints     ?window=
//	GET /api/v1/services/{name}/series        ?window=&step=
//
// window and step are Go durations; window defaults to
// Options.DefaultWindow and may not exceed Options.Retention.
func (a *Aggregator) RegisterHTTP(s *api.Server) {
	s.Handle("GET /api/v1/services", http.HandlerFunc(a.serveServices))
	s.Handle("GET /api/v1/topology", http.HandlerFunc(a.serveTopology))
	s.Handle("GET /api/v1/services/{name}/endpoints", http.HandlerFunc(a.serveEndpoints))
	s.Handle("GET /api/v1/services/{name}/series", http.HandlerFunc(a.serveSeries))
}

// durationParam parses an optional duration query parameter; absent is 0.
func durationParam(r *http.Request, name string) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not a duration such as 5m or 30s", name, v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s=%q must be positive", name, v)
	}
	return d, nil
}

func writeQueryError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrUnknownService) {
		wire.WriteError(w, http.StatusNotFound, err.Error())
		return
	}
	wire.WriteError(w, http.StatusBadRequest, err.Error())
}

func (a *Aggregator) serveServices(w http.ResponseWriter, r *http.Request) {
	win, err := durationParam(r, "window")
	if err != nil {
		writeQueryError(w, err)
		return
	}
	out, err := a.Services(win)
	if err != nil {
		writeQueryError(w, err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, out)
}

func (a *Aggregator) serveTopology(w http.ResponseWriter, r *http.Request) {
	win, err := durationParam(r, "window")
	if err != nil {
		writeQueryError(w, err)
		return
	}
	out, err := a.Topology(win)
	if err != nil {
		writeQueryError(w, err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, out)
}

func (a *Aggregator) serveEndpoints(w http.ResponseWriter, r *http.Request) {
	win, err := durationParam(r, "window")
	if err != nil {
		writeQueryError(w, err)
		return
	}
	out, err := a.Endpoints(r.PathValue("name"), win)
	if err != nil {
		writeQueryError(w, err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, out)
}

func (a *Aggregator) serveSeries(w http.ResponseWriter, r *http.Request) {
	win, err := durationParam(r, "window")
	if err != nil {
		writeQueryError(w, err)
		return
	}
	step, err := durationParam(r, "step")
	if err != nil {
		writeQueryError(w, err)
		return
	}
	out, err := a.Series(r.PathValue("name"), win, step)
	if err != nil {
		writeQueryError(w, err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, out)
}
