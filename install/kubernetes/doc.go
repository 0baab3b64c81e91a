// Package kubernetes holds Weir's Kubernetes manifests (weir.yaml). It has no
// code: its tests keep the manifests consistent with the binaries they run,
// by feeding the daemon's ConfigMap and flags to the daemon's own config
// loader and checking the DaemonSet's structure. weir-install's arguments are
// checked by weir-install's own tests.
package kubernetes
