"""Pipelines of test_step_parity.py, run as a user runs one — `python parity_pipelines.py CASE
ARGS_JSON` in the tests' ZenML project — so the run's console is the real one (the test reads
this process's output). Prints, last, one line `RESULT <json>`: the step's log entries as ZenML
returns them (default stack) and what the step measured.

CASE: `default` (the default stack: the relay) or `otel` (a stack whose log store is of the
`otel` flavor, at ARGS_JSON's `endpoint`); ARGS_JSON's `cmd` is the program.
"""

import json
import logging
import resource
import sys
import uuid
from typing import Any, Dict, List

from zenml import pipeline, step

from zenml_otel import run_rust_step

logger = logging.getLogger("parity")


@step(enable_cache=False)
def parity_step(cmd: List[str]) -> float:
    """The program between Python records and a Python warning; the step's peak memory
    growth over the call, in MiB."""
    logger.info("python: before the program")
    logger.warning("python: a warning")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run_rust_step(cmd)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    logger.info("python: after the program")
    return grown


@pipeline(enable_cache=False)
def parity_pipeline(cmd: List[str]) -> None:
    parity_step(cmd=cmd)


def entries(run: Any) -> List[Dict[str, str]]:
    """The step's log entries as the dashboard gets them: `fetch` returns a list on ZenML
    0.93 and a page (`.items`) since."""
    from zenml.client import Client
    from zenml.utils.logging_utils import search_logs_by_source

    client = Client()
    step_run = client.get_pipeline_run(run.id).steps["parity_step"]
    logs = search_logs_by_source(step_run.log_collection, "step")
    fetched = client.active_stack.log_store.fetch(logs_model=logs, limit=100_000)
    return [
        {"level": str(getattr(e.level, "name", e.level)), "message": e.message}
        for e in getattr(fetched, "items", fetched)
    ]


def on_otel_stack(endpoint: str, cmd: List[str]) -> Any:
    from zenml.client import Client
    from zenml.enums import StackComponentType as T

    client = Client()
    name = f"parity-{uuid.uuid4().hex[:8]}"
    client.create_stack_component(
        name=name, flavor="otel", component_type=T.LOG_STORE, configuration={"endpoint": endpoint}
    )
    client.create_stack(
        name=name,
        components={T.ORCHESTRATOR: "default", T.ARTIFACT_STORE: "default", T.LOG_STORE: name},
    )
    client.activate_stack(name)
    try:
        return parity_pipeline(cmd=cmd)
    finally:
        client.activate_stack("default")


def main() -> None:
    case, args = sys.argv[1], json.loads(sys.argv[2])
    cmd = args["cmd"]
    if case == "otel":
        run = on_otel_stack(args["endpoint"], cmd)
        result: Dict[str, Any] = {"entries": None}
    else:
        run = parity_pipeline(cmd=cmd)
        result = {"entries": entries(run)}
    from zenml.client import Client

    step_run = Client().get_pipeline_run(run.id).steps["parity_step"]
    result["grown_mib"] = step_run.outputs["output"][0].load()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
