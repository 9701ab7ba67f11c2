#!/usr/bin/env bash
# Runs the `zenml-pipeline` example: the `rust_demo` ZenML pipeline
# (examples/zenml/pipeline.py), whose second step runs a Rust program logging
# with zenml-otel, twice: on a stack with an `otel` log store (both languages
# export to a local OTLP receiver the example starts), then on ZenML's default
# stack (the Rust records relayed into the step's logs, printed as ZenML
# returns them).
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
