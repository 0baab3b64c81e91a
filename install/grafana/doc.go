// Package grafana holds Weir's Grafana dashboard (weir.json): the cluster
// view over the Prometheus metrics every node's weir-daemon exports. It has
// no code: its tests keep the dashboard importable and every query valid
// against the metrics the daemon actually exports, taken from the
// collectors' descriptors.
package grafana
