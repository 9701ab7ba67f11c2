"""Run a Rust program using `zenml-otel` as part of a ZenML step, logs included.

ZenML captures a step's logs only at the Python level (`logging` and the
step's `sys.stdout`/`sys.stderr`), and sets no environment variable with the
step's ids for the processes a step starts. Call `run_rust_step` inside a step
instead of `subprocess.run`:

    from zenml import step
    from zenml_otel import run_rust_step

    @step
    def train() -> None:
        run_rust_step(["./target/release/trainer", "--epochs", "3"])

The program needs nothing but `ZenmlOtelLayer::new(OtelLogStoreConfig::default())`.
Its records reach the step's logs by one of two paths, chosen by `logs=`:

- `"direct"`: the program exports to the active stack's `otel` log store
  itself, with that store's configuration handed over in
  `ZENML_OTEL_LOG_STORE_CONFIG`. ZenML cannot read an `otel` store back, so
  that is the only way there.
- `"relay"`: for the duration of the call, a receiver on 127.0.0.1 takes the
  program's OTLP/HTTP exports (protobuf, identity or gzip, behind a per-call
  bearer secret) and hands each record to the step's ZenML logging context as a
  `logging.LogRecord` (time, level, message, code location, attributes kept).
  The step's log store stores them with the step's Python records, so ZenML's
  dashboard shows them for any store that can be read back (`artifact`, the
  default; `datadog`; custom flavors).
- `"auto"` (default): direct when the log store's flavor is `otel`, else relay.

Either way the records carry the same `zenml.*` attributes (run, step, logs
entry, pipeline, project, stack, user, log store) as the step's own records,
handed over in `ZENML_OTEL_*` variables (`HANDOVER_VARIABLES`). When the
program ends, one line in the step's logs and the step's metadata
(`zenml-otel: <program>`) say how it exited and what the crate counted
(`ZENML_OTEL_STATS_FILE`): records emitted, exported, dropped, failed.

Each program also gets a spool directory of its own (`ZENML_OTEL_SPOOL_DIR`,
a fresh temporary directory): the crate writes every record there before the
`tracing` call returns. When a killed program (SIGKILL, OOM) or one whose
exports failed leaves records in it, they are delivered after it ends, by the
same path (relay: into the step's logs, skipping those the relay already
stored; direct: posted to the `otel` store's collector), and the receipt says
how many (`read_spool` reads a spool).

`relay_env()` is the context manager for code that starts processes itself,
`child_env()` the environment to start them with; `handover_env()` returns just
the handover variables (direct path only). `python -m zenml_otel decode <
body.bin` prints an OTLP/HTTP logs request body (plain or gzip) as JSON (see
`decode_export_request`).

The public API is what `__all__` names; the `_`-prefixed modules are internal.
Install with `pip install <zenml-otel repository>/python`. It needs nothing
beyond ZenML (tested with 0.98.0) and the standard library.
"""

from ._handover import HANDOVER_VARIABLES, child_env, handover_env
from ._otlp import decode_export_request
from ._run import relay_env, run_rust_step
from ._spool import Spooled, SpooledRecord, read_spool

__all__ = [
    "HANDOVER_VARIABLES",
    "Spooled",
    "SpooledRecord",
    "child_env",
    "decode_export_request",
    "handover_env",
    "read_spool",
    "relay_env",
    "run_rust_step",
]
