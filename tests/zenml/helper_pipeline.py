"""Runs `zenml_otel.run_rust_step` on `dump_env.py` inside a real ZenML step.

Writes to `$ZENML_OTEL_TEST_OUT` (JSON): `received`, the variables the child
got on the direct path (`logs="direct"`: with the default `auto`, a stack
without an `otel` log store relays, and the child gets the relay's
configuration); `received_auto`, those it got with `auto`; `context`, what the
step sees directly (with `origin_metadata`, the attributes ZenML puts on the
step's own records, read from a private field); `called_process_error`, the
return code of the failing call. `zenml_otel` must be importable (PYTHONPATH
holding the repo's `python/` directory).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from zenml import get_step_context, pipeline, step
from zenml.utils.logging_utils import LoggingContext

from zenml_otel import run_rust_step

# The test copies this file into its ZenML project and says where the script is.
DUMP_ENV = os.environ.get("ZENML_OTEL_DUMP_ENV") or str(
    Path(__file__).with_name("dump_env.py")
)


def _context() -> dict:
    context = get_step_context()
    logging_context = LoggingContext.get()
    origin = getattr(logging_context, "_origin", None)
    return {
        "pipeline_run_id": str(context.pipeline_run.id),
        "step_run_id": str(context.step_run.id),
        "log_id": str(logging_context.log_model.id),
        "log_source": logging_context.log_model.source,
        "origin_metadata": dict(origin.metadata) if origin else None,
    }


@step(enable_cache=False)
def handover() -> None:
    out = os.environ["ZENML_OTEL_TEST_OUT"]
    print("helper step: handing over")
    assert run_rust_step([sys.executable, DUMP_ENV, out], logs="direct") == 0
    result = {"received": json.loads(Path(out).read_text()), "context": _context()}
    assert run_rust_step([sys.executable, DUMP_ENV, out]) == 0
    result["received_auto"] = json.loads(Path(out).read_text())
    try:
        run_rust_step([sys.executable, DUMP_ENV, os.devnull, "3"])
    except subprocess.CalledProcessError as e:
        result["called_process_error"] = e.returncode
    Path(out).write_text(json.dumps(result, indent=1, sort_keys=True))


@pipeline(enable_cache=False)
def helper_pipeline() -> None:
    handover()


if __name__ == "__main__":
    run = helper_pipeline()
    print(f"PIPELINE_RUN_ID={run.id}")
