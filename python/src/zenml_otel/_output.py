"""The program's output, into the step: its plain stdout and stderr (`println!`, a `fmt`
layer, a panic message, a C library's warning) and its console pipe (`_console.py`), read by
one thread while it runs.

Plain lines go into the step's logs as a Python step's `print` output goes: written to ZenML's
wrapped `sys.stdout` / `sys.stderr`, as `print` writes (the line, then its newline), so ZenML
stores each once with the level it gives that stream and shows it on the console once. One
thread for every stream, because ZenML's wrapper turns its logging context off while it stores
a write: a second thread writing meanwhile would not be stored. In order within each stream;
between streams and the records, in the order they arrive (best effort by time). Bounded
memory: read a chunk at a time, lines longer than `MAX_LINE` characters split, invalid UTF-8
replaced; after every `FLUSH_BYTES` handed to ZenML the store is flushed (its processor keeps
up to 100,000 records in memory, 5 s at a time), and meanwhile the program waits on its full
pipe.

A stream the caller gave `subprocess.run` (`stdout=`, `stderr=`, `capture_output=`) is left as
the caller set it.
"""

from __future__ import annotations

import codecs
import contextvars
import os
import selectors
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

# The longest line written at once; a longer one goes in pieces of this many characters.
MAX_LINE = 8192
# Bytes read from a pipe at a time.
CHUNK = 65536
# Bytes of plain output handed to ZenML between two flushes of its store.
FLUSH_BYTES = 8 * 1024 * 1024
# How long, after the program exited, what it wrote is still read: a child it left running
# keeps the pipes open, and the step must go on.
DRAIN_SECONDS = 2.0


class Sink(Protocol):
    def feed(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...


class Backlog:
    """What was written to ZenML since its store was last flushed."""

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._bytes = 0

    def add(self, n: int) -> None:
        self._bytes += n
        if self._bytes >= FLUSH_BYTES:
            self._bytes = 0
            self._flush()


class Lines:
    """Writes whole lines to a stream (looked up at each write: ZenML's wrapped one)."""

    def __init__(self, stream: Callable[[], Any], backlog: Backlog) -> None:
        self._stream = stream
        self._backlog = backlog
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, chunk: bytes) -> None:
        text = self._partial + self._decoder.decode(chunk)
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._write(line)
        while len(self._partial) > MAX_LINE:
            self._write(self._partial[:MAX_LINE])
            self._partial = self._partial[MAX_LINE:]

    def end(self) -> None:
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        if rest:
            self._write(rest)

    def _write(self, line: str) -> None:
        for start in range(0, max(len(line), 1), MAX_LINE):
            piece = line[start : start + MAX_LINE]
            stream = self._stream()
            stream.write(piece)
            stream.write("\n")
            self._backlog.add(len(piece) + 1)


class Pump:
    """One thread reading every source until each ends, or until `DRAIN_SECONDS` after
    `finish()`."""

    def __init__(self) -> None:
        self._sources: list[tuple[int, Sink]] = []
        self._held: list[int] = []  # write ends kept open while the program runs
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None

    def pipe(self, sink: Sink) -> int:
        """A new pipe read into `sink`; returns the write end, for the program."""
        read, write = os.pipe()
        self._sources.append((read, sink))
        self._held.append(write)
        return write

    def source(self, fd: int, sink: Sink, held: int) -> None:
        """Reads `fd` into `sink`; `held`, a write end of the same pipe, keeps it from
        ending before the program has opened its own."""
        self._sources.append((fd, sink))
        self._held.append(held)

    def start(self) -> None:
        # ZenML finds the step's logging context in a context variable.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="zenml-otel-output", daemon=True
        )
        self._thread.start()

    def finish(self) -> None:
        """The program exited: reads what is left, for `DRAIN_SECONDS` at most."""
        for fd in self._held:
            os.close(fd)
        self._held.clear()
        self._deadline = time.monotonic() + DRAIN_SECONDS
        if self._thread is not None:
            self._thread.join(DRAIN_SECONDS + 1.0)

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for fd, sink in self._sources:
                selector.register(fd, selectors.EVENT_READ, sink)
            while selector.get_map():
                if self._deadline is not None and time.monotonic() > self._deadline:
                    break
                for key, _ in selector.select(timeout=0.1):
                    self._read(selector, key)
            for key in list(selector.get_map().values()):
                self._close(selector, key)

    def _read(self, selector: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        try:
            chunk = os.read(key.fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            key.data.feed(chunk)
        else:
            self._close(selector, key)

    @staticmethod
    def _close(selector: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        selector.unregister(key.fd)
        os.close(key.fd)
        key.data.end()


def _stream(name: str) -> Callable[[], Any]:
    return lambda: getattr(sys, name)


def plain_output(pump: Pump, kwargs: dict[str, Any], flush: Callable[[], None]) -> None:
    """Has the program's stdout and stderr go through `pump` into the step, unless the
    caller gave `subprocess.run` its own (`kwargs` are its arguments, changed here); `flush`
    writes out what ZenML's store holds."""
    if kwargs.get("capture_output"):
        return
    backlog = Backlog(flush)
    for name in ("stdout", "stderr"):
        if name not in kwargs:
            kwargs[name] = pump.pipe(Lines(_stream(name), backlog))
