// Package wire is the HTTP API's contract: the JSON documents weir-daemon
// serves under /api/v1 (pods, connections, requests, features) and its
// errors, the one writer of those responses (WriteJSON, WriteError), and
// the Client that reads them.
//
// The server (package api and the components that register handlers on
// it) and its readers (weirctl, the end-to-end harness) both import this
// package, so a field is named in one place. It imports only the standard
// library: a client links none of the daemon's internals. The field names
// are read by the dashboard (daemon/dashboard) and pinned by this
// package's tests; renaming one is a breaking change of the API.
//
// The aggregation API's documents (/api/v1/services, /topology,
// /endpoints, /series) live in package metrics/view, next to the
// aggregator that computes them.
package wire
