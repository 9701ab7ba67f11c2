"""ZenML pipeline `rust_demo`: a Python step, then a step running a Rust program.

The Rust program (`$ZENML_OTEL_EXAMPLE_BIN`, e.g. a binary built with
`zenml-otel`) is started with `zenml_otel.run_rust_step`, so its logs carry
the same step, run and logs-entry attributes as the step's Python logs and end
up in the step's logs: with an `otel` log store in the active stack the
program exports to it itself; with any other (ZenML's default stack: the
artifact log store) `run_rust_step` relays its records into the step's
logs, where ZenML's dashboard shows them. Run it from an initialized ZenML
project, with the repository's `python/src/` directory on PYTHONPATH:

    PYTHONPATH=<repo>/python/src ZENML_OTEL_EXAMPLE_BIN=<binary> python pipeline.py

`examples/zenml/run.sh` sets all of this up, for both kinds of stack.
Prints `PIPELINE_RUN_ID=<uuid>`.
"""

import logging
import os

from zenml import pipeline, step

from zenml_otel import run_rust_step

logger = logging.getLogger("rust_demo")


def rust_binary() -> str:
    binary = os.environ.get("ZENML_OTEL_EXAMPLE_BIN", "").strip()
    if not binary:
        raise RuntimeError(
            "set ZENML_OTEL_EXAMPLE_BIN to the Rust program the `rust_step` "
            "step runs"
        )
    return binary


@step
def python_step() -> int:
    logger.info("python step: preparing the data")
    logger.warning("python step: 3 rows had no label, skipped")
    logger.info("python step: 42 rows ready")
    return 42


@step
def rust_step(rows: int) -> None:
    logger.info("rust step: starting the Rust program for %d rows", rows)
    run_rust_step([rust_binary()])
    logger.info("rust step: the Rust program finished")


@pipeline(enable_cache=False)
def rust_demo() -> None:
    rust_step(python_step())


if __name__ == "__main__":
    rust_binary()  # fail before the run starts when unset
    run = rust_demo()
    print(f"PIPELINE_RUN_ID={run.id}")
