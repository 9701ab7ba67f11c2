"""Hand a ZenML step's log context over to a Rust program using `zenml-otel`.

ZenML sets no environment variable with a step's ids for the processes a step
starts. Call `run_rust_step` inside a step instead of `subprocess.run`: it
starts the program with the `ZENML_OTEL_*` variables the crate's
`ZenmlOtelLayer` reads, so the program's records carry the same `zenml.*`
attributes (run, step, logs entry, pipeline, project, stack, user, log store)
as the step's own Python records, and, when the active stack's log store is of
the `otel` flavor, that store's configuration:

    from zenml import step
    from zenml_otel import run_rust_step

    @step
    def train() -> None:
        run_rust_step(["./target/release/trainer", "--epochs", "3"])

Put this file's directory on `PYTHONPATH` (or copy the file next to the
pipeline). It needs nothing beyond ZenML (tested with 0.98.0) and the
standard library. `handover_env()` returns just the variables, for code that
starts processes itself.
"""

import json
import os
import subprocess
from typing import Any, Dict, Mapping, Optional, Sequence, Union

__all__ = ["HANDOVER_VARIABLES", "handover_env", "run_rust_step"]

PREFIX = "ZENML_OTEL_"
CONFIG_VARIABLE = PREFIX + "LOG_STORE_CONFIG"
CONFIG_FILE_VARIABLE = PREFIX + "LOG_STORE_CONFIG_FILE"
HANDOVER_VARIABLES = tuple(
    PREFIX + name
    for name in (
        "PIPELINE_RUN_ID", "PIPELINE_RUN_NAME", "STEP_RUN_ID", "STEP_RUN_NAME",
        "LOG_ID", "LOG_SOURCE", "PIPELINE_ID", "PIPELINE_NAME", "PROJECT_ID",
        "PROJECT_NAME", "STACK_ID", "STACK_NAME", "USER_ID", "USER_NAME",
        "LOG_STORE_ID", "LOG_STORE_NAME", "LOG_STORE_CONFIG",
    )
)
# The `otel` flavor's configuration keys (zenml/log_stores/otel/otel_flavor.py).
CONFIG_KEYS = (
    "service_name", "service_version", "max_queue_size",
    "schedule_delay_millis", "max_export_batch_size", "export_timeout_millis",
    "endpoint", "headers", "certificate_file", "client_key_file",
    "client_certificate_file", "compression",
)

Env = Dict[str, str]


def _step_context() -> Any:
    from zenml import get_step_context

    try:
        return get_step_context()
    except RuntimeError:
        raise RuntimeError(
            "zenml_otel.run_rust_step()/handover_env() must be called inside "
            "a ZenML step (a function decorated with @step, while a pipeline "
            "runs it)"
        ) from None


def _put(env: Env, name: str, value: Any) -> None:
    """Sets `ZENML_OTEL_<name>` to `str(value)` unless the value is unknown."""
    text = None if value is None else str(value)
    if text is not None and text.strip():
        env[PREFIX + name] = text


def _put_entity(env: Env, name: str, entity: Any) -> None:
    """An id/name pair, as ZenML's `get_run_log_metadata` computes it."""
    if entity is not None:
        _put(env, name + "_ID", entity.id)
        _put(env, name + "_NAME", entity.name)


def _put_related(env: Env, name: str, run: Any) -> None:
    """`run.pipeline`, `.project`, `.stack` or `.user`, when known."""
    try:
        entity = getattr(run, name.lower())
    except Exception:  # e.g. a deleted user or stack: leave the pair out
        entity = None
    _put_entity(env, name, entity)


def _put_run(env: Env, context: Any) -> None:
    run, step_run = context.pipeline_run, context.step_run
    _put_entity(env, "PIPELINE_RUN", run)
    _put_entity(env, "STEP_RUN", step_run)
    for name in ("PIPELINE", "PROJECT", "STACK", "USER"):
        _put_related(env, name, run)


def _put_logs_entry(env: Env) -> None:
    """The logs entry the step's Python records go to (internal ZenML API).

    With step logs disabled that is the enclosing (e.g. `client`) entry.
    """
    try:
        from zenml.utils.logging_utils import LoggingContext

        log_model = LoggingContext.get().log_model
    except Exception:  # no logging context at all, or the API moved
        return
    _put(env, "LOG_ID", log_model.id)
    _put(env, "LOG_SOURCE", log_model.source)


def _config_json(config: Any) -> str:
    """The `otel` flavor's keys; attribute access resolves secret references."""
    values = {key: getattr(config, key, None) for key in CONFIG_KEYS}
    compression = values["compression"]
    values["compression"] = getattr(compression, "value", compression)
    if values["headers"] is not None:
        values["headers"] = {str(k): str(v) for k, v in values["headers"].items()}
    return json.dumps(values)


def _put_log_store(env: Env) -> None:
    from zenml.client import Client

    try:
        store = Client().active_stack.log_store
    except Exception:
        return
    _put(env, "LOG_STORE_ID", store.id)
    _put(env, "LOG_STORE_NAME", store.name)
    if getattr(store, "flavor", None) == "otel":
        env[CONFIG_VARIABLE] = _config_json(store.config)


def handover_env() -> Env:
    """The `ZENML_OTEL_*` variables for the current step; unknown ones left out.

    Raises:
        RuntimeError: If called outside a running ZenML step.
    """
    context = _step_context()
    env: Env = {}
    _put_run(env, context)
    _put_logs_entry(env)
    _put_log_store(env)
    return env


def _child_env(base: Optional[Mapping[str, str]]) -> Env:
    """`base` without stale handover variables, plus this step's."""
    handover = handover_env()
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if k not in HANDOVER_VARIABLES
    }
    if CONFIG_VARIABLE in handover:
        env.pop(CONFIG_FILE_VARIABLE, None)  # the Rust side refuses both
    env.update(handover)
    return env


def run_rust_step(cmd: Union[str, Sequence[str]], **kwargs: Any) -> int:
    """Runs `cmd` with this step's handover variables and waits for it.

    `kwargs` go to `subprocess.run` (`check` is ignored: a failure always
    raises); with `env`, that mapping is the base instead of `os.environ`.

    Returns:
        The exit code, 0.

    Raises:
        RuntimeError: If called outside a running ZenML step.
        subprocess.CalledProcessError: If the program exits non-zero; it holds
            the output and stderr when they were captured.
    """
    kwargs.pop("check", None)
    kwargs["env"] = _child_env(kwargs.get("env"))
    result = subprocess.run(cmd, **kwargs)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, cmd, output=result.stdout, stderr=result.stderr
        )
    return result.returncode
