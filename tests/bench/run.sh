#!/usr/bin/env bash
# make bench: Weir's performance report.
#
# Runs the protocol parser and daemon pipeline benchmarks, then TestBench (tests/bench), which
# measures two pods on the real CNI chain without and with weir-daemon and
# writes tests/bench/REPORT.md; finally prints the report.
#
# Needs root, wrk, h2load (nghttp2-client), nginx and curl. Reads
# WEIR_BIN_DIR, WEIR_CNI_BIN_DIR, WEIR_TOOL_BIN_DIR (the Makefile sets them)
# and, optionally:
#   WEIR_BENCH_ROUNDS       alternating baseline/Weir rounds (default 3), of the
#                           saturated loads and of each paced rate
#   WEIR_BENCH_DURATION     length of each load run (default 10s)
#   WEIR_BENCH_CONNS        idle connections for the RSS scenario (default 10000; 0 skips)
#   WEIR_BENCH_PACED        0 skips the paced 10k and 20k req/s runs
#   WEIR_BENCH_ONLY         comma-separated parts to run alone (default all): http1, h2c,
#                           https, unrelated, paced, conns, grpc, floor (the capture
#                           floor beside Weir: bpf/floor, see REPORT.md)
#   WEIR_BENCH_DAEMON_ARGS  extra weir-daemon flags for the "with Weir" side (e.g. --oap ...)
#   WEIR_BENCH_REPORT       where to write the report (default tests/bench/REPORT.md)
#   WEIR_BENCH_PROFILE_DIR  keep the daemon's CPU profiles of the cost runs there
#                           (weir-daemon-<scenario>.pprof, for go tool pprof)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GO=${GO:-go}
cd "$REPO"

[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces, bridges, eBPF)" >&2; exit 1; }
for tool in wrk h2load nginx curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found on PATH" >&2; exit 1; }
done

work=$(mktemp -d /tmp/weir-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "==> parser benchmarks (./daemon/protocol)"
"$GO" test -run '^$' -bench . -benchmem ./daemon/protocol/ | tee "$work/parser.txt"

echo "==> daemon pipeline benchmarks (./daemon/monitor)"
"$GO" test -run '^$' -bench 'Pipeline|DaemonHTTP' -benchmem -count 3 ./daemon/monitor/ | tee "$work/pipeline.txt"

echo "==> pod-to-pod benchmark (./tests/bench)"
# The whole run is bounded: about 3 rounds x 5 variants x 2-3 runs x 10 s
# (HTTPS only without Weir and with --bpf.tls), the paced rates in 3 rounds
# (10k: baseline, full daemon and 3 attribution legs; 20k: baseline and full
# daemon), one connection scenario; the timeout only catches a hang.
WEIR_BENCH=1 WEIR_BENCH_PARSER_OUT="$work/parser.txt" WEIR_BENCH_PIPELINE_OUT="$work/pipeline.txt" \
  "$GO" test -count=1 -timeout 20m -run '^TestBench$' -v ./tests/bench/

report=${WEIR_BENCH_REPORT:-$REPO/tests/bench/REPORT.md}
echo
cat "$report"
