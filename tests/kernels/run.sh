#!/usr/bin/env bash
# Runs Weir's eBPF tests on other kernels, one after the other: by default
# Debian's 6.1 cloud kernel and its 6.12 cloud kernel, each booted under
# QEMU's software emulation (TCG) with an initramfs whose /init is a static Go
# program (tests/kernels/guestinit). The development and CI hosts run a kernel
# without kprobes and with fentry locked down; both guests have them. 6.1 is
# the oldest kernel Weir's CO-RE objects must load on; it has no
# sock:sock_send_length/sock_recv_length tracepoints (6.3+), so it runs the
# syscall capture tier (bpf.TestCaptureTierFollowsTheKernel pins that) and the
# socket-tier tests say so and do not apply there. 6.12 has the socket
# tracepoints and fentry, so there the richer fentry/kprobe tier runs with the
# socket capture tier (bpf.TestRicherTierFillsFineFields); it has no
# tcp:tcp_sendmsg_locked (6.13+), so the base socket tier has no send windows.
#
# Steps: fetch the kernel package (cached), build the guest init and the test
# binaries (CGO_ENABLED=0: the guest has no libc), then tests/kernels/vmrun
# packs the initramfs, boots it, streams the serial console and prints the
# summary. Exit status is non-zero on any failure, a timeout or a missing
# result. TLS: bpf's Go crypto/tls tests run in both guests (their peer,
# bpf/testdata/tlsgo, is built here and shipped as /tools/tlsgo), under the
# syscall tier on 6.1 and under both tiers on 6.12; the OpenSSL and BoringSSL
# tests need nginx, curl, a C compiler and libc, and skip in the guests. Needs root (apt-get download), qemu-system-x86 and timeout(1).
#
# Environment (all optional):
#   WEIR_KERNEL_PACKAGES      kernels to run, in order, space-separated: package
#                             names, or "meta" for what $WEIR_KERNEL_META
#                             depends on (default "meta $default_612", below);
#                             each is a full run of this script, and the
#                             status is non-zero when any failed
#   WEIR_KERNEL_PACKAGE       one kernel package to boot (instead of the list;
#                             empty: what $WEIR_KERNEL_META depends on,
#                             "-unsigned")
#   WEIR_KERNEL_META          metapackage tracking the current 6.1 cloud
#                             kernel (default linux-image-cloud-amd64)
#   WEIR_KERNEL_CACHE         where extracted kernels are kept
#                             (default /var/cache/weir/kernels)
#   WEIR_KERNEL_TESTS         Go packages whose tests run in the guest, in
#                             order (default "./tests/kernels/selftest ./bpf");
#                             a package without *_test.go files is reported
#                             and left out, one that does not compile fails
#   WEIR_KERNEL_TEST_ARGS     extra test binary flags, e.g. "-test.short" or
#                             "-test.run=TestX" (default none)
#   WEIR_KERNEL_MODULES       modules to load in the guest, dependencies added
#                             (default "veth sch_ingress cls_bpf sch_netem nf_tables";
#                             nf_tables lets the tests install netfilter chains)
#   WEIR_KERNEL_TEST_TIMEOUT  per test binary (default 400s)
#   WEIR_KERNEL_TIMEOUT       whole VM run (default 540s; the bpf tests load a collector per test, ~5 s each under TCG,
#                             and bpf took 209 s on 6.1 and 233 s on 6.12 before its Go crypto/tls tests ran there)
#   WEIR_KERNEL_SMP, WEIR_KERNEL_MEMORY   guest CPUs (2) and memory (1G)
#   WEIR_KERNEL_LOG_DIR       where the serial log is kept (default bin/kernels)
#   WEIR_KERNEL_CMDLINE       extra kernel command-line options, appended to
#                             the harness's own (see kernelCmdline in
#                             tests/kernels/vmrun/boot.go), e.g. "ignore_loglevel"
#   WEIR_KERNEL_ENV           extra KEY=VALUE pairs, space-separated, for the
#                             test binaries' environment in the guest
#   WEIR_KERNEL_ACCEL         QEMU -accel value (default tcg,thread=single:
#                             multi-threaded TCG in QEMU 7.2 livelocks the
#                             guest on stale patched kernel text, issue #4;
#                             see defaultAccel in tests/kernels/vmrun/boot.go)
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
export GOFLAGS=${GOFLAGS:--buildvcs=false}

meta=${WEIR_KERNEL_META:-linux-image-cloud-amd64}
cache=${WEIR_KERNEL_CACHE:-/var/cache/weir/kernels}
tests=${WEIR_KERNEL_TESTS:-./tests/kernels/selftest ./bpf}
modules=${WEIR_KERNEL_MODULES:-veth sch_ingress cls_bpf sch_netem nf_tables}
log_dir=${WEIR_KERNEL_LOG_DIR:-bin/kernels}

