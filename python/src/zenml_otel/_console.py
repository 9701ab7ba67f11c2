"""The step's console: the program's records printed where ZenML prints the step's Python
records, formatted by ZenML's own console handlers, never stored by them.

On the relay path the relay prints each record once it is stored (`Console.show`, from the
`logging.LogRecord` it stored: no second decode; a record stored twice never happens, so
none is printed twice). On the direct path the helper never sees the records: the crate
writes every record leaving its queue to a named pipe the helper hands over
(`ZENML_OTEL_CONSOLE_FIFO`, src/console.rs), varint-delimited OTLP `ScopeLogs`, one record
each, which `ConsoleFrames` decodes and shows. Records below ZenML's verbosity
(`ZENML_LOGGING_VERBOSITY`, the root logger's level) are not printed, as a Python logger
would not print them either; they are stored as ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

from . import _otlp
from ._output import Pump
from ._records import to_log_record

# A frame larger than this is not one the crate writes (its records are bounded far below):
# the stream is not ours, and the console stops reading it.
MAX_FRAME = 64 * 1024 * 1024

log = logging.getLogger("zenml_otel")


class Console:
    """Prints records through ZenML's console handlers (thread-safe: each handler locks)."""

    def __init__(self, handlers: Sequence[logging.Handler]) -> None:
        self._handlers = list(handlers)

    def show(self, records: Iterable[logging.LogRecord]) -> None:
        shown = [record for record in records if logging.root.isEnabledFor(record.levelno)]
        if not shown:
            return
        for handler in self._handlers:
            if isinstance(handler, logging.StreamHandler):
                _write_all(handler, shown)
            else:
                for record in shown:
                    if record.levelno >= handler.level:
                        handler.handle(record)


def _write_all(handler: logging.StreamHandler[Any], records: Sequence[logging.LogRecord]) -> None:
    """`StreamHandler.emit` of each record (its filters, its formatter, its terminator), in one
    write and one flush. A write per record hands the GIL to the store's threads each time: in
    the relay that made a record's printing 43 µs, against 10 µs alone
    (bench/python/relay_throughput.py)."""
    text = []
    for record in records:
        if record.levelno < handler.level:
            continue
        passed: object = handler.filter(record)  # bool, or on Python 3.12 a record
        if not passed:
            continue
        if isinstance(passed, logging.LogRecord):
            record = passed
        try:
            text.append(handler.format(record) + handler.terminator)
        except Exception:
            handler.handleError(record)
    if not text:
        return
    with handler.lock or contextlib.nullcontext():
        try:
            handler.stream.write("".join(text))
            handler.flush()
        except Exception:
            handler.handleError(records[-1])


def console_pipe(directory: str, pump: Pump, console: Console) -> str:
    """A named pipe (0600) in `directory`, the helper's private one, read by `pump` into
    `console`; returns its path, for the program."""
    path = os.path.join(directory, "console")
    os.mkfifo(path, 0o600)
    read = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    held = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    os.set_blocking(read, True)
    pump.source(read, ConsoleFrames(console), held)
    return path


class ConsoleFrames:
    """Takes the pipe's bytes as they come and shows each whole record."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._pending = bytearray()
        self._broken = False

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        self._pending += chunk
        pos = 0
        records: list[logging.LogRecord] = []  # the chunk's, printed at once
        try:
            while (frame := _frame(self._pending, pos)) is not None:
                data, pos = frame
                records += _records_in(data)
        except ValueError as e:
            self._broken = True
            log.warning("zenml-otel: the program's console stream is unreadable (%s)", e)
        del self._pending[:pos]
        self._console.show(records)

    def end(self) -> None:
        """The pipe closed; a partial frame (the program was killed mid-write) is dropped."""
        self._pending.clear()


def _records_in(frame: bytes) -> list[logging.LogRecord]:
    try:
        scope = _otlp._scope_logs(frame)
    except ValueError:
        return []  # one record the decoder refuses: the relay counts it, the console skips it
    return [to_log_record(scope["name"], decoded) for decoded in scope["records"]]


def _frame(buffer: bytearray, pos: int) -> tuple[bytes, int] | None:
    """The whole frame at `pos` and the position after it, or None if it is not all there."""
    try:
        size, used = _otlp.read_varint(bytes(buffer[pos : pos + 10]), 0)
    except ValueError:
        if len(buffer) - pos >= 10:
            raise
        return None  # the length itself is still coming
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes")
    start = pos + used
    if len(buffer) - start < size:
        return None
    return bytes(buffer[start : start + size]), start + size
