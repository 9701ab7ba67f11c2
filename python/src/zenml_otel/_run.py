"""Running the program: choosing the path of its records, handing over, waiting for it, then
delivering its spool and writing the receipt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

from . import _spool, _zenml
from ._console import Console, console_pipe
from ._delivery import deliver_spool
from ._handover import (
    CONFIG_VARIABLE,
    CONSOLE_VARIABLE,
    OWNER_FILE_VARIABLE,
    SPOOL_VARIABLE,
    STATS_FILE_VARIABLE,
    Env,
    child_env,
    config_in_file,
    handover_env,
    private_dir,
)
from ._output import Pump, plain_output
from ._receipt import Command, log_receipt, program, receipt, spool_text
from ._relay import Relay

LOGS_MODES = ("auto", "relay", "direct")
log = logging.getLogger("zenml_otel")


def _relays(logs: str, store: object, context: object) -> bool:
    if logs not in LOGS_MODES:
        raise ValueError(f"logs={logs!r}: expected one of {', '.join(LOGS_MODES)}")
    if logs == "relay" and context is None:
        raise RuntimeError("logs='relay' needs the step's ZenML logging context: there is none")
    # No logging context (step logs off entirely): nothing to relay into.
    return logs == "relay" or (logs == "auto" and not _zenml.is_otel(store) and context is not None)


@contextlib.contextmanager
def handover(logs: str, console: Console | None = None) -> Iterator[tuple[Env, Relay | None]]:
    """This step's handover variables, and the relay they point at, if any (showing what it
    stores on `console`)."""
    env = handover_env()
    context = _zenml.logging_context()
    if not _relays(logs, _zenml.active_log_store(), context) or context is None:
        yield env, None
        return
    with Relay(_zenml.emitter(context), console=console) as relay:
        env[CONFIG_VARIABLE] = relay.config_json()
        yield env, relay


@contextlib.contextmanager
def relay_env(logs: str = "auto") -> Iterator[Env]:
    """The handover variables for processes the caller starts itself.

        with relay_env() as env:
            subprocess.Popen(cmd, env={**os.environ, **env}).wait()

    When relaying (see the package docs for `logs`), the relay lives until the
    `with` ends and takes exports from any number of processes; wait for them
    inside it. Start them with `child_env(env)` to drop inherited variables
    that could send their exports elsewhere.

    No spool directory is handed over (`ZENML_OTEL_SPOOL_DIR`): one directory
    belongs to one live process (the crate locks it), and what a killed
    process leaves is delivered only by `run_rust_step`. Give a process one of
    its own to have it replay its spool when started again.

    Raises:
        RuntimeError: If called outside a running ZenML step.
        ValueError: If `logs` is not "auto", "relay" or "direct".
    """
    with handover(logs) as (env, _relay), config_in_file(env):
        yield env


def run_rust_step(cmd: Command, logs: str = "auto", console: bool = True, **kwargs: Any) -> int:
    """Runs `cmd` with this step's handover variables and waits for it.

    `logs` picks the path of the program's records (see the package docs):
    `"auto"` (relay unless the log store's flavor is `otel`), `"relay"` or
    `"direct"`. With `console`, each record is also printed on the step's
    console as ZenML prints the step's Python records. The program's stdout
    and stderr lines go into the step's logs as a Python step's `print` output
    does, unless `kwargs` give `stdout`, `stderr` or `capture_output`.
    `kwargs` go to `subprocess.run` (`check` is ignored: a failure always
    raises); with `env`, that mapping is the base instead of `os.environ`. The
    receipt goes to the step's logs and metadata.

    Returns:
        The exit code, 0.

    Raises:
        RuntimeError: If called outside a running ZenML step.
        ValueError: If `logs` is none of the above.
        subprocess.CalledProcessError: If the program exits non-zero or is
            killed; it holds the output and stderr when they were captured.
    """
    kwargs.pop("check", None)
    base: Mapping[str, str] | None = kwargs.pop("env", None)
    handlers = _zenml.console_handlers() if console else []
    shown = Console(handlers) if handlers else None
    with handover(logs, shown) as (handed_over, relay), private_dir() as directory:
        env = child_env(handed_over, base)
        stats_file = env[STATS_FILE_VARIABLE] = os.path.join(directory, "stats.json")
        # Created by the first process that makes a layer: only it uses the stats file and
        # the spool (the program, not its children).
        env[OWNER_FILE_VARIABLE] = os.path.join(directory, "owner")
        spool_dir = _spool.new_spool_dir()
        if spool_dir is not None:
            env[SPOOL_VARIABLE] = spool_dir
        pump = Pump()
        plain_output(pump, kwargs, _zenml.flush_store)
        if shown is not None and relay is None:  # the relay shows what it stores itself
            env[CONSOLE_VARIABLE] = console_pipe(directory, pump, shown)
        with config_in_file(env):
            result = _run_program(cmd, env, kwargs, pump, spool_dir, handed_over, relay)
        spool = deliver_spool(spool_dir, handed_over, relay) if spool_dir else None
        line, metadata, ok = receipt(cmd, result.returncode, stats_file, relay, spool)
    log_receipt(program(cmd), line, metadata, ok)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, cmd, output=result.stdout, stderr=result.stderr
        )
    return result.returncode


def _run_program(
    cmd: Command,
    env: Env,
    kwargs: dict[str, Any],
    pump: Pump,
    spool_dir: str | None,
    handed_over: Env,
    relay: Relay | None,
) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run`, with `pump` reading the program's output meanwhile; when that
    raises (e.g. `timeout=` killed the program, or Ctrl-C, `KeyboardInterrupt`, or a
    `SystemExit` from a signal handler), the spool is still delivered and said so before the
    error goes on."""
    pump.start()
    try:
        return subprocess.run(cmd, env=env, **kwargs)
    except BaseException as e:
        pump.finish()
        if spool_dir is not None:
            text = spool_text(deliver_spool(spool_dir, handed_over, relay))
            log.warning("zenml-otel: %s failed (%r)%s", program(cmd), e, text)
        raise
    finally:
        pump.finish()
