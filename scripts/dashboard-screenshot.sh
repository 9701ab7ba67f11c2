#!/usr/bin/env bash
# Makes docs/dashboard-step-logs.png: ZenML's dashboard showing the Logs tab of the `rust_step`
# step of examples/zenml/pipeline.py, run on ZenML's default stack (artifact log store), where
# run_rust_step relays the Rust program's records into the step's logs next to its Python ones.
#
#   bash scripts/dashboard-screenshot.sh [OUT.png]      # default docs/dashboard-step-logs.png
#
# What it does, all on loopback and in a throw-away ZenML config (nothing of yours is touched):
#   1. installs what is missing: Debian's `chromium` (apt-get, as root or with sudo) and the
#      ZenML venv (scripts/zenml-venv.sh: zenml[local,server]==0.98.0, once);
#   2. builds the Rust step's program: `cargo build --example zenml-step --all-features`
#      (skipped when ZENML_OTEL_EXAMPLE_BIN names a binary already);
#   3. starts a local ZenML server (`zenml login --local --port $PORT`; PORT defaults to a free
#      one, or $ZENML_OTEL_DASHBOARD_PORT) under a temporary ZENML_CONFIG_PATH;
#   4. runs examples/zenml/pipeline.py on the default stack;
#   5. drives headless Chromium over its DevTools protocol (scripts/dashboard_screenshot.py:
#      opens the run, clicks the step's node, then its Logs tab, waits for the Python and the
#      Rust lines) and writes the PNG;
#   6. stops the server and removes the temporary directory, also on failure.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/docs/dashboard-step-logs.png}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

say() { printf 'dashboard-screenshot.sh: %s\n' "$*" >&2; }

# 1. chromium and the ZenML venv.
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]]; then
    say "installing Debian's chromium (apt-get)"
    sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2
    chromium=/usr/bin/chromium
fi
python="$(bash "$repo/scripts/zenml-venv.sh")"
zenml="$(dirname "$python")/zenml"

# 2. the Rust program the pipeline's `rust_step` runs.
if [[ -z "${ZENML_OTEL_EXAMPLE_BIN:-}" ]]; then
    say "building the zenml-step example"
    (cd "$repo" && cargo build --quiet --example zenml-step --all-features)
    ZENML_OTEL_EXAMPLE_BIN="$repo/target/debug/examples/zenml-step"
fi

# 3. a throw-away ZenML config and a local server on a port of its own.
work="$(mktemp -d "${TMPDIR:-/tmp}/zenml-otel-dashboard-XXXXXX")"
port="${ZENML_OTEL_DASHBOARD_PORT:-}" binary="$ZENML_OTEL_EXAMPLE_BIN"
for name in $(env | grep -oE '^(ZENML_[A-Za-z0-9_]*|OTEL_EXPORTER_OTLP_[A-Za-z0-9_]*)' || true); do
    unset "$name"  # a store URL, a stale handover, an exporter setting of the caller's
done
export ZENML_OTEL_EXAMPLE_BIN="$binary" ZENML_CONFIG_PATH="$work/config" ZENML_ANALYTICS_OPT_IN=false \
    ZENML_AUTO_OPEN_DASHBOARD=false ZENML_ENABLE_RICH_TRACEBACK=false
port="${port:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
server="http://127.0.0.1:$port"

stop() {
    local pid_file="$ZENML_CONFIG_PATH/zen_server/daemon/service.pid" pid=""
    [[ -f "$pid_file" ]] && pid="$(cat "$pid_file")"
    "$zenml" logout --local >/dev/null 2>&1 || true
    # The daemon we started, if logout left it running (its own pid file, not a name match).
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop EXIT

say "starting a local ZenML server at $server"
(cd "$work" && "$zenml" login --local --port "$port" >"$work/login.log" 2>&1) || {
    cat "$work/login.log" >&2
    exit 1
}

# 4. the pipeline, on the default stack (its artifact log store: the relay path).
say "running examples/zenml/pipeline.py"
(cd "$work" && PYTHONPATH="$repo/python" "$python" "$repo/examples/zenml/pipeline.py") \
    >"$work/pipeline.log" 2>&1 || {
    cat "$work/pipeline.log" >&2
    exit 1
}
run_id="$(sed -n 's/^PIPELINE_RUN_ID=//p' "$work/pipeline.log" | tail -n 1)"
[[ -n "$run_id" ]] || { cat "$work/pipeline.log" >&2; say "no PIPELINE_RUN_ID printed"; exit 1; }

# 5. the screenshot: the step's Logs tab with the Python lines, the Rust lines and the receipt.
"$python" "$repo/scripts/dashboard_screenshot.py" --server "$server" --run-id "$run_id" \
    --chromium "$chromium" --step rust_step \
    --wait-for "rust step: starting the Rust program" \
    --wait-for "rust: score below threshold" \
    --wait-for "rust step: the Rust program finished" \
    --wait-for "zenml-otel: zenml-step exited 0" \
    --out "$out"
say "wrote $out"
