"""The handover: the `ZENML_OTEL_*` variables a step gives the program it starts, and the
environment the program starts with. The names are the crate's (`zenml_otel::handover`,
`src/config/env.rs`); python/tests/test_shared_constants.py checks both sides agree.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping

from . import _zenml

Env = dict[str, str]

PREFIX = "ZENML_OTEL_"
CONFIG_VARIABLE = PREFIX + "LOG_STORE_CONFIG"
CONFIG_FILE_VARIABLE = PREFIX + "LOG_STORE_CONFIG_FILE"
STATS_FILE_VARIABLE = PREFIX + "STATS_FILE"
SPOOL_VARIABLE = PREFIX + "SPOOL_DIR"
HANDOVER_VARIABLES = tuple(
    PREFIX + name
    for name in (
        "PIPELINE_RUN_ID", "PIPELINE_RUN_NAME", "STEP_RUN_ID", "STEP_RUN_NAME",
        "LOG_ID", "LOG_SOURCE", "PIPELINE_ID", "PIPELINE_NAME", "PROJECT_ID",
        "PROJECT_NAME", "STACK_ID", "STACK_NAME", "USER_ID", "USER_NAME",
        "LOG_STORE_ID", "LOG_STORE_NAME", "LOG_STORE_CONFIG",
    )
)  # fmt: skip
# Variables through which an inherited environment could send the program's exports
# elsewhere than the relay (the crate reads them for fields the handed-over configuration
# leaves at their default, e.g. the protocol).
REDIRECTING_PREFIX = "OTEL_EXPORTER_OTLP_"

# The handover configurations of the relays alive in this process: a child started with one
# gets no OTEL_EXPORTER_OTLP_* variables (see `child_env`).
_LIVE_CONFIGS: set[str] = set()
_LIVE_LOCK = threading.Lock()


def _put(env: Env, name: str, value: object) -> None:
    """Sets `ZENML_OTEL_<name>` to `str(value)` unless the value is unknown."""
    text = None if value is None else str(value)
    if text is not None and text.strip():
        env[PREFIX + name] = text


def handover_env() -> Env:
    """The `ZENML_OTEL_*` variables for the current step; unknown ones left out.

    With an `otel` log store they hold its configuration (the direct path);
    `relay_env()` gives the variables for either path.

    Raises:
        RuntimeError: If called outside a running ZenML step.
    """
    facts = _zenml.step_facts()
    env: Env = {}
    for name, value in facts.values:
        _put(env, name, value)
    if facts.otel_config is not None:
        env[CONFIG_VARIABLE] = json.dumps(facts.otel_config)
    return env


def child_env(handover: Mapping[str, str], base: Mapping[str, str] | None = None) -> Env:
    """`base` (default `os.environ`) without stale handover variables (a
    spool directory and stats file are one process's, never inherited), plus
    `handover`; with a configuration handed over, also without the
    `ZENML_OTEL_LOG_STORE_CONFIG_FILE`/`OTEL_EXPORTER_OTLP_*` variables that
    the crate would read for what the configuration leaves at its default."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if k not in HANDOVER_VARIABLES and k not in (STATS_FILE_VARIABLE, SPOOL_VARIABLE)
    }
    if CONFIG_VARIABLE in handover:
        env.pop(CONFIG_FILE_VARIABLE, None)  # the Rust side refuses both
    if is_relay_config(handover.get(CONFIG_VARIABLE)):
        env = {k: v for k, v in env.items() if not k.startswith(REDIRECTING_PREFIX)}
    env.update(handover)
    return env


def add_relay_config(text: str) -> None:
    """Registers a live relay's handover configuration (see `child_env`)."""
    with _LIVE_LOCK:
        _LIVE_CONFIGS.add(text)


def remove_relay_config(text: str) -> None:
    """Forgets a closed relay's handover configuration."""
    with _LIVE_LOCK:
        _LIVE_CONFIGS.discard(text)


def is_relay_config(text: str | None) -> bool:
    """Whether `text` is the handover configuration of a live relay."""
    with _LIVE_LOCK:
        return text in _LIVE_CONFIGS
