#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages Weir's build, tests and demo use, when
# any is missing (root; a no-op when all are present). Used by .ci/run and
# by `make deps`, which `make demo` runs first. android-libboringssl(-dev):
# BoringSSL as a shared libssl, for bpf's TestBoringSSLPlaintext (its peer is
# built by the test with the system C compiler).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

pkgs=(clang clang-format llvm libbpf-dev bpftool protobuf-compiler iproute2 iptables nftables ethtool
      nginx-light nghttp2-client wrk curl containerd runc qemu-system-x86 cpio chromium
      android-libboringssl android-libboringssl-dev)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
