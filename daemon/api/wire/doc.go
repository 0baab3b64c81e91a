// Package wire is the HTTP API's contract: the JSON documents weir-daemon
// serves under /api/v1 — pods, connections, requests, features, and the
// aggregation API's services, topology, endpoints and series — its error
// document, the one writer of those responses (WriteJSON, WriteError), and
// the Client that reads them.
//
// The server (package api and the components that register handlers on
// it: capture, monitor, metrics, identity) and its readers (weirctl, the
// end-to-end harness) both import this package, so a field is named in one
// place. It imports only the standard library: a client links none of the
// daemon's internals. The field names are read by the dashboard
// (daemon/dashboard) and pinned by this package's tests; renaming one is a
// breaking change of the API.
package wire
