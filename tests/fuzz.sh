#!/usr/bin/env bash
# Runs every Go fuzz target in the repository for DURATION each (default
# 10s) and fails if any of them fails. Go fuzzes one target per invocation,
# so targets are discovered per package with `go test -list '^Fuzz'`.
#
#   tests/fuzz.sh 10s
#
# A failing input is left in the package's testdata/fuzz/ directory by the
# go tool; commit it as a regression seed after fixing the bug.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-10s}
go=${GO:-go}

# Packages that contain a fuzz target (a func Fuzz... in a _test.go file).
mapfile -t pkgs < <(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . |
  grep -v '/testdata/' | xargs -r -n1 dirname | sort -u)
if [ ${#pkgs[@]} -eq 0 ]; then
  echo "fuzz.sh: no fuzz targets found" >&2
  exit 1
fi

failed=()
count=0
for dir in "${pkgs[@]}"; do
  mapfile -t targets < <($go test -list '^Fuzz' "$dir" | grep -E '^Fuzz' || true)
  for target in "${targets[@]}"; do
    count=$((count + 1))
    echo "=== fuzz $dir $target ($duration)"
    # -run '^$': only the fuzz target, not the unit tests again.
    if ! $go test -run '^$' -fuzz "^${target}\$" -fuzztime "$duration" "$dir"; then
      failed+=("$dir:$target")
    fi
  done
done

echo "fuzz.sh: ran $count targets"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
