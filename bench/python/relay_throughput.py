#!/usr/bin/env python3
"""Records/s into ZenML's artifact log store: through run_rust_step's relay vs ZenML's own
Python `logging`, measured in the same step of the same run.

    PYTHONPATH=python/src "$(bash scripts/zenml-venv.sh)" bench/python/relay_throughput.py \
        [--n 20000] [--reps 3] [--program target/release/relay_load, or any Rust program]

One pipeline with one step on ZenML's default stack (artifact log store on the local artifact
store), in a throw-away ZenML config (a temporary ZENML_CONFIG_PATH, no server). In the step,
each repetition measures, one after the other:

- **own**: N `logging.getLogger("bench").info("own: step progress %d", i)` calls, then
  `store.flush(blocking=True)` (the store's `BatchLogRecordProcessor.force_flush()`: its
  background thread has written every record to the log file); records/s = N / (first call to
  the flush's return);
- **relay**: `run_rust_step(cmd, logs="relay")` of a program that logs N records, then the same
  flush; records/s = N / (the program's start to the flush's return). The relay answers a
  request only after the store took its records, so when the program has exited every record
  is in the store's queue.

Both go through the same store, processor and log file (the step's logs entry). After each
phase the log file is read back and the phase's lines counted: a phase that stored fewer than
N lines is reported, not hidden. ZenML also prints the own records to the console (the
step's stdout, here a pipe the parent discards), and so does `run_rust_step` with the relayed
ones (its `console`, on by default: the program's console pipe read into ZenML's handlers).

The program: `--program PATH` runs `PATH --n N` (a Rust program using
`ZenmlOtelLayer::new(OtelLogStoreConfig::default())` that logs N records and exits). Without
it, a stand-in (this file, `--post`): a Python process that posts N records, encoded as the
crate encodes them (body, severity, time, code location, `i`, `rows` and the handed-over
`zenml.*` attributes; 512 records a request, gzip, one keep-alive connection, one request at
a time) from bodies encoded before the phase starts — so the stand-in's own cost is its start
and its posting, as a Rust program's would be (encoding is ≈ 0.2 µs a record in the crate).

Prints `RESULT {json}` per repetition and a summary: own and relay records/s, their ratio
(relay ÷ own), medians over the repetitions, and each repetition's ratio (own and relay
measured back to back: the machine's drift between repetitions cancels in it).
bench/python/relay_cost.py isolates the relay's own Python work a record.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BATCH = 512  # records per request, the crate's default max_export_batch_size
OWN_MARK = "own: step progress"
RELAY_MARK = "step progress"  # the stand-in's "relay: step progress" and a program's own text

# The handover variables that the crate puts on every record, and their record attributes.
RECORD_ATTRIBUTES = {
    "PIPELINE_RUN_ID": "zenml.pipeline.run.id", "STEP_RUN_ID": "zenml.step.run.id",
    "LOG_SOURCE": "zenml.log.source", "LOG_ID": "zenml.log.id",
    "PIPELINE_RUN_NAME": "zenml.pipeline.run.name", "STEP_RUN_NAME": "zenml.step.run.name",
    "PIPELINE_ID": "zenml.pipeline.id", "PIPELINE_NAME": "zenml.pipeline.name",
    "PROJECT_ID": "zenml.project.id", "PROJECT_NAME": "zenml.project.name",
    "STACK_ID": "zenml.stack.id", "STACK_NAME": "zenml.stack.name",
    "USER_ID": "zenml.user.id", "USER_NAME": "zenml.user.name",
    "LOG_STORE_ID": "zenml.log_store.id", "LOG_STORE_NAME": "zenml.log_store.name",
}


# --- the stand-in program ------------------------------------------------------------------


def encode_bodies(n: int, handover: Dict[str, str], path: str) -> None:
    """N records in gzip'd OTLP requests of BATCH records, written length-prefixed to `path`."""
    sys.path.insert(0, os.path.join(REPO, "python", "tests"))
    import otlp_testing as otlp

    zenml_attributes = {
        attribute: handover["ZENML_OTEL_" + name]
        for name, attribute in RECORD_ATTRIBUTES.items()
        if "ZENML_OTEL_" + name in handover
    }
    resource = {
        "service.name": "zenml", "telemetry.sdk.language": "rust",
        "zenml.pipeline_run_id": handover.get("ZENML_OTEL_PIPELINE_RUN_ID", ""),
        "zenml.step_id": handover.get("ZENML_OTEL_STEP_RUN_ID", ""),
        "zenml.source": "step",
    }
    now = time.time_ns()
    with open(path, "wb") as out:
        for start in range(0, n, BATCH):
            records = [
                otlp.log_record(
                    body=f"relay: step progress i={i} rows=42", severity_number=9,
                    severity_text="INFO", time_unix_nano=now + i, observed_time_unix_nano=now + i,
                    attributes={
                        "code.file.path": "bench/src/relay_load.rs", "code.line.number": 42,
                        "code.namespace": "relay_load", "i": i, "rows": 42,
                        **zenml_attributes,
                    },
                )
                for i in range(start, min(n, start + BATCH))
            ]
            body = gzip.compress(otlp.request(resource, ("relay_load", ""), records), 1)
            out.write(struct.pack("<I", len(body)) + body)


