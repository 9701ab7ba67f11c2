"""Everything that touches ZenML: the step context, the logging context and its internals,
the active log store, the step's metadata. The only module that imports `zenml`.

ZenML is imported when a function here first runs, not with the package: decoding and the
command line need no ZenML, and importing it takes a while. Written against ZenML 0.98's
`LoggingContext` (zenml/utils/logging_utils.py); where its internals moved, the functions
fall back to the public API (the relay then cannot tell ZenML's refusals apart).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple, Union

from ._otlp import Value
from ._records import Emit, metadata

if TYPE_CHECKING:
    from zenml.log_stores.base_log_store import BaseLogStore
    from zenml.steps.step_context import StepContext
    from zenml.utils.logging_utils import LoggingContext

# The `otel` flavor's configuration keys (zenml/log_stores/otel/otel_flavor.py).
CONFIG_KEYS = (
    "service_name", "service_version", "max_queue_size",
    "schedule_delay_millis", "max_export_batch_size", "export_timeout_millis",
    "endpoint", "headers", "certificate_file", "client_key_file",
    "client_certificate_file", "compression",
)  # fmt: skip

log = logging.getLogger("zenml_otel")
_said: set[str] = set()

# A step's receipt, as step metadata.
ReceiptMetadata = dict[str, Union[int, str]]


class StepFacts(NamedTuple):
    """What a step hands over: (name without `ZENML_OTEL_`, value) pairs, in order, values
    None when unknown; and the `otel` log store's configuration, if the store is one."""

    values: list[tuple[str, object]]
    otel_config: dict[str, object] | None


def degraded(what: str) -> None:
    """Says once per process, naming ZenML's release, what does not work with it."""
    if what in _said:
        return
    _said.add(what)
    try:
        import zenml

        release = f"ZenML {zenml.__version__}"
    except Exception:  # no ZenML to name: say so rather than fail
        release = "this ZenML"
    log.warning("zenml-otel: with %s, %s", release, what)


def step_context() -> StepContext:
    """The running step's context.

    Raises:
        RuntimeError: If no ZenML step is running.
    """
    from zenml import get_step_context

    try:
        return get_step_context()
    except RuntimeError:
        raise RuntimeError(
            "zenml_otel.run_rust_step()/handover_env()/relay_env() must be "
            "called inside a ZenML step (a function decorated with @step, "
            "while a pipeline runs it)"
        ) from None


def logging_context() -> LoggingContext | None:
    """The step's active ZenML `LoggingContext` (internal API), or None.

    With step logs disabled that is the enclosing (e.g. `client`) context.
    """
    try:
        from zenml.utils.logging_utils import LoggingContext

        return LoggingContext.get()
    except Exception:  # the API moved: no logs entry to name
        return None


def active_log_store() -> BaseLogStore | None:
    """The active stack's log store; None when there is no stack to ask."""
    from zenml.client import Client

    try:
        return Client().active_stack.log_store
    except Exception:  # no stack to ask: as a stack without a log store
        return None


def is_otel(store: object) -> bool:
    """Whether `store` is a log store of the `otel` flavor."""
    return getattr(store, "flavor", None) == "otel"


def _entity(name: str, entity: object) -> list[tuple[str, object]]:
    """An id/name pair, as ZenML's `get_run_log_metadata` computes it."""
    if entity is None:
        return []
    return [
        (name + "_ID", getattr(entity, "id", None)),
        (name + "_NAME", getattr(entity, "name", None)),
    ]


def _related(name: str, run: object) -> list[tuple[str, object]]:
    """`run.pipeline`, `.project`, `.stack` or `.user`, when known."""
    try:
        entity = getattr(run, name.lower())
    except Exception:  # e.g. a deleted user or stack: leave the pair out
        entity = None
    return _entity(name, entity)


def _otel_config(config: object) -> dict[str, object]:
    """The `otel` flavor's keys; attribute access resolves secret references."""
    values = {key: getattr(config, key, None) for key in CONFIG_KEYS}
    compression = values["compression"]
    values["compression"] = getattr(compression, "value", compression)
    headers = values["headers"]
    if isinstance(headers, dict):
        values["headers"] = {str(k): str(v) for k, v in headers.items()}
    return values


def step_facts() -> StepFacts:
    """The running step's run, step, logs entry, pipeline, project, stack, user and log store.

    Raises:
        RuntimeError: If no ZenML step is running.
    """
    context = step_context()
    run, step_run = context.pipeline_run, context.step_run
    values = _entity("PIPELINE_RUN", run) + _entity("STEP_RUN", step_run)
    for name in ("PIPELINE", "PROJECT", "STACK", "USER"):
        values += _related(name, run)
    log_model = getattr(logging_context(), "log_model", None)
    if log_model is not None:  # the logs entry the step's Python records go to
        values += [("LOG_ID", log_model.id), ("LOG_SOURCE", log_model.source)]
    store = active_log_store()
    config = None
    if store is not None:
        values += [("LOG_STORE_ID", store.id), ("LOG_STORE_NAME", store.name)]
        if is_otel(store):
            config = _otel_config(store.config)
    return StepFacts(values, config)


def emitter(context: LoggingContext) -> Emit:
    """Emits into `context`, the step's `LoggingContext`, from any thread.

    `LoggingContext.emit` (zenml/utils/logging_utils.py) swallows the log
    store's errors; the relay must know them to answer 500, so it calls the
    store the way that method does, through the context's origin. The step's
    own attributes (its origin's metadata) win over a record's.
    """
    store: BaseLogStore | None = getattr(context, "_log_store", None)
    if store is None or not hasattr(context, "_origin"):  # the internals moved
        degraded(
            "the relay stores through LoggingContext.emit, which hides the store's errors: "
            "a record the store refuses is not sent again"
        )

        def emit_public(record: logging.LogRecord, attributes: Mapping[str, Value]) -> None:
            context.emit(record, metadata(attributes))

        return emit_public

    def emit(record: logging.LogRecord, attributes: Mapping[str, Value]) -> None:
        origin = context._origin  # None once the step's logs are closed
        if origin is None:
            raise RuntimeError("the step's ZenML logging context has ended")
        own = getattr(origin, "metadata", {})
        store.emit(origin=origin, record=record, metadata=metadata(attributes, replaced=own))

    return emit


def flush_store() -> None:
    """Has the step's log store write out what it holds, waiting for it (internal API:
    the logging context's store; nothing when it moved)."""
    store = getattr(logging_context(), "_log_store", None)
    flush = getattr(store, "flush", None)
    if callable(flush):
        # The store's trouble is its own: the output goes on, as far as the store allows.
        with contextlib.suppress(Exception):
            flush(blocking=True)


def console_handlers() -> list[logging.Handler]:
    """ZenML's console handlers on the root logger: those writing to the terminal past its
    own `sys.stdout` wrapper (`zenml.logger._ZenMLStdoutStream`, on every release since 0.93),
    so what they print is not stored. None when ZenML's logging is off."""
    missing = "no ZenML console handler was found: the program's records are not printed"
    try:
        from zenml.logger import _ZenMLStdoutStream
    except ImportError:
        degraded(missing)
        return []
    handlers: list[logging.Handler] = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler)
        and isinstance(handler.stream, _ZenMLStdoutStream)
    ]
    if not handlers and not logging.getLogger().disabled:
        degraded(missing)
    return handlers


def attach_metadata(key: str, metadata: ReceiptMetadata) -> None:
    """Attaches `{key: metadata}` to the running step's metadata.

    Raises:
        Exception: Whatever ZenML raises when it cannot.
    """
    from zenml import log_metadata

    log_metadata(metadata={key: metadata})
