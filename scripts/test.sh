#!/usr/bin/env bash
# The test suite, every test included: installs what the collector and ZenML tests need (rotel
# in .venv, ZenML and pytest in target/zenml-venv; once, from PyPI), runs the Python tests
# (python/tests) and then `cargo test --all-features -- --include-ignored`. Extra arguments go to the test binaries,
# e.g. `bash scripts/test.sh outage` runs the tests whose name contains "outage".
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
ROTEL_AGENT="${ROTEL_AGENT:-$(bash scripts/rotel.sh)}"
ZENML_OTEL_PYTHON="${ZENML_OTEL_PYTHON:-$(bash scripts/zenml-venv.sh)}"
export ROTEL_AGENT ZENML_OTEL_PYTHON
echo "test.sh: rotel $("$ROTEL_AGENT" --version), $("$ZENML_OTEL_PYTHON" -c 'import zenml; print("zenml", zenml.__version__)')" >&2
# The Python half (the package in python/src/zenml_otel): decoder, relay, and real ZenML
# pipelines; mypy and ruff check it in .ci/run. Its relay test runs target/debug/examples/zenml-step
# (built here with the features `cargo test` uses).
cargo build --quiet --all-features --example zenml-step --example sdk_step
PYTHONPATH="$repo/python/src${PYTHONPATH:+:$PYTHONPATH}" "$ZENML_OTEL_PYTHON" -m pytest python/tests -q
exec cargo test --all-features -- --include-ignored "$@"
