#!/usr/bin/env bash
# The ZenML matrix: the pipeline tests (both paths, the console, the plain output, the receipt,
# spool delivery) on the newest patch of every ZenML minor with log stores before 0.98 — whose
# full suite scripts/test.sh runs. Each release in a venv of its own, cached outside the clone
# (scripts/zenml-venv.sh VERSION: ${ZENML_OTEL_CACHE:-~/.cache/zenml-otel}), so a second run on
# the same machine reuses them. Tests marked `latest_zenml` (written against 0.98's log-store
# API) are deselected on the older releases, and pytest says how many.
#
#   bash scripts/zenml-matrix.sh [VERSION...]
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
releases=("$@")
[[ ${#releases[@]} -gt 0 ]] || releases=(0.93.3 0.94.6 0.95.1 0.96.4 0.97.0)
tests=(python/tests/test_step_parity.py python/tests/test_pipelines.py
       python/tests/test_handover_promise.py)
# The Rust program the pipelines run, with the features `cargo test` uses.
cargo build --quiet --all-features --example zenml-step
for release in "${releases[@]}"; do
    python="$(bash scripts/zenml-venv.sh "$release")"
    echo "zenml-matrix.sh: ZenML $release: ${tests[*]}" >&2
    PYTHONPATH="$repo/python/src${PYTHONPATH:+:$PYTHONPATH}" \
        "$python" -m pytest -q -m "not latest_zenml" "${tests[@]}"
done
