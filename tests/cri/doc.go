// Package cri is the end-to-end suite that runs the weir plugin under a real
// container runtime: a private containerd 1.6 whose CRI plugin calls the
// bridge + host-local + weir chain, driven with crictl the way a kubelet
// drives it. It proves the plugin gets what a runtime really sends (the
// K8S_POD_* CNI_ARGS, the runtime's netns paths, DEL on StopPodSandbox).
// The tests need root; run them with `make test-e2e`.
package cri