def post_bodies(path: str) -> int:
    """The stand-in: posts every body of `path` to the handed-over endpoint, one at a time on
    one connection, then writes the crate's stats file."""
    config = json.loads(os.environ["ZENML_OTEL_LOG_STORE_CONFIG"])
    url = urlsplit(config["endpoint"])
    headers = {
        "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip",
        **config.get("headers", {}),
    }
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        body = data[pos + 4 : pos + 4 + size]
        pos += 4 + size
        connection.request("POST", url.path, body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        if answer.status != 200:
            print(f"stand-in: the relay answered {answer.status}", file=sys.stderr)
            return 1
    connection.close()
    stats_path = os.environ.get("ZENML_OTEL_STATS_FILE")
    sent = int(os.environ.get("RELAY_BENCH_N", "0"))
    if stats_path:
        stats = {"emitted": sent, "exported": sent, "dropped": 0, "failed": 0,
                 "rejected": 0, "truncated": 0}
        with open(stats_path + ".tmp", "w") as f:
            json.dump(stats, f)
        os.replace(stats_path + ".tmp", stats_path)
    return 0


# --- the step ------------------------------------------------------------------------------


def count_lines(uri: str, marks: List[str]) -> Dict[str, int]:
    """Lines of the step's log file holding each mark (first match wins, in order)."""
    from zenml.io import fileio

    counts = {m: 0 for m in marks}
    if not fileio.exists(uri):
        return counts
    paths = [uri]
    if fileio.isdir(uri):  # an immutable artifact store: one file per export
        paths = [os.path.join(uri, str(name)) for name in fileio.listdir(uri)]
    for path in paths:
        with fileio.open(path, "r") as f:
            for line in f:
                for mark in marks:
                    if mark in line:
                        counts[mark] += 1
                        break
    return counts


# The stand-in must start fast: ZenML is imported only by the benchmark itself.
STAND_IN = "--post" in sys.argv[1:]
if __name__ == "__main__" and not STAND_IN:
    # A throw-away ZenML config, set before ZenML is imported; nothing of the caller's.
    PROJECT = tempfile.mkdtemp(prefix="relay-bench-zenml-")
    for _name in list(os.environ):
        if _name.startswith(("ZENML_", "OTEL_EXPORTER_OTLP_")):
            del os.environ[_name]
    os.environ.update(
        ZENML_CONFIG_PATH=os.path.join(PROJECT, "config"), ZENML_ANALYTICS_OPT_IN="false",
        ZENML_AUTO_OPEN_DASHBOARD="false", ZENML_ENABLE_RICH_TRACEBACK="false",
    )

if not STAND_IN:
    import logging

    try:  # installed, or on PYTHONPATH
        import zenml_otel  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.join(REPO, "python", "src"))

    from zenml import pipeline, step

    import zenml_otel

    bench_logger = logging.getLogger("bench")

    @step(enable_cache=False)
    def relay_bench_step(n: int, reps: int, program: Optional[str]) -> List[Dict[str, Any]]:
        from zenml.utils.logging_utils import LoggingContext

        context = LoggingContext.get()
        store = context._log_store  # the step's log store (internal API, ZenML 0.98.0)
        uri = context.log_model.uri

        def flush() -> None:
            store.flush(blocking=True)

        scratch = tempfile.mkdtemp(prefix="relay-bench-")
        results = []
        try:
            if program:
                cmd = [program, "--n", str(n)]
            else:
                bodies = os.path.join(scratch, "bodies.bin")
                encode_bodies(n, zenml_otel.handover_env(), bodies)
                cmd = [sys.executable, os.path.abspath(__file__), "--post", bodies]
            env = {**os.environ, "RELAY_BENCH_N": str(n)}
            for rep in range(reps):
                flush()
                before = count_lines(uri, [OWN_MARK, RELAY_MARK])

                start = time.perf_counter()
                for i in range(n):
                    bench_logger.info("own: step progress %d", i)
                emitted = time.perf_counter()
                flush()
                own_s = time.perf_counter() - start
                own_emit_s = emitted - start
                mid = count_lines(uri, [OWN_MARK, RELAY_MARK])

                start = time.perf_counter()
                zenml_otel.run_rust_step(cmd, logs="relay", env=env)
                exited = time.perf_counter()
                flush()
                relay_s = time.perf_counter() - start
                relay_program_s = exited - start
                after = count_lines(uri, [OWN_MARK, RELAY_MARK])

                results.append({
                    "rep": rep, "n": n,
                    "program": program or "stand-in (bench/python/relay_throughput.py --post)",
                    "own_s": own_s, "own_emit_s": own_emit_s,
                    "own_stored": mid[OWN_MARK] - before[OWN_MARK],
                    "own_records_per_s": n / own_s,
                    "relay_s": relay_s, "relay_program_s": relay_program_s,
                    "relay_stored": after[RELAY_MARK] - mid[RELAY_MARK],
                    "relay_records_per_s": n / relay_s,
                    "ratio_relay_over_own": own_s / relay_s,
                })
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return results

    @pipeline(enable_cache=False)
    def relay_bench(n: int, reps: int, program: Optional[str]) -> None:
        relay_bench_step(n=n, reps=reps, program=program)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--program", help="a Rust program taking `--n N` (default: a stand-in)")
    parser.add_argument("--post", help=argparse.SUPPRESS)  # the stand-in
    args = parser.parse_args()
    if args.post:
        return post_bodies(args.post)

    try:
        program = os.path.abspath(args.program) if args.program else None
        run = relay_bench(n=args.n, reps=args.reps, program=program)
        from zenml.client import Client

        run = Client().get_pipeline_run(run.id)
        results = run.steps["relay_bench_step"].output.load()
    finally:
        shutil.rmtree(PROJECT, ignore_errors=True)

    for r in results:
        print("RESULT " + json.dumps({"bench": "relay_throughput", **r}))
    own = statistics.median(r["own_records_per_s"] for r in results)
    relay = statistics.median(r["relay_records_per_s"] for r in results)
    print(f"# {results[0]['program']}, N = {args.n}, {len(results)} repetitions (medians)")
    for label, key in (
        ("own (logging.info -> artifact log store, flushed)", "own"),
        ("relay (program -> relay -> artifact log store, flushed)", "relay"),
    ):
        each = ", ".join(f"{r[key + '_records_per_s']:,.0f}" for r in results)
        stored = [r[key + "_stored"] for r in results]
        median = own if key == "own" else relay
        print(f"# {label}: {median:,.0f} records/s (each: {each}; stored {stored})")
    each = ", ".join(f"{r['ratio_relay_over_own']:.2f}" for r in results)
    print(f"# relay / own: {relay / own:.2f} (goal >= 0.8; each repetition's: {each})")
    lost = [r for r in results if r["own_stored"] != args.n or r["relay_stored"] != args.n]
    if lost:
        print("# WARNING: a phase stored fewer or more lines than N: see the RESULT lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
