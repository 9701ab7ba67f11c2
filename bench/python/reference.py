#!/usr/bin/env python3
"""Python reference for the zenml-otel throughput and burst measurements.

The pipeline ZenML's Python OTEL log store uses: the OpenTelemetry Python SDK's
``LoggerProvider`` + ``BatchLogRecordProcessor`` + ``OTLPLogExporter`` (OTLP/HTTP
protobuf), fed by a stdlib ``logging`` logger through ``LoggingHandler``. The same
record shape as the Rust harness (``bench/src/throughput.rs``): message
``"step progress"`` and two attributes (``i``, ``rows=42``), under a resource that
carries the ZenML run, step and source.

Scenarios (``reference.py <scenario> [--n N] [--reps R] [--endpoint URL]``):

- ``throughput`` (P2): emit N records, ``force_flush()``, records/s from the first
  emit to the last record acknowledged by the collector (a wrapper around the
  exporter counts the records of every batch that returned SUCCESS). Queue = N so
  nothing is lost; batch 512, delay 1000 ms.
- ``burst`` (P3): 20,000 records as fast as possible at the SDK defaults
  (queue 2048, delay 1000 ms, batch 512): delivered (acknowledged) and dropped
  (N - acknowledged: the SDK does not count its drops; its deque drops the
  *oldest* record when full).
- ``all``: both.

Without ``--endpoint`` the script starts rotel itself (``$ROTEL_AGENT`` or
``rotel-agent`` on PATH) with ``--exporter blackhole`` on free loopback ports, and
stops it afterwards; without rotel it says so and prints a ``skipped`` result.

Every result is one line ``RESULT {json}`` plus one human line starting ``# ``.

Setup: ``python3 -m venv /tmp/zenml-otel-bench-venv &&
/tmp/zenml-otel-bench-venv/bin/pip install opentelemetry-sdk
opentelemetry-exporter-otlp-proto-http`` (``scripts/bench.sh`` does this).

The SDK logs a WARNING through ``logging`` for every record it drops when its
queue is full ("Queue full, dropping Log."); that would print 18,000 lines in the
burst and slow the emitting thread down. The ``opentelemetry`` loggers are
therefore silenced (level ERROR) unless ``--sdk-warnings`` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings

RUN_ID = "3f2b8c1e-5d4a-4e7b-9c1f-0a2b3c4d5e6f"
STEP_ID = "8e7d6c5b-4a39-4281-b7c6-d5e4f3a2b1c0"

DEFAULT_QUEUE = 2048
DEFAULT_DELAY_MS = 1000
DEFAULT_BATCH = 512


def report(result: dict, human: str) -> None:
    print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
    print("# " + human, flush=True)


# --------------------------------------------------------------------------------------
# rotel, as a child process
# --------------------------------------------------------------------------------------


def find_rotel() -> str | None:
    path = os.environ.get("ROTEL_AGENT")
    if path:
        return path if os.path.isfile(path) else None
    return shutil.which("rotel-agent")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rotel:
    """rotel-agent with the blackhole exporter; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, binary: str) -> None:
        http_port, grpc_port = free_port(), free_port()
        while grpc_port == http_port:
            grpc_port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="zenml-otel-bench-rotel-", suffix=".log", delete=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
        env["NO_COLOR"] = "1"
        self.proc = subprocess.Popen(
            [
                binary, "start",
                "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
                "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
                "--exporter", "blackhole",
                "--batch-timeout", "10ms",
            ],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env,
        )
        self.endpoint = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rotel exited early: {open(self.log.name).read()}")
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", grpc_port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("rotel did not start listening within 10 s")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # our own child, by its pid
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


# --------------------------------------------------------------------------------------
# The Python SDK pipeline
# --------------------------------------------------------------------------------------

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs import export as _export
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

try:
    import importlib.metadata as _md

    SDK_VERSION = _md.version("opentelemetry-sdk")
except Exception:  # pragma: no cover
    SDK_VERSION = "unknown"

_ExporterBase = getattr(_export, "LogRecordExporter", None) or getattr(_export, "LogExporter")
_Result = getattr(_export, "LogRecordExportResult", None) or getattr(_export, "LogExportResult")


