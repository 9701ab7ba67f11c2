"""The relay's HTTP side: a server on 127.0.0.1 with a thread per connection, at most
`MAX_CONNECTIONS` at once, each read bounded by a deadline, and the handler that checks a
request's secret, path, type and size before the relay (`_relay.Relay`) takes its body.

Any local process can connect before it shows the secret, so what a connection may hold is
bounded here: a thread (the cap; beyond it a connection is closed at once, which the crate
retries), and time: a request's head must arrive within `HEAD_SECONDS`, its body within
`BODY_SECONDS` (a client sending a byte now and then, slowloris, would otherwise hold its
thread for every socket timeout in turn).
"""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedReader, RawIOBase
from typing import Any, Protocol

LOGS_PATH = "/v1/logs"
# Taken and answered with an empty ExportMetricsServiceResponse, nothing recorded: a program
# with the crate's metrics on exports them to the logs' collector, the relay (issue 28).
METRICS_PATH = "/v1/metrics"
# A rejected request's body up to this size is read before answering.
DISCARD_BYTES = 1024 * 1024
# Connections served at once. A program's crate exports on at most 3 connections (its sender
# lanes); `relay_env` may serve several programs at once.
MAX_CONNECTIONS = 32
# From a connection's start (or, on a kept-alive connection, from its next request's first
# byte) to the end of the request's head.
HEAD_SECONDS = 5.0
# From the end of a request's head to the end of its body (64 MiB at most, over loopback).
BODY_SECONDS = 30.0
# How long a kept-alive connection may wait for its next request (the crate's client drops an
# idle connection after 15 s). Only a connection whose last request had the secret and was
# answered 200 is kept alive: every other answer closes it.
IDLE_SECONDS = 30.0
# Bound on writing an answer (a few bytes: only a client that reads nothing meets it).
WRITE_SECONDS = 10.0


class HttpError(Exception):
    """An answer other than 200; a 503 says when to retry."""

    def __init__(self, status: int, text: str, retry_after: int | None = None) -> None:
        super().__init__(text)
        self.status, self.text, self.retry_after = status, text, retry_after


class _Counter(Protocol):
    def add(self, **deltas: int) -> None: ...


class Receiver(Protocol):
    """What the handler needs of the relay."""

    @property
    def max_body_bytes(self) -> int: ...

    @property
    def counts(self) -> _Counter: ...

    def authorized(self, header: str | None) -> bool: ...

    def accept(self, body: bytes, encoding: str) -> None: ...


class RelayServer(ThreadingHTTPServer):
    """The relay's HTTP server on 127.0.0.1: a thread per connection, at most
    `max_connections` at once."""

    daemon_threads = True
    # The listen backlog: a burst of connections waits there for the accept loop (the
    # default, 5, drops the rest's handshakes, which their clients retry a second later).
    request_queue_size = 64

    def __init__(self, receiver: Receiver, max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__(("127.0.0.1", 0), _RelayHandler)
        self.receiver = receiver
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread for the connection, or, when all slots are taken, the
        connection closed at once (counted): no thread for it."""
        if not self._slots.acquire(blocking=False):
            self.receiver.counts.add(refused_connections=1)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread started: it would never release its slot
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """A connection that failed outside a request's answer (e.g. the
        client went away): counted, never printed into the step's output."""
        self.receiver.counts.add(broken_requests=1)


class _DeadlineReader(RawIOBase):
    """The connection's reads, each bounded by its handler's current deadline (a socket
    timeout bounds one read only), and the first byte of a kept-alive connection's next
    request noted (its head's deadline starts there)."""

    def __init__(self, connection: socket.socket, handler: _RelayHandler) -> None:
        super().__init__()
        self._connection, self._handler = connection, handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        handler = self._handler
        left = handler.deadline - time.monotonic()
        if left <= 0:
            handler.timed_out()
            raise socket.timeout("the request's deadline passed")
        self._connection.settimeout(left)
        try:
            size = self._connection.recv_into(buffer)
        except socket.timeout:
            handler.timed_out()
            raise
        if size and handler.idle:
            handler.idle = False
            handler.deadline = time.monotonic() + HEAD_SECONDS
        return size


