#!/usr/bin/env bash
# Makes (once) the venv with rotel, the real OTLP collector the interoperability tests run,
# and prints the path of its `rotel-agent` binary (shipped inside the PyPI package). The venv is
# ${ZENML_OTEL_ROTEL_VENV:-<repo>/.venv}, created with `python3` (or $PYTHON).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ZENML_OTEL_ROTEL_VENV:-$repo/.venv}"
# Pinned: tested with 0.0.1a15, whose binary reports rotel 0.0.1-alpha10.
rotel_spec="rotel==0.0.1a15"

if ! [[ -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import rotel' 2>/dev/null; then
    rm -rf "$venv"
    "${PYTHON:-python3}" -m venv "$venv"
    echo "rotel.sh: installing $rotel_spec into $venv (once)" >&2
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "$rotel_spec" >&2; then
        echo "rotel.sh: could not install $rotel_spec: is PyPI (or your pip index) reachable?" >&2
        exit 1
    fi
fi
agent="$("$venv/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(os.path.abspath(rotel.__file__)), "rotel-agent"))')"
if [[ ! -x "$agent" ]]; then
    echo "rotel.sh: rotel-agent not found or not executable at $agent" >&2
    exit 1
fi
echo "$agent"
