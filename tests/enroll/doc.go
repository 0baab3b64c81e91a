// Package enroll is the end-to-end suite for pod enrollment (issue #2): the
// weir CNI plugin chained after the reference bridge, host-local and portmap
// plugins, driven through libcni against network namespaces, with a real
// weir-daemon. It checks what the daemon records against what the kernel
// reports (netlink, stat), and the plugin's failure behaviour when the
// daemon is down. The tests need root; run them with `make test-e2e`.
package enroll
