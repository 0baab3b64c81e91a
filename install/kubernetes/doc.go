// Package kubernetes holds Weir's plain Kubernetes manifest (weir.yaml), the
// Helm chart install/helm/weir rendered by `make generate` (below) so that
// the two cannot drift. It has no code: its tests keep the manifest valid
// and consistent. Every document is
// decoded strictly with the Kubernetes API types (an unknown or misspelt
// field fails, as with `kubectl apply --validate=strict`), the objects are
// checked to reference each other (namespace, service account, RBAC binding,
// ConfigMap volume, every mount's volume), the daemon gets exactly the
// capabilities and host paths its components use, and the daemon's
// ConfigMap and flags are fed to the daemon's own config loader.
// weir-install's arguments are checked by weir-install's own tests.
package kubernetes

// The manifest keeps the behaviour it had before the chart: no SkyWalking
// export unless configured, and the Namespace object kubectl needs.
//go:generate go run ../helm/cmd/weir-manifest -chart ../helm/weir -name weir -namespace weir-system -set createNamespace=true -set oap.address= -o weir.yaml