class CountingExporter(_ExporterBase):
    """Delegates to the OTLP exporter and counts the records it got acknowledged."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.exported = 0
        self.failed = 0
        self.requests = 0
        self._lock = threading.Lock()

    def export(self, batch):
        result = self.inner.export(batch)
        with self._lock:
            self.requests += 1
            if result == _Result.SUCCESS:
                self.exported += len(batch)
            else:
                self.failed += len(batch)
        return result

    def shutdown(self):
        return self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Pipeline:
    def __init__(self, endpoint: str, queue: int, delay_ms: int, batch: int) -> None:
        self.exporter = CountingExporter(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", timeout=10))
        self.processor = BatchLogRecordProcessor(
            self.exporter,
            schedule_delay_millis=delay_ms,
            max_export_batch_size=batch,
            max_queue_size=queue,
        )
        resource = Resource.create(
            {
                "service.name": "zenml",
                "service.version": "1.0.0",
                "deployment.environment": "production",
                "zenml.pipeline_run_id": RUN_ID,
                "zenml.step_id": STEP_ID,
                "zenml.source": "step",
            }
        )
        self.provider = LoggerProvider(resource=resource)
        self.provider.add_log_record_processor(self.processor)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.handler = LoggingHandler(level=logging.INFO, logger_provider=self.provider)
        self.logger = logging.getLogger(f"zenml.step.{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.logger.addHandler(self.handler)

    def run(self, n: int):
        logger = self.logger
        start = time.perf_counter()
        for i in range(n):
            logger.info("step progress", extra={"i": i, "rows": 42})
        emitted = time.perf_counter()
        flushed = self.provider.force_flush()
        done = time.perf_counter()
        return emitted - start, done - start, flushed

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.provider.shutdown()


def with_endpoint(args, scenario: str, body) -> None:
    if args.endpoint:
        body(args.endpoint.rstrip("/"), "given endpoint")
        return
    binary = find_rotel()
    if binary is None:
        why = "rotel-agent not found: set ROTEL_AGENT or put rotel-agent on PATH (pip install rotel==0.0.1a15)"
        print(f"cannot run the `{scenario}` scenario: {why}", file=sys.stderr)
        report({"scenario": scenario, "impl": "python", "skipped": why}, f"python {scenario}: SKIPPED ({why})")
        return
    rotel = Rotel(binary)
    try:
        body(rotel.endpoint, "rotel blackhole")
    finally:
        rotel.stop()


def throughput(args) -> None:
    n = args.n or 50_000
    reps = args.reps or 3

    def body(endpoint: str, target: str) -> None:
        rates, emit_rates = [], []
        for rep in range(reps):
            p = Pipeline(endpoint, queue=n, delay_ms=DEFAULT_DELAY_MS, batch=DEFAULT_BATCH)
            emit_s, total_s, flushed = p.run(n)
            exported, failed = p.exporter.exported, p.exporter.failed
            p.close()
            if exported != n or failed:
                raise SystemExit(f"python throughput: {exported} of {n} acknowledged, {failed} failed")
            rates.append(n / total_s)
            emit_rates.append(n / emit_s)
            print(f"rep {rep} python: {n / total_s:10.0f} records/s delivered "
                  f"(emit {emit_s:.3f} s, total {total_s:.3f} s)", file=sys.stderr)
        med = statistics.median(rates)
        report(
            {
                "scenario": "throughput", "impl": "python", "n": n, "reps": reps, "target": target,
                "batching": {"queue": n, "delay_ms": DEFAULT_DELAY_MS, "batch": DEFAULT_BATCH},
                "python_records_per_s": med, "samples": rates,
                "python_emit_records_per_s": statistics.median(emit_rates),
                "python": sys.version.split()[0], "opentelemetry_sdk": SDK_VERSION,
            },
            f"throughput (P2) python reference ({n} records, median of {reps}): {med:.0f} records/s "
            f"delivered (emit only {statistics.median(emit_rates):.0f}/s)",
        )

    with_endpoint(args, "throughput", body)


def burst(args) -> None:
    n = args.n or 20_000
    reps = args.reps or 3

    def body(endpoint: str, target: str) -> None:
        for rep in range(reps):
            p = Pipeline(endpoint, queue=DEFAULT_QUEUE, delay_ms=DEFAULT_DELAY_MS, batch=DEFAULT_BATCH)
            emit_s, _total_s, flushed = p.run(n)
            exported, failed = p.exporter.exported, p.exporter.failed
            p.close()
            dropped = n - exported - failed
            report(
                {
                    "scenario": "burst", "impl": "python", "rep": rep, "n": n, "target": target,
                    "batching": {"queue": DEFAULT_QUEUE, "delay_ms": DEFAULT_DELAY_MS, "batch": DEFAULT_BATCH},
                    "emitted": n, "delivered": exported, "dropped": dropped, "failed": failed,
                    "emit_ms": emit_s * 1e3, "sdk_warnings": args.sdk_warnings,
                },
                f"burst (P3) python reference: {n} emitted in {emit_s * 1e3:.1f} ms -> delivered "
                f"{exported} ({100 * exported / n:.1f}%), dropped {dropped} (not counted by the SDK: "
                f"n - acknowledged), failed {failed}",
            )

    with_endpoint(args, "burst", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["throughput", "burst", "all"])
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--endpoint", default=None, help="OTLP/HTTP base URL; default: start rotel")
    parser.add_argument("--sdk-warnings", action="store_true", help="keep the SDK's per-drop warnings")
    args = parser.parse_args()
    for name in [k for k in os.environ if k.startswith("OTEL_")]:
        print(f"note: ignoring {name} for the measurement", file=sys.stderr)
        del os.environ[name]
    if not args.sdk_warnings:
        logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    if args.scenario in ("throughput", "all"):
        throughput(args)
    if args.scenario in ("burst", "all"):
        burst(args)


if __name__ == "__main__":
    main()
