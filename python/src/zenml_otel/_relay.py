"""The relay: a loopback OTLP/HTTP receiver that hands each record of a program's exports to
the step's logs (through an `Emit`) before answering the request.

Protobuf bodies, identity or gzip, behind a per-relay bearer secret; the crate's exporter
retries what the relay answers with a 503 (a store that failed mid-request: what it stored is
in the relay's ledger and skipped on the retry), and the spool covers what it never sent. The
HTTP side (connections, deadlines, the checks before a body is taken) is `_relay_http`.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import secrets
import threading
import zlib
from collections.abc import Sequence
from typing import TypeVar, Union

from . import _handover
from ._console import Console
from ._ledger import MINE, PENDING, Claim, Ledger, digest
from ._otlp import DecodedRecord, decode_log_record, encoded_records
from ._records import Emit, to_log_record

# LOGS_PATH and HttpError are also this module's (the delivery and `python -m zenml_otel` use them).
from ._relay_http import LOGS_PATH as LOGS_PATH
from ._relay_http import HttpError as HttpError
from ._relay_http import RelayServer

MAX_BODY_BYTES = 64 * 1024 * 1024
# How long a request waits for its records that another request is still storing (the first
# copy, when the program re-sent it after its export timeout) before it answers 503.
PENDING_WAIT_SECONDS = 2.0
# The Retry-After of a 503: the crate retries a 503 (never a 500) no sooner, and its spool
# keeps the records meanwhile.
RETRY_AFTER_SECONDS = 1


class Counts:
    """What a relay did, for the receipt (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, int] = {
            "requests": 0, "received": 0, "relayed": 0, "blank": 0,
            "rejected_requests": 0, "failed_requests": 0, "broken_requests": 0,
            "timed_out_requests": 0, "refused_connections": 0, "metrics_requests": 0,
        }  # fmt: skip

    def add(self, **deltas: int) -> None:
        with self._lock:
            for key, delta in deltas.items():
                self.values[key] += delta

    def get(self, key: str) -> int:
        with self._lock:
            return self.values[key]


# A record to store: its scope's name, the record, its digest in the ledger.
Item = tuple[str, DecodedRecord, Union[int, None]]

_Ordered = TypeVar("_Ordered", tuple[str, DecodedRecord], Item)


def in_logged_order(records: Sequence[_Ordered]) -> list[_Ordered]:
    """A request's records in the order they were logged: by time (the
    observed time when a record has none), ties in request order.

    The crate's encoder, like the SDKs' exporters, groups a request's records
    by scope, and ZenML's artifact log store stamps entries as they come, so
    the relay's order is the dashboard's. A record without any time keeps its
    place after the record before it."""
    keys, last = [], 0
    for item in records:
        record = item[1]
        last = record["time_unix_nano"] or record["observed_time_unix_nano"] or last
        keys.append(last)
    order = sorted(range(len(records)), key=keys.__getitem__)  # stable
    return [records[i] for i in order]


@dataclasses.dataclass
class Stored:
    """What `Relay.store` did: records stored, records stored before (by an
    earlier copy), and why it stopped, if it did (a 503 to answer)."""

    stored: int = 0
    duplicates: int = 0
    error: HttpError | None = None


def retry_later(text: str) -> HttpError:
    """A retryable answer: the crate sends the request again, and its spool keeps
    what the relay did not store (a 500 is final: acknowledged, the tail lost)."""
    return HttpError(503, text, RETRY_AFTER_SECONDS)


def _gunzip(body: bytes, limit: int) -> bytes:
    """gzip (every member) to at most `limit` bytes."""
    out, data = bytearray(), body
    try:
        while data:
            inflater = zlib.decompressobj(wbits=31)
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise HttpError(413, f"body larger than {limit} bytes unpacked")
            if not inflater.eof:
                raise HttpError(400, "truncated gzip body")
            data = inflater.unused_data
    except zlib.error as e:
        raise HttpError(400, f"malformed gzip body: {e}") from None
    return bytes(out)


