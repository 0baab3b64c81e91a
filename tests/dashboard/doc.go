// Package dashboard checks Weir's Grafana dashboard (install/grafana) against
// real data: a capturing weir-daemon watches HTTP traffic between two pods
// on the real CNI chain, its /metrics is scraped before and after the
// traffic into a Prometheus TSDB with the target labels the chart's
// ServiceMonitor adds (node, instance, job), and every query of the
// dashboard is evaluated by Prometheus' own PromQL engine. A query that
// parses but selects nothing (a wrong label value, a status class that does
// not exist, a metric only described but never served) fails, unless it is
// listed as one this traffic cannot fill, with the reason. The same scrape
// must pass promlint, Prometheus' metric lint.
//
// Run it through `make test-e2e` (root), or directly:
//
//	go test -count=1 -v ./tests/dashboard
package dashboard
