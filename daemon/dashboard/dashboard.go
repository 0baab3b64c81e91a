// Package dashboard serves Weir's web UI, embedded in the daemon binary.
//
// The UI is a handful of hand-written ES modules, SVG and CSS under ui/,
// compiled into the binary with embed.FS. There is no front-end build step
// and nothing is fetched from a CDN at run time, so a node without internet
// access serves the same dashboard as a laptop, and `go build` is the whole
// build. The UI reads only the daemon's own JSON API (/api/v1/...), from
// the same origin, so it needs no CORS and no configuration.
package dashboard

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/weirnet/weir/daemon/api"
)

//go:embed ui
var files embed.FS

// AssetPrefix is the URL path under which the UI's files are served; the
// page itself is served at "/".
const AssetPrefix = "/ui/"

// Dashboard is the daemon component that mounts the UI on the HTTP API
// server. It holds no state: the browser polls the API.
type Dashboard struct {
	handler http.Handler
}

// New returns the dashboard component.
func New() *Dashboard { return &Dashboard{handler: Handler()} }

// Name implements daemon.Component.
func (*Dashboard) Name() string { return "dashboard" }

// Run implements daemon.Component. The dashboard has no background work;
// Run only waits for shutdown so the component fits the daemon's group.
func (*Dashboard) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// RegisterHTTP mounts the UI on s: the page at "GET /{$}" (exactly "/") and
// its assets under AssetPrefix. It deliberately does not claim "GET /",
// which would turn every unknown API path into an HTML page instead of the
// API's JSON 404.
func (d *Dashboard) RegisterHTTP(s *api.Server) {
	s.Handle("GET /{$}", d.handler)
	s.Handle("GET "+AssetPrefix, d.handler)
}

// Handler serves the UI: "/" answers with index.html and AssetPrefix+name
// with the embedded file name. Anything else is a 404. Responses carry
// Cache-Control: no-cache because embedded files have no modification time,
// so a browser would otherwise keep a previous daemon version's scripts.
func Handler() http.Handler {
	sub, err := fs.Sub(files, "ui")
	if err != nil {
		// fs.Sub fails only on an invalid path literal: a programming error.
		panic(fmt.Sprintf("dashboard: embedded ui: %v", err))
	}
	assets := http.StripPrefix(AssetPrefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		switch {
		case r.URL.Path == "/":
			http.ServeFileFS(w, r, sub, "index.html")
		case len(r.URL.Path) > len(AssetPrefix) && r.URL.Path[:len(AssetPrefix)] == AssetPrefix:
			assets.ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}