def unpack(body: bytes, encoding: str, limit: int) -> bytes:
    """A body in its `Content-Encoding` (identity or gzip), unpacked to at most `limit` bytes.

    Raises:
        HttpError: 400 malformed, 413 too large, 415 another encoding.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return _gunzip(body, limit)
    raise HttpError(415, f"Content-Encoding {encoding!r}: only identity and gzip")


class Relay:
    """Receives a program's OTLP/HTTP logs on 127.0.0.1 and emits each record
    through `emit` before answering, and shows it on `console` once stored;
    `start()`/`close()`, or `with`."""

    def __init__(
        self, emit: Emit, max_body_bytes: int = MAX_BODY_BYTES, console: Console | None = None
    ) -> None:
        self.emit = emit
        self.console = console
        self.max_body_bytes = max_body_bytes
        self.secret = secrets.token_urlsafe(32)
        self.counts = Counts()
        self.ledger = Ledger()
        self._closed = threading.Event()
        self._server = RelayServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="zenml-otel-relay",
            daemon=True,
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{LOGS_PATH}"

    def config(self) -> dict[str, object]:
        """The handover configuration that points the crate at this relay."""
        return {
            "endpoint": self.endpoint,
            "headers": {"authorization": f"Bearer {self.secret}"},
            "compression": "gzip",
            "protocol": "http/protobuf",
        }

    def config_json(self) -> str:
        return json.dumps(self.config())

    def start(self) -> Relay:
        _handover.add_relay_config(self.config_json())
        self._thread.start()
        return self

    def close(self) -> None:
        """Stops listening; a request still arriving gets no records in."""
        _handover.remove_relay_config(self.config_json())
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def authorized(self, header: str | None) -> bool:
        expected = f"Bearer {self.secret}".encode()
        return hmac.compare_digest((header or "").encode(), expected)

    def accept(self, body: bytes, encoding: str) -> None:
        """Decodes a request body and stores its records, in the order logged,
        each once (see `store`).

        Raises:
            HttpError: 400 malformed, 413 too large, 415 encoding, 503 when
                ZenML did not take a record, another request is still storing
                some, or the relay is closed.
        """
        try:
            encoded = encoded_records(unpack(body, encoding, self.max_body_bytes))
            items = [
                (scope_name, record, digest(scope_name, data, record))
                for scope_name, data in encoded
                for record in [decode_log_record(data)]
            ]
        except ValueError as e:
            raise HttpError(400, f"malformed ExportLogsServiceRequest: {e}") from None
        self.counts.add(received=len(items))
        error = self.store(in_logged_order(items), PENDING_WAIT_SECONDS).error
        if error is not None:
            raise error

    def store(self, items: Sequence[Item], wait_seconds: float) -> Stored:
        """Stores the records not stored yet, in order, and waits up to
        `wait_seconds` for those another caller is storing. Stops at the first
        record ZenML does not take: those before it are stored and remembered,
        so a retry skips them; the rest is given back for a retry to store."""
        claims = self.ledger.claim([d for _, _, d in items])
        pending: list[Claim] = []
        done: list[Claim] = []  # settled together, once this call ends
        result = Stored()
        shown: list[logging.LogRecord] = []  # relayed: for the console, once stored
        try:
            for (scope_name, record, _), claim in zip(items, claims):
                if claim.kind == PENDING:
                    pending.append(claim)
                elif claim.kind == MINE:
                    log_record = self._emit_one(scope_name, record)
                    done.append(claim)
                    result.stored += 1
                    if log_record is not None:
                        shown.append(log_record)
                else:
                    result.duplicates += 1
        except HttpError as e:
            result.error = e
        finally:
            self.counts.add(relayed=len(shown), blank=len(done) - len(shown))
            self.ledger.settle(done, stored=True)
            self.ledger.settle(claims, stored=False)  # after a failure: the rest is a retry's
            if self.console is not None:
                self.console.show(shown)
        if result.error is None and pending:
            if self.ledger.wait(pending, wait_seconds):
                result.duplicates += len(pending)
            else:
                result.error = retry_later("records of this request are still being stored")
        return result

    def _emit_one(self, scope_name: str, record: DecodedRecord) -> logging.LogRecord | None:
        """Stores a record: the `LogRecord` stored, or None for a blank one (ZenML stores no
        blank messages either)."""
        if self._closed.is_set():
            raise retry_later("the relay is closed: the step's logs are done")
        log_record = to_log_record(scope_name, record)
        if not log_record.getMessage().strip():
            return None
        try:
            self.emit(log_record, record["attributes"])
        except Exception as e:
            raise retry_later(f"ZenML did not take a record: {e!r}") from None
        return log_record