class _RelayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the crate reuses connections
    timeout = IDLE_SECONDS  # a fallback: `_DeadlineReader` sets each read's own
    server: RelayServer
    # When the current read must be over (monotonic seconds), and whether the connection is
    # between requests (waiting for the next one's first byte).
    deadline: float
    idle: bool

    def setup(self) -> None:
        super().setup()
        self.deadline, self.idle = time.monotonic() + HEAD_SECONDS, False
        self.rfile = BufferedReader(_DeadlineReader(self.connection, self))

    def handle(self) -> None:
        """Requests until one closes the connection; between two, the
        connection is idle up to `IDLE_SECONDS`."""
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self.deadline, self.idle = time.monotonic() + IDLE_SECONDS, True
            self.handle_one_request()

    def timed_out(self) -> None:
        """A deadline passed: counted unless the connection was only idle."""
        if not self.idle:
            self.server.receiver.counts.add(timed_out_requests=1)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the default prints each request to the step's stderr."""

    def do_POST(self) -> None:
        self.deadline = time.monotonic() + BODY_SECONDS
        receiver = self.server.receiver
        receiver.counts.add(requests=1)
        self._body_read = False
        try:
            path, body = self._checked_body(receiver)
            if body is None:
                return  # the client went away mid-body
            if path == METRICS_PATH:
                receiver.counts.add(metrics_requests=1)
            else:
                receiver.accept(body, self.headers.get("Content-Encoding", ""))
        except HttpError as e:
            key = "failed_requests" if e.status >= 500 else "rejected_requests"
            receiver.counts.add(**{key: 1})
            self._discard_body()
            self._answer(e.status, e.text.encode(), "text/plain; charset=utf-8", e.retry_after)
            return
        # An empty ExportLogsServiceResponse (or ExportMetricsServiceResponse): all taken.
        self._answer(200, b"", "application/x-protobuf")

    def _discard_body(self) -> None:
        """Reads a small unread body, so the client sees the answer rather
        than a connection reset."""
        if self._body_read:
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return
        if 0 < length <= DISCARD_BYTES:
            self.rfile.read(length)

    def _checked_body(self, receiver: Receiver) -> tuple[str, bytes | None]:
        """The path and body of an authorized logs or metrics request; the body None when
        cut off."""
        if not receiver.authorized(self.headers.get("Authorization")):
            raise HttpError(401, "missing or wrong bearer token")
        path = self.path.split("?", 1)[0]
        if path not in (LOGS_PATH, METRICS_PATH):
            raise HttpError(404, f"only {LOGS_PATH} (and {METRICS_PATH}) is served here")
        content_type = self.headers.get("Content-Type", "application/x-protobuf")
        if content_type.split(";")[0].strip().lower() != "application/x-protobuf":
            raise HttpError(415, f"Content-Type {content_type!r}: only application/x-protobuf")
        length = self._content_length()
        if length > receiver.max_body_bytes:
            raise HttpError(413, f"body larger than {receiver.max_body_bytes} bytes")
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) < length:
            receiver.counts.add(broken_requests=1)
            self.close_connection = True
            return path, None
        return path, body

    def _content_length(self) -> int:
        text = self.headers.get("Content-Length")
        if text is None:
            raise HttpError(411, "Content-Length required")
        try:
            length = int(text)
        except ValueError:
            length = -1
        if length < 0:
            raise HttpError(400, f"bad Content-Length {text!r}")
        return length

    def _answer(
        self, status: int, body: bytes, content_type: str, retry_after: int | None = None
    ) -> None:
        if status != 200:
            self.close_connection = True  # the request's body may be unread
        self.connection.settimeout(WRITE_SECONDS)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
