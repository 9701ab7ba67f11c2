#!/usr/bin/env python3
"""The relay's own Python work per record, without ZenML's store: what `Relay.accept` spends
on a real program's requests besides the store's `emit`, through the helper's emitter.

    cargo build --release -p zenml-otel-bench --bin relay_load
    PYTHONPATH=python/src "$(bash scripts/zenml-venv.sh)" bench/python/relay_cost.py \
        [--n 20000] [--program target/release/relay_load]

The program logs N records into a relay whose store takes nothing (the handover of a step:
the 16 `ZENML_OTEL_*` ids and names, made up); its request bodies, as they came, are then
given to a fresh relay's `accept` again and again (the best of 7), emitting through
`_zenml.emitter` into a stand-in of the step's logging context (an origin with the 16 keys as
its metadata, as ZenML 0.98's has, and a store whose `emit` does nothing): once without a console,
once printing through a `StreamHandler` with ZenML's console formatter into memory. Prints
`RESULT {json}` and µs a record of each. bench/python/relay_throughput.py measures the whole
step; this isolates the part the relay adds, for changes to the decoder, the ledger or the
record conversion.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import time
from typing import Any, Callable, ClassVar

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REPS = 7
IDS = ("PIPELINE_RUN", "STEP_RUN", "LOG", "PIPELINE", "PROJECT", "STACK", "USER", "LOG_STORE")
NAMES = ("PIPELINE_RUN", "STEP_RUN", "PIPELINE", "PROJECT", "STACK", "USER", "LOG_STORE")

try:  # installed, or on PYTHONPATH
    import zenml_otel  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(REPO, "python", "src"))

from zenml_otel import _zenml  # noqa: E402
from zenml_otel._console import Console  # noqa: E402
from zenml_otel._relay import Relay  # noqa: E402

Bodies = list[tuple[bytes, str]]


def capture(program: str, n: int) -> Bodies:
    """The request bodies (and encodings) `program --n N` sends a relay."""
    bodies: Bodies = []
    relay = Relay(lambda record, metadata: None)
    accept = relay.accept

    def keep(body: bytes, encoding: str) -> None:
        bodies.append((body, encoding))
        accept(body, encoding)

    relay.accept = keep  # type: ignore[method-assign]
    env = {**os.environ, "ZENML_OTEL_LOG_STORE_CONFIG": relay.config_json(),
           "ZENML_OTEL_HANDOVER_VERSION": "3", "ZENML_OTEL_LOG_SOURCE": "step"}  # fmt: skip
    for i, name in enumerate(IDS):
        env[f"ZENML_OTEL_{name}_ID"] = f"0b8e5d3c-2f0a-4c3e-9a7e-5f0d3c2b{i:04x}"
    for name in NAMES:
        env[f"ZENML_OTEL_{name}_NAME"] = f"relay_cost-{name.lower()}-2026_12_07-15_00_00_000000"
    with relay:
        subprocess.run([program, "--n", str(n)], env=env, check=True)
    return bodies


class _Origin:
    """The step's origin: ZenML puts its metadata on each of the step's records."""

    metadata: ClassVar[dict[str, str]] = {f"zenml.{key}": "x" for key in (
        "log.id", "log.source", "log_store.id", "log_store.name", "pipeline.run.id",
        "pipeline.run.name", "step.run.id", "step.run.name", "pipeline.id", "pipeline.name",
        "project.id", "project.name", "stack.id", "stack.name", "user.id", "user.name",
    )}  # fmt: skip


class _Store:
    def emit(self, origin: Any, record: Any, metadata: Any) -> None:
        pass


class _Context:
    """What `_zenml.emitter` reads of the step's `LoggingContext`."""

    _log_store = _Store()
    _origin = _Origin()


def per_record(bodies: Bodies, n: int, console: Callable[[], Any]) -> float:
    """µs a record of `accept` over `bodies`, the best of `REPS`, each into a fresh relay."""
    best = float("inf")
    emit = _zenml.emitter(_Context())  # type: ignore[arg-type]
    for _ in range(REPS):
        relay = Relay(emit, console=console())
        start = time.perf_counter()
        for body, encoding in bodies:
            relay.accept(body, encoding)
        best = min(best, time.perf_counter() - start)
        relay._server.server_close()
    return best / n * 1e6


def zenml_console() -> Console:
    handler = logging.StreamHandler(io.StringIO())
    from zenml.logger import ZenMLConsoleFormatter  # the step's console formatter

    handler.setFormatter(ZenMLConsoleFormatter())
    return Console([handler])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--program", default=os.path.join(REPO, "target/release/relay_load"))
    args = parser.parse_args()
    bodies = capture(args.program, args.n)
    result = {
        "bench": "relay_cost", "n": args.n, "requests": len(bodies),
        "accept_us": per_record(bodies, args.n, lambda: None),
        "accept_console_us": per_record(bodies, args.n, zenml_console),
    }  # fmt: skip
    print("RESULT " + json.dumps(result))
    print(f"# {args.program}, N = {args.n} in {len(bodies)} requests (best of {REPS})")
    print(f"# the relay's work a record: {result['accept_us']:.1f} µs without a console, "
          f"{result['accept_console_us']:.1f} µs printing through ZenML's console formatter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
