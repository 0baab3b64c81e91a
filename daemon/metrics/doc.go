// Package metrics aggregates the pipeline's flows into per-pod, per-pod-pair,
// per-service and per-endpoint metrics, for Prometheus, the API and the
// dashboard.
//
// An Aggregator is a flow.Consumer. Each kernel operation and HTTP exchange
// updates two kinds of state under one mutex:
//
//   - lifetime totals per pod, per client→server edge and per endpoint,
//     which Collect exposes as Prometheus counters and histograms;
//   - rings of fixed time slots (Options.Step wide, Options.Retention long)
//     per service, per edge and per endpoint, which answer the window and
//     series queries of the HTTP API (/api/v1/services, topology,
//     endpoints, series).
//
// Why both: Prometheus wants monotonic totals and computes rates itself,
// while the API and dashboard must answer "the last 5 minutes" without a
// time-series database. Every map is bounded (Options.Max*); traffic past a
// bound is counted in weir_metrics_cardinality_overflow_total rather than
// growing the state, and series idle for a whole retention are evicted
// (weir_metrics_evictions_total).
//
// Attribution. A kernel operation belongs to the pod on the connection's
// local side. Edges go from client to server and are keyed by service
// ("<service>.<namespace>") or, for a peer that is not a pod on this node,
// by its IP address. When both ends are local pods the kernel reports the
// connection twice; the edge is fed from the client's side only (its
// latency includes the network), and from the server's side only when the
// client is not a local pod. Service HTTP metrics are the server's view,
// like SkyWalking's; endpoints ("METHOD:path") are server-side only.
// Connections whose role is unknown (first seen through data) count for
// their pod but not for an edge.
//
// The per-syscall path resolves a connection's pod, service and edge once
// and caches that by connection id (bounded; dropped at close, on eviction
// and when idle), so a kernel operation costs one integer map lookup and no
// allocation.
//
// Retransmits are taken from the per-syscall send metrics and from the
// retransmits the kernel makes outside syscalls (timer, loss probe, fast
// retransmit; flow.Retransmit), drops from the per-syscall send metrics; the
// socket's totals at close are not added again. RTT is the socket's
// smoothed RTT at close.
package metrics