say() { echo "kernels: $*"; }
die() { echo "kernels: FAIL: $*" >&2; exit 1; }
start=$(date +%s)

# Debian 12's 6.12 cloud kernel (bookworm-backports): socket tracepoints and
# fentry in one kernel.
default_612=linux-image-6.12.107+deb12-cloud-amd64-unsigned

# --- 0. The list of kernels ---------------------------------------------------
# Without WEIR_KERNEL_PACKAGE (unset, not empty) this runs itself once per
# kernel of the list, with WEIR_KERNEL_PACKAGE set.
if [ -z "${WEIR_KERNEL_PACKAGE+set}" ]; then
  failed=()
  for k in ${WEIR_KERNEL_PACKAGES:-meta $default_612}; do
    [ "$k" = meta ] && k=
    say "=== kernel ${k:-from $meta}"
    WEIR_KERNEL_PACKAGE=$k "$self" || failed+=("${k:-$meta}")
  done
  say "all kernels: wall time $(($(date +%s) - start)) s"
  [ ${#failed[@]} -eq 0 ] || die "failed on: ${failed[*]}"
  exit 0
fi

# --- 1. The kernel -----------------------------------------------------------

# candidate PKG: the version apt would fetch, empty when apt does not know PKG.
candidate() {
  apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2; exit}'
}

# resolve_package prints the kernel package to boot. The metapackage depends
# on the signed image of the current ABI; its -unsigned twin is the same
# kernel without the secure-boot signature, which QEMU does not need.
resolve_package() {
  if [ -n "${WEIR_KERNEL_PACKAGE:-}" ]; then echo "$WEIR_KERNEL_PACKAGE"; return; fi
  local dep
  dep=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  [ -n "$dep" ] && echo "${dep%-unsigned}-unsigned"
}

pkg=$(resolve_package || true)
version=
[ -n "$pkg" ] && version=$(candidate "$pkg")
if [ -z "$version" ]; then
  say "apt does not know the kernel package yet: apt-get update"
  apt-get update -qq || say "apt-get update failed; trying the cache"
  pkg=$(resolve_package || true)
  [ -n "$pkg" ] && version=$(candidate "$pkg")
fi

if [ -n "$version" ]; then
  kdir="$cache/${pkg}_${version}"
elif [ -z "${WEIR_KERNEL_PACKAGE:-}" ] && ls "$cache"/*/release >/dev/null 2>&1; then
  # Offline with an empty apt index: the newest cached kernel still tests.
  kdir=$(dirname "$(ls -t "$cache"/*/release | head -n1)")
  say "apt cannot resolve a kernel package; using cached $(basename "$kdir")"
else
  die "cannot resolve kernel package ${pkg:-from $meta} with apt-cache, and nothing is cached in $cache"
fi

# decompress_modules DIR: Debian's 6.1 kernels ship *.ko; from 6.12 on they
# ship *.ko.xz, which the guest could load only through the kernel's own
# decompression (finit_module's MODULE_INIT_COMPRESSED_FILE, a config
# option). The harness indexes and packs plain *.ko, so they are
# decompressed on the host, once, in the cache entry.
decompress_modules() {
  find "$1" -name '*.ko.xz' -print0 | xargs -0 -r xz -d -f || return 1
  find "$1" -name '*.ko.zst' -print0 | xargs -0 -r zstd -q -d -f --rm || return 1
}

if [ -f "$kdir/vmlinuz" ] && [ -f "$kdir/config" ] && [ -f "$kdir/release" ]; then
  if [ -n "$(find "$kdir/modules" \( -name '*.ko.xz' -o -name '*.ko.zst' \) -print -quit)" ]; then
    say "decompressing the modules of cached $(basename "$kdir")"
    decompress_modules "$kdir/modules" || die "cannot decompress the modules in $kdir"
  fi
  say "kernel $(basename "$kdir") from cache $kdir"
