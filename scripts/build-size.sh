#!/usr/bin/env bash
# The minimal program (registry + layer, one record over OTLP/HTTP) built cold in release, ours
# on the lean build next to the official pipeline: distinct crates, build time, binary size.
# Each side gets an empty target dir (the registry's downloaded sources are shared); one build
# at a time. Usage: scripts/build-size.sh [rounds]   (default 1; BENCHMARKS.md "Build")
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-1}"
out="$repo/target/build-size"
mkdir -p "$out"
for round in $(seq "$rounds"); do
    for side in official ours; do
        dir="$repo/bench/build/$side"
        target="$out/$side-target"
        rm -rf "$target"
        (cd "$dir" && cargo fetch --quiet)
        crates=$(cd "$dir" && cargo tree -e normal --prefix none 2>/dev/null \
            | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u | wc -l)
        start=$(date +%s.%N)
        (cd "$dir" && CARGO_TARGET_DIR="$target" cargo build --release --quiet)
        seconds=$(echo "$(date +%s.%N) - $start" | bc)
        bin="$target/release/minimal-$side"
        bytes=$(stat -c %s "$bin")
        printf 'round %s  %-8s  crates %4d  cold build %6.1f s  binary %9d B (%.1f MB)\n' \
            "$round" "$side" "$crates" "$seconds" "$bytes" "$(echo "$bytes / 1000000" | bc -l)"
    done
done
