#!/usr/bin/env bash
# Reruns every performance measurement of zenml-otel, one at a time (the reference machine has 2
# cores: never run two benchmarks at once), and prints a summary. About 4 minutes on 2 cores.
#
#   scripts/bench.sh                 # everything
#   SKIP_CRITERION=1 scripts/bench.sh  # skip `cargo bench --bench layer` (about 2 minutes)
#
# Steps:
#   1. criterion: `cargo bench --bench layer` (cost of one event on the logging thread);
#   2. the harness, `cargo run -p zenml-otel-bench --release -- <scenario>` for throughput (P2),
#      burst (P3), memory and runs (P4), bytes (P5), encode — see bench/src/throughput.rs;
#   3. the Python reference, bench/python/reference.py (throughput and burst), in a venv with the
#      OpenTelemetry Python SDK (created at $BENCH_PY_VENV, default /tmp/zenml-otel-bench-venv);
#   4. bench/python/summary.py: ratios and goals;
#   5. `cargo run -p zenml-otel-bench --release --bin zenml-bytes`: bytes ZenML's record
#      attributes add (bench/src/zenml_bytes.rs).
#
# rotel: $ROTEL_AGENT, else the one .ci/run installs in .venv, else rotel-agent on PATH. Without
# it the rotel scenarios print "skipped" and the summary says so.
#
# Every output goes to $BENCH_OUT (default target/bench-results/<UTC timestamp>/), one file per
# step, plus machine.txt and summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${BENCH_OUT:-target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}"
PY_VENV="${BENCH_PY_VENV:-/tmp/zenml-otel-bench-venv}"
# The versions the committed figures were measured with; override to try others.
PY_PACKAGES="${BENCH_PY_PACKAGES:-opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-http==1.45.2}"
mkdir -p "$OUT"

step() { printf '\n==> %s\n' "$*" >&2; }

# The measurements must not pick up exporter settings from the environment.
for var in $(env | grep -oE '^(OTEL_|ZENML_LOGS_OTEL_)[A-Za-z0-9_]*' || true); do
    echo "note: unsetting $var for the measurements" >&2
    unset "$var"
done

step "rotel"
if [ -z "${ROTEL_AGENT:-}" ] && [ -x .venv/bin/python ] && .venv/bin/python -c 'import rotel' 2>/dev/null; then
    ROTEL_AGENT="$(.venv/bin/python -c 'import os, rotel; print(os.path.join(os.path.dirname(os.path.abspath(rotel.__file__)), "rotel-agent"))')"
fi
if [ -z "${ROTEL_AGENT:-}" ] && command -v rotel-agent >/dev/null; then
    ROTEL_AGENT="$(command -v rotel-agent)"
fi
if [ -n "${ROTEL_AGENT:-}" ] && [ -x "$ROTEL_AGENT" ]; then
    export ROTEL_AGENT
    echo "ROTEL_AGENT=$ROTEL_AGENT ($("$ROTEL_AGENT" --version))" >&2
else
    unset ROTEL_AGENT
    echo "rotel-agent not found (set ROTEL_AGENT, or run .ci/run once to install it in .venv):" \
         "the throughput and burst scenarios will be skipped" >&2
fi

step "Python venv with the OpenTelemetry SDK ($PY_VENV)"
if ! "$PY_VENV/bin/python" -c 'import opentelemetry.sdk._logs, opentelemetry.exporter.otlp.proto.http' 2>/dev/null; then
    python3 -m venv "$PY_VENV"
    # shellcheck disable=SC2086
    "$PY_VENV/bin/pip" install --quiet --disable-pip-version-check --no-input $PY_PACKAGES
fi

step "machine"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    lscpu | head -n 15
    echo "kernel: $(uname -srm)"
    echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MB"}')"
    echo "rustc: $(rustc --version)"
    echo "python: $("$PY_VENV/bin/python" --version 2>&1)"
    echo "opentelemetry-sdk: $("$PY_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("opentelemetry-sdk"))')"
    echo "rotel: $([ -n "${ROTEL_AGENT:-}" ] && "$ROTEL_AGENT" --version || echo none)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ modified)')"
} | tee "$OUT/machine.txt" >&2

CRITERION_DIR="$OUT/no-criterion"
if [ "${SKIP_CRITERION:-0}" != 1 ]; then
    CRITERION_DIR=target/criterion
    step "cargo bench --bench layer"
    cargo bench --bench layer 2>&1 | tee "$OUT/criterion.log" | grep -E '^[a-z_]+/|time:|events' >&2 || true
fi

step "cargo build --release -p zenml-otel-bench (the harnesses, bench/)"
cargo build --release -p zenml-otel-bench

for scenario in throughput burst memory runs bytes encode; do
    step "cargo run -p zenml-otel-bench --release -- $scenario"
    cargo run --release --quiet -p zenml-otel-bench -- "$scenario" 2>"$OUT/$scenario.stderr" | tee "$OUT/$scenario.txt"
done

step "cargo run -p zenml-otel-bench --release --bin zenml-bytes (what ZenML's record attributes add)"
cargo run --release --quiet -p zenml-otel-bench --bin zenml-bytes 2>"$OUT/zenml-bytes.stderr" | tee "$OUT/zenml-bytes.txt"

step "bench/python/reference.py all"
"$PY_VENV/bin/python" bench/python/reference.py all 2>"$OUT/python.stderr" | tee "$OUT/python.txt"

step "summary ($OUT/summary.txt)"
python3 bench/python/summary.py "$OUT" --criterion "$CRITERION_DIR" --json | tee "$OUT/summary.txt"
