// Package api is weir-daemon's HTTP server: health and readiness for the
// kubelet, and the JSON views weirctl and the dashboard read.
//
// The server is a Go 1.22+ http.ServeMux with method patterns. This package
// serves what the enrollment side knows (pods); the daemon's other
// components (connections, requests, features, identity, /metrics) add
// their handlers with Handle and their readiness conditions with
// AddReadyCheck, so the API grows without this package knowing about them.
//
// The documents, the response writers (every error is {"error": "..."})
// and the client are in package wire, which readers import without
// linking the server or the daemon.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/weirnet/weir/daemon/api/wire"
	"github.com/weirnet/weir/daemon/registry"
)

// Bounds of the HTTP server. The API answers small GETs from local tools.
const (
	ReadHeaderTimeout = 5 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 64 << 10
	ShutdownTimeout   = 5 * time.Second
)

// podView converts a registry pod to its API view.
func podView(p *registry.Pod) wire.Pod {
	ips := make([]string, 0, len(p.IPs))
	for _, ip := range p.IPs {
		ips = append(ips, ip.Address)
	}
	return wire.Pod{
		ID: p.ID, Network: p.Network, Namespace: p.Namespace, Name: p.Name, UID: p.UID,
		SandboxID: p.ContainerID, InfraContainerID: p.InfraContainerID,
		Netns: p.Netns, NetnsInode: p.NetnsInode, Ifname: p.Ifname, IfIndex: p.IfIndex,
		HostVeth: p.HostVeth, HostVethIndex: p.HostVethIndex, IPs: ips, CNIVersion: p.CNIVersion,
		EnrolledAt: p.EnrolledAt,
	}
}

// PodLister is where the pods come from: the registry.
type PodLister interface {
	List() []*registry.Pod
}

// Server is the HTTP API. Create it with New, add handlers and readiness
// checks, then Serve.
type Server struct {
	mux  *http.ServeMux
	log  *slog.Logger
	pods PodLister

	mu       sync.Mutex
	checks   []readyCheck
	warnings []readyWarning
}

type readyCheck struct {
	name  string
	check func() error
}

// New returns a server with /healthz, /readyz and /api/v1/pods registered.
func New(pods PodLister, log *slog.Logger) *Server {
	s := &Server{mux: http.NewServeMux(), log: log, pods: pods}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /api/v1/pods", s.listPods)
	return s
}

// Handle registers h for pattern (http.ServeMux syntax, e.g.
// "GET /api/v1/connections"). It panics on a conflicting pattern, like
// http.ServeMux: that is a programming error.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// AddReadyCheck adds a condition /readyz requires. check returns nil when
// ready, or an error saying why not; name prefixes that reason.
func (s *Server) AddReadyCheck(name string, check func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, readyCheck{name, check})
}

// AddReadyWarning adds a condition /readyz reports without failing: when
// warn returns a non-empty message the 200 answer lists it under
// "warnings" (prefixed with name), for problems an operator must see that
// do not stop the daemon from serving.
func (s *Server) AddReadyWarning(name string, warn func() []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.warnings = append(s.warnings, readyWarning{name, warn})
}

type readyWarning struct {
	name string
	warn func() []string
}

// ServeHTTP makes the Server an http.Handler (used by tests and Serve).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Serve serves the API on ln until ctx ends, then shuts down gracefully
// (in-flight requests get ShutdownTimeout). It returns nil after a
// shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: ReadHeaderTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http api: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close()
		<-errc
		return fmt.Errorf("http api: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http api: %w", err)
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	wire.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	checks := append([]readyCheck(nil), s.checks...)
	warnings := append([]readyWarning(nil), s.warnings...)
	s.mu.Unlock()
	var reasons []string
	for _, c := range checks {
		if err := c.check(); err != nil {
			reasons = append(reasons, c.name+": "+err.Error())
		}
	}
	if len(reasons) > 0 {
		wire.WriteError(w, http.StatusServiceUnavailable, "not ready: "+strings.Join(reasons, "; "))
		return
	}
	var warns []string
	for _, wr := range warnings {
		for _, m := range wr.warn() {
			warns = append(warns, wr.name+": "+m)
		}
	}
	if len(warns) > 0 {
		wire.WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "warnings": warns})
		return
	}
	wire.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) listPods(w http.ResponseWriter, _ *http.Request) {
	pods := s.pods.List()
	out := make([]wire.Pod, 0, len(pods))
	for _, p := range pods {
		out = append(out, podView(p))
	}
	wire.WriteJSON(w, http.StatusOK, out)
}
