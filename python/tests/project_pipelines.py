"""The pipelines the tests run (copied into the test's ZenML project: sources must live there)."""

import logging
import os
import subprocess
import sys
from typing import Any, List

from zenml import pipeline, step

import zenml_otel

logger = logging.getLogger("pytest_step")
FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_program.py")


def _between_python_lines(cmd: List[str], **kwargs: Any) -> int:
    """`run_rust_step(cmd, **kwargs)` between two Python log lines; its exit code."""
    logger.info("python: before the program")
    try:
        zenml_otel.run_rust_step(cmd, **kwargs)
        code = 0
    except subprocess.CalledProcessError as e:
        code = e.returncode
    logger.warning("python: after the program")
    return code


@step(enable_cache=False)
def program_step(cmd: List[str], logs: str = "auto") -> int:
    return _between_python_lines(cmd, logs=logs)


@pipeline(enable_cache=False)
def program_pipeline(cmd: List[str], logs: str = "auto") -> None:
    program_step(cmd=cmd, logs=logs)


@step(enable_cache=False)
def two_processes_step() -> None:
    """relay_env with two processes at once."""
    with zenml_otel.relay_env() as env:
        child = zenml_otel.child_env(env)
        procs = [subprocess.Popen([sys.executable, FAKE, "nostats"], env=child) for _ in range(2)]
        assert [p.wait(timeout=60) for p in procs] == [0, 0]


@pipeline(enable_cache=False)
def two_processes_pipeline() -> None:
    two_processes_step()


@step(enable_cache=False)
def abort_step(binary: str) -> int:
    """The real Rust program, aborted (`ZENML_OTEL_EXAMPLE_ABORT`) before it exported anything."""
    env = {**os.environ, "ZENML_OTEL_EXAMPLE_ABORT": "1"}
    return _between_python_lines([binary], env=env)


@pipeline(enable_cache=False)
def abort_pipeline(binary: str) -> None:
    abort_step(binary=binary)
