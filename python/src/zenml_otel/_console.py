"""The step's console: the program's records printed where ZenML prints the step's Python
records, formatted by ZenML's own console handlers, on the relay path and the direct path
alike.

The crate writes every record leaving its queue to a named pipe the helper hands over
(`ZENML_OTEL_CONSOLE_FIFO`, src/console.rs): varint-delimited OTLP `ScopeLogs`, one record
each. Each becomes the `logging.LogRecord` the relay would store (`to_log_record`) and goes to
ZenML's console handlers only, never to the step's log store: nothing is stored twice. Records
below ZenML's verbosity (`ZENML_LOGGING_VERBOSITY`, the root logger's level) are not printed,
as a Python logger would not print them either; they are stored as ever.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from . import _otlp
from ._output import Pump
from ._records import to_log_record

# A frame larger than this is not one the crate writes (its records are bounded far below):
# the stream is not ours, and the console stops reading it.
MAX_FRAME = 64 * 1024 * 1024

log = logging.getLogger("zenml_otel")


def console_pipe(directory: str, pump: Pump, handlers: Sequence[logging.Handler]) -> str:
    """A named pipe (0600) in `directory`, the helper's private one, read by `pump` into
    `handlers`; returns its path, for the program."""
    path = os.path.join(directory, "console")
    os.mkfifo(path, 0o600)
    read = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    held = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    os.set_blocking(read, True)
    pump.source(read, ConsoleFrames(handlers), held)
    return path


class ConsoleFrames:
    """Takes the pipe's bytes as they come and shows each whole record."""

    def __init__(self, handlers: Sequence[logging.Handler]) -> None:
        self._handlers = list(handlers)
        self._pending = bytearray()
        self._broken = False
        self.shown = 0

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        self._pending += chunk
        pos = 0
        try:
            while (frame := _frame(self._pending, pos)) is not None:
                data, pos = frame
                self._show(data)
        except ValueError as e:
            self._broken = True
            log.warning("zenml-otel: the program's console stream is unreadable (%s)", e)
        del self._pending[:pos]

    def end(self) -> None:
        """The pipe closed; a partial frame (the program was killed mid-write) is dropped."""
        self._pending.clear()

    def _show(self, data: bytes) -> None:
        try:
            scope = _otlp._scope_logs(data)
        except ValueError:
            return  # one record the decoder refuses: the relay counts it, the console skips it
        for decoded in scope["records"]:
            record = to_log_record(scope["name"], decoded)
            if logging.root.isEnabledFor(record.levelno):
                for handler in self._handlers:
                    handler.handle(record)
                self.shown += 1


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
