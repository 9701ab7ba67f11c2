#!/usr/bin/env bash
# Makes (once) the venv with ZenML (zenml[local,server]: the server for the dashboard tests)
# and pytest that the ZenML example and tests run in, and prints its python. The venv is
# ${ZENML_OTEL_VENV:-<repo>/target/zenml-venv}, created with `python3` (or $PYTHON).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ZENML_OTEL_VENV:-$repo/target/zenml-venv}"
zenml_version="0.98.0"

has_zenml() {
    [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c \
        "import sys, zenml, pytest, fastapi; sys.exit(zenml.__version__ != '$zenml_version')" \
        >/dev/null 2>&1
}

if ! has_zenml; then
    [[ -x "$venv/bin/python" ]] || "${PYTHON:-python3}" -m venv "$venv"
    echo "zenml-venv.sh: installing zenml[local,server]==$zenml_version and pytest into $venv" \
        "(a minute or two, once)" >&2
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "zenml[local,server]==$zenml_version" pytest >&2; then
        echo "zenml-venv.sh: could not install zenml: is PyPI (or your pip index) reachable?" >&2
        exit 1
    fi
fi
echo "$venv/bin/python"
