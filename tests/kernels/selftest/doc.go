// Package selftest holds the kernel test harness's own tests. They run inside
// the guest that tests/kernels/run.sh boots, before any of Weir's tests, and
// pin down what those tests rely on: the pseudo filesystems the guest init
// mounts, a working loopback interface, eBPF programs that load, attach and
// run, and — on kernels whose config promises them, told through
// WEIR_KERNEL_EXPECT — kernel BTF, kprobes and fentry, the hooks of Weir's
// upper tiers that the development hosts cannot attach.
//
// The programs are written with cilium/ebpf's asm package rather than C, so
// the harness's health does not depend on clang or on Weir's own eBPF code.
// The tests also run on the host (root), where they report the host kernel's
// missing tiers instead of failing on them.
package selftest
