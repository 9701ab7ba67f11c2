#!/usr/bin/env bash
# Makes (once) a venv with ZenML and pytest, and prints its python.
#
#   bash scripts/zenml-venv.sh            # ZenML 0.98.0 (zenml[local,server]: the server for
#                                         # the dashboard tests), what the example and tests
#                                         # run in: ${ZENML_OTEL_VENV:-<repo>/target/zenml-venv}
#   bash scripts/zenml-venv.sh 0.93.3     # another release (zenml[local]), for the matrix of
#                                         # scripts/zenml-matrix.sh: cached outside the clone,
#                                         # in ${ZENML_OTEL_CACHE:-~/.cache/zenml-otel}/zenml-0.93.3
#
# Created with `python3` (or $PYTHON).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
default_version="0.98.0"
zenml_version="${1:-$default_version}"
if [[ "$zenml_version" == "$default_version" ]]; then
    venv="${ZENML_OTEL_VENV:-$repo/target/zenml-venv}"
    extras="local,server"
    check="import sys, zenml, pytest, fastapi"
else
    venv="${ZENML_OTEL_CACHE:-$HOME/.cache/zenml-otel}/zenml-$zenml_version"
    extras="local"
    check="import sys, zenml, pytest"
fi

has_zenml() {
    [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c \
        "$check; sys.exit(zenml.__version__ != '$zenml_version')" >/dev/null 2>&1
}

if ! has_zenml; then
    mkdir -p "$(dirname "$venv")"
    [[ -x "$venv/bin/python" ]] || "${PYTHON:-python3}" -m venv "$venv"
    echo "zenml-venv.sh: installing zenml[$extras]==$zenml_version and pytest into $venv" \
        "(a minute or two, once)" >&2
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "zenml[$extras]==$zenml_version" pytest >&2; then
        echo "zenml-venv.sh: could not install zenml: is PyPI (or your pip index) reachable?" >&2
        exit 1
    fi
fi
echo "$venv/bin/python"
