"""The handover: the `ZENML_OTEL_*` variables a step gives the program it starts, and the
environment the program starts with. The names are the crate's (`zenml_otel::handover`,
`src/config/env.rs`); python/tests/test_shared_constants.py checks both sides agree.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping

from . import _zenml

Env = dict[str, str]

PREFIX = "ZENML_OTEL_"
CONFIG_VARIABLE = PREFIX + "LOG_STORE_CONFIG"
CONFIG_FILE_VARIABLE = PREFIX + "LOG_STORE_CONFIG_FILE"
STATS_FILE_VARIABLE = PREFIX + "STATS_FILE"
SPOOL_VARIABLE = PREFIX + "SPOOL_DIR"
OWNER_FILE_VARIABLE = PREFIX + "OWNER_FILE"
VERSION_VARIABLE = PREFIX + "HANDOVER_VERSION"
CONSOLE_VARIABLE = PREFIX + "CONSOLE_FIFO"
# The handover this package speaks (the crate's `handover::VERSION`); 2 added the owner file
# and the version, 3 the console's pipe. Each side ignores what it does not know: see the
# crate's `handover` docs.
HANDOVER_VERSION = 3
# One process's variables: the program `run_rust_step` started, never its children (the
# crate lets only the process that claims the owner file read them) or a later program.
OWNED_VARIABLES = (STATS_FILE_VARIABLE, SPOOL_VARIABLE, OWNER_FILE_VARIABLE, CONSOLE_VARIABLE)
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
# elsewhere than the relay. Today's crate never reads the transport from them under a
# handover (issue 27); they are still removed for programs built against an older crate,
# which read them for fields the handed-over configuration leaves at their default (e.g. the
# protocol), and a program exporting to the relay on loopback needs none of them.
REDIRECTING_PREFIX = "OTEL_EXPORTER_OTLP_"
# The relay listens on loopback: whatever HTTP client the program uses, these never go
# through a proxy (added to NO_PROXY and no_proxy, which curl, reqwest, Go and Python honour).
RELAY_HOSTS = ("127.0.0.1", "localhost", "::1")

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
    env: Env = {VERSION_VARIABLE: str(HANDOVER_VERSION)}
    for name, value in facts.values:
        _put(env, name, value)
    if facts.otel_config is not None:
        env[CONFIG_VARIABLE] = json.dumps(facts.otel_config)
    return env


def child_env(handover: Mapping[str, str], base: Mapping[str, str] | None = None) -> Env:
    """`base` (default `os.environ`) without stale handover variables (a
    spool directory, stats file and owner file are one process's, never
    inherited), plus `handover`; with a configuration handed over, also
    without the other configuration variable (the crate refuses both) and,
    for a relay, without the `OTEL_EXPORTER_OTLP_*` variables that the crate
    would read for what the configuration leaves at its default, and with the
    relay's loopback hosts in `NO_PROXY`/`no_proxy`."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if k not in HANDOVER_VARIABLES and k not in (*OWNED_VARIABLES, VERSION_VARIABLE)
    }
    config = handover.get(CONFIG_VARIABLE) or handover.get(CONFIG_FILE_VARIABLE)
    if config is not None:
        env.pop(CONFIG_FILE_VARIABLE, None)
    if is_relay_config(config):
        env = {k: v for k, v in env.items() if not k.startswith(REDIRECTING_PREFIX)}
        _bypass_proxies(env)
    env.update(handover)
    return env


def _bypass_proxies(env: Env) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in env.get(name, "").split(",") if h.strip()]
        env[name] = ",".join([*hosts, *(h for h in RELAY_HOSTS if h not in hosts)])


@contextlib.contextmanager
def private_dir() -> Iterator[str]:
    """A directory of this user's alone (0700) for one program's handover files; removed,
    with what is in it, when the `with` ends."""
    directory = tempfile.mkdtemp(prefix="zenml-otel-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def write_private(path: str, text: str) -> None:
    """Creates `path` (0600; never through a link, never over an existing file) with `text`."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(path, flags, 0o600), "w", encoding="utf-8") as file:
        file.write(text)


@contextlib.contextmanager
def config_in_file(env: Env) -> Iterator[None]:
    """Moves the handed-over configuration out of `env` into a private file
    (`ZENML_OTEL_LOG_STORE_CONFIG_FILE`): it holds the relay's secret or the `otel` store's
    headers, which the environment would show in `/proc/PID/environ` and pass to every
    descendant for as long as it lives; the file is gone when the `with` (the call) ends."""
    text = env.pop(CONFIG_VARIABLE, None)
    if text is None:
        yield
        return
    relay = is_relay_config(text)
    with private_dir() as directory:
        path = os.path.join(directory, "config.json")
        write_private(path, text)
        env[CONFIG_FILE_VARIABLE] = path
        if relay:  # for `child_env` of a process started with this environment
            add_relay_config(path)
        try:
            yield
        finally:
            if relay:
                remove_relay_config(path)


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
