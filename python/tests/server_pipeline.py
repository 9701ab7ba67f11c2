"""The pipeline test_server.py runs against a ZenML server: a step logging with Python around a
Rust program (then a line on stdout and one on stderr) started with `run_rust_step`. Run as `python server_pipeline.py <program>` from a
ZenML project (the server's client); prints `PIPELINE_RUN_ID=<uuid>`."""

import logging
import sys

from zenml import pipeline, step

import zenml_otel

logger = logging.getLogger("server_step")
# The program's plain output after its records: what a Python step's print gives.
PLAIN = ("plain: a println line", "plain: an eprintln line")


@step(enable_cache=False)
def server_step(program: str) -> None:
    logger.info("python: before the program")
    logger.warning("python: the program may warn")
    zenml_otel.run_rust_step(
        ["sh", "-c", f'"{program}"; echo "{PLAIN[0]}"; echo "{PLAIN[1]}" >&2']
    )
    logger.info("python: after the program")
    logger.warning("python: done")


@pipeline(enable_cache=False)
def server_pipeline(program: str) -> None:
    server_step(program=program)


if __name__ == "__main__":
    run = server_pipeline(program=sys.argv[1])
    print(f"PIPELINE_RUN_ID={run.id}")
