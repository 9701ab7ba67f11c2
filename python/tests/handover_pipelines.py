"""Pipelines of test_handover_promise.py (copied into the test's ZenML project)."""

import json
import os
import subprocess
import tempfile
from typing import Dict, List

from zenml import pipeline, step

from project_pipelines import _between_python_lines
from zenml_otel import _run
from zenml_otel._handover import (
    CONFIG_VARIABLE,
    SPOOL_VARIABLE,
    STATS_FILE_VARIABLE,
    VERSION_VARIABLE,
    child_env,
)


@step(enable_cache=False)
def env_step(cmd: List[str], extra: Dict[str, str]) -> int:
    """`run_rust_step(cmd)` with `extra` in the program's environment."""
    return _between_python_lines(cmd, env={**os.environ, **extra})


@pipeline(enable_cache=False)
def env_pipeline(cmd: List[str], extra: Dict[str, str]) -> None:
    env_step(cmd=cmd, extra=extra)


@step(enable_cache=False)
def first_helper_step(binary: str) -> str:
    """Starts `binary` as the helper before handover 2 did (the configuration in the
    environment, a stats file and a spool, no owner file, no version); the stats it wrote."""
    with _run.handover("auto") as (handed_over, _relay), tempfile.TemporaryDirectory() as tmp:
        env = child_env(handed_over)
        env.pop(VERSION_VARIABLE)
        assert CONFIG_VARIABLE in env
        env[STATS_FILE_VARIABLE] = os.path.join(tmp, "stats.json")
        env[SPOOL_VARIABLE] = os.path.join(tmp, "spool")
        subprocess.run([binary], env=env, check=True)
        with open(env[STATS_FILE_VARIABLE], encoding="utf-8") as file:
            return json.dumps(json.load(file))


@pipeline(enable_cache=False)
def first_helper_pipeline(binary: str) -> None:
    first_helper_step(binary=binary)