else
  say "downloading $pkg $version"
  mkdir -p "$cache"
  dl=$(mktemp -d "$cache/.download.XXXXXX")
  trap 'rm -rf "$dl"' EXIT
  # -o APT::Sandbox::User=root: the download directory is not _apt's.
  (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$version") \
    || die "apt-get download $pkg=$version failed"
  dpkg-deb -x "$dl"/*.deb "$dl/x" || die "dpkg-deb -x of $pkg failed"
  mkdir -p "$dl/k/modules"
  vmlinuz=$(ls "$dl"/x/boot/vmlinuz-*) || die "$pkg has no boot/vmlinuz-*"
  basename "$vmlinuz" | sed 's/^vmlinuz-//' >"$dl/k/release"
  mv "$vmlinuz" "$dl/k/vmlinuz"
  mv "$dl"/x/boot/config-* "$dl/k/config"
  mv "$dl"/x/lib/modules/* "$dl/k/modules/"
  decompress_modules "$dl/k/modules" || die "cannot decompress the modules of $pkg"
  echo "$pkg $version" >"$dl/k/package"
  # Publish atomically: a cache entry is complete or absent. A concurrent
  # run may have published the same kernel meanwhile; that copy is as good.
  rm -rf "$kdir"
  mv -T "$dl/k" "$kdir" 2>/dev/null || [ -f "$kdir/release" ] || die "cannot move the kernel into $kdir"
  rm -rf "$dl"
  trap - EXIT
fi

# The harness relies on these being built in; a future kernel that makes one
# a module would otherwise fail as a mysterious boot hang.
for opt in CONFIG_SERIAL_8250_CONSOLE CONFIG_BLK_DEV_INITRD CONFIG_RD_GZIP CONFIG_DEVTMPFS CONFIG_BPF_SYSCALL; do
  grep -q "^$opt=y" "$kdir/config" || die "$opt is not built into $(basename "$kdir"): the guest cannot boot or run eBPF"
done

# --- 2. Binaries ---------------------------------------------------------------
work=$(mktemp -d /tmp/weir-kernels.XXXXXX)
trap 'rm -rf "$work"' EXIT

say "building guest init and test binaries"
CGO_ENABLED=0 go build -o "$work/init" ./tests/kernels/guestinit || die "building the guest init"
go build -o "$work/vmrun" ./tests/kernels/vmrun || die "building vmrun"

test_flags=()
declare -A seen=()
for p in $tests; do
  dir=${p#./}
  name=$(basename "$dir")
  [ -n "${seen[$name]:-}" ] && die "two test packages named $name in WEIR_KERNEL_TESTS"
  seen[$name]=1
  [ -d "$dir" ] || die "test package $p in WEIR_KERNEL_TESTS does not exist"
  if ! compgen -G "$dir/*_test.go" >/dev/null; then
    say "$p has no tests yet: not run"
    continue
  fi
  CGO_ENABLED=0 go test -c -o "$work/$name.test" "./$dir" || die "go test -c ./$dir failed"
  test_flags+=(-test "$name=$work/$name.test:$dir")
done
[ ${#test_flags[@]} -gt 0 ] || die "no test package with tests in WEIR_KERNEL_TESTS ($tests)"

# Peers the guest tests run as processes of their own: static Go binaries
# (the guest has no libc and no Go toolchain), packed as /tools/NAME and
# named to the tests by an environment variable. bpf's Go crypto/tls tests
# use testdata/tlsgo; OpenSSL's peers (nginx, curl) need libc and stay on
# the host.
tool_flags=()
if [ -n "${seen[bpf]:-}" ]; then
  CGO_ENABLED=0 go build -o "$work/tlsgo" ./bpf/testdata/tlsgo || die "building bpf/testdata/tlsgo"
  tool_flags+=(-tool "tlsgo=$work/tlsgo" -env WEIR_TEST_TLSGO=/tools/tlsgo)
fi

# --- 3. Boot -------------------------------------------------------------------
mkdir -p "$log_dir"
release=$(cat "$kdir/release")
log="$log_dir/serial-$release.log"

env_flags=()
for kv in ${WEIR_KERNEL_ENV:-}; do env_flags+=(-env "$kv"); done

status=0
"$work/vmrun" \
  -kernel "$kdir/vmlinuz" -kernel-config "$kdir/config" \
  -modules-dir "$kdir/modules/$release" -modules "$modules" \
  -init "$work/init" "${test_flags[@]}" ${tool_flags[@]+"${tool_flags[@]}"} \
  -test-args "${WEIR_KERNEL_TEST_ARGS:-}" -append "${WEIR_KERNEL_CMDLINE:-}" ${env_flags[@]+"${env_flags[@]}"} \
  -test-timeout "${WEIR_KERNEL_TEST_TIMEOUT:-400s}" -timeout "${WEIR_KERNEL_TIMEOUT:-540s}" \
  ${WEIR_KERNEL_ACCEL:+-accel "$WEIR_KERNEL_ACCEL"} -smp "${WEIR_KERNEL_SMP:-2}" -memory "${WEIR_KERNEL_MEMORY:-1G}" \
  -work-dir "$work/vm" -log "$log" || status=$?

say "serial log: $log; wall time $(($(date +%s) - start)) s"
exit "$status"
