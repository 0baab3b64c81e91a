// Package export is the end-to-end suite of Weir's exporters (issue #6)
// with real captured traffic: pods on the real CNI chain, a capturing
// weir-daemon exporting to an in-process SkyWalking receiver that
// implements the official EBPFAccessLogService, and scrapes of the
// daemon's /metrics. The test knows the traffic it made — every request
// with its path and status, every connection with its byte counts, from
// the Go peers' own reports — and asserts what reached the receiver and
// the scrape against it: node info on every stream, connection messages
// before the logs they describe, Kubernetes and IP address forms, roles,
// kernel operations, exactly one HTTP protocol log per request per side,
// delivery across a receiver outage without duplicates, and Prometheus
// values and lint.
//
// Run it through `make test-e2e` (root), or directly:
//
//	go test -count=1 -v ./tests/export
package export
