// Package kubernetes holds Weir's Kubernetes manifests (weir.yaml). It has no
// code: its tests keep the manifests valid and consistent. Every document is
// decoded strictly with the Kubernetes API types (an unknown or misspelt
// field fails, as with `kubectl apply --validate=strict`), the objects are
// checked to reference each other (namespace, service account, RBAC binding,
// ConfigMap volume, every mount's volume), the daemon gets exactly the
// capabilities and host paths its components use, and the daemon's
// ConfigMap and flags are fed to the daemon's own config loader.
// weir-install's arguments are checked by weir-install's own tests.
package kubernetes
