#!/usr/bin/env bash
# Runs the `zenml-pipeline` example: the `rust_demo` ZenML pipeline
# (examples/zenml/pipeline.py) whose second step runs a Rust program logging
# with zenml-otel, both exporting to a local OTLP receiver the example starts.
#
# Needs ZenML 0.98.0 in a venv: scripts/zenml-venv.sh makes it on first use.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ZENML_OTEL_PYTHON="$(bash "$repo/scripts/zenml-venv.sh")"
export ZENML_OTEL_PYTHON
cd "$repo"
# The pipeline's Rust step runs the `zenml-step` example's binary: build it first.
cargo build --quiet --example zenml-step
exec cargo run --quiet --example zenml-pipeline -- "$@"
