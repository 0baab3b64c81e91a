// Package harness starts and cleans up the real pieces Weir's end-to-end
// tests run against: network namespaces, a CNI network driven through libcni
// (the same library container runtimes use), the weir-daemon process, and a
// private containerd reached with crictl.
//
// Nothing here is faked. The suites exist to prove that the weir plugin and
// daemon work with the kernel and the runtimes they will meet in production,
// so the harness only arranges real objects and guarantees they go away:
// every netns, link, bridge, iptables chain, sysctl and process a test
// creates is registered with t.Cleanup at the moment it is created, so a
// failing or panicking test leaves the machine as it found it.
//
// Names carry a short random suffix (interface names stay within the
// kernel's 15-byte limit) so suites run by different engineers or CI jobs on
// one machine cannot collide.
package harness
