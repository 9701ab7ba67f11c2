"""Delivering what a program's spool still holds, by the path its records took: into the
step's logs through the relay (skipping those it already stored), or to the `otel` store's
collector as OTLP/HTTP requests with the configuration the program was handed (each request
within the crate's size limit, redirects never followed). What the spool held that could not
be read is kept (`_spool.keep_unreadable`) before the spool is removed.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence

from ._handover import CONFIG_VARIABLE
from ._ledger import digest
from ._otlp import decode_log_record, decode_resource_logs, export_request
from ._relay import LOGS_PATH, Item, Relay, in_logged_order
from ._spool import SpooledRecord, Unreadable, keep_unreadable, read_spool, spool_lock

# Records per OTLP request when delivering to the `otel` store's collector ...
SPOOL_BATCH = 1000
# ... and most bytes per request (encoded, before compression): the crate's default
# `max_export_batch_bytes` (src/config/model.rs; test_shared_constants.py checks it), within
# an OpenTelemetry Collector's default limits. A record too large for it is sent alone.
MAX_REQUEST_BYTES = 4_000_000
# What a request's framing may add: a field's tag and its length varint (1 + at most 10
# bytes) per level of nesting.
_FIELD_ROOM = 11
# Attempts per request to the collector (a restarting collector gets a second and third
# chance, as the crate's own retries would give it).
SPOOL_ATTEMPTS = 3
# How long delivery into the step waits for records a request of the program's is still
# storing (a store slower than the program's export timeout).
SPOOL_WAIT_SECONDS = 60.0


@dataclasses.dataclass
class SpoolReport:
    """What delivering a spool did, for the receipt."""

    directory: str
    found: int = 0  # records read from the spool
    delivered: int = 0
    duplicates: int = 0  # already relayed while the program ran
    malformed: int = 0  # records that do not decode: skipped
    torn: int = 0
    corrupt: int = 0
    oversized: int = 0  # records too large for any request that the collector refused
    error: str = ""  # why some or all were not delivered
    kept: bool = False  # the directory was left in place (see `error`)
    # Where the segments that could not be read whole were copied before the spool was
    # removed ("" when there were none, or the spool itself was kept).
    unreadable_kept: str = ""

    @property
    def undelivered(self) -> int:
        return self.found - self.delivered - self.duplicates - self.malformed


def deliver_spool(directory: str, handover: Mapping[str, str], relay: Relay | None) -> SpoolReport:
    """Delivers what the program's spool still holds, to where its records
    went (the relay's step logs, or the `otel` store's collector), then removes
    the spool. Kept, and said why, when that fails. Never raises."""
    report = SpoolReport(directory)
    try:
        with spool_lock(directory) as ours:
            if not ours:
                report.error, report.kept = "a live process still holds it", True
                return report
            unreadable = _deliver_locked(directory, handover, relay, report)
            if unreadable and not report.kept:
                _keep(unreadable, directory, report)
    except Exception as e:  # a report, never the step's failure
        report.error, report.kept = f"{e!r}", True
    if not report.kept:
        shutil.rmtree(directory, ignore_errors=True)
    return report


def _deliver_locked(
    directory: str, handover: Mapping[str, str], relay: Relay | None, report: SpoolReport
) -> list[Unreadable]:
    """Delivers the spool's records; the segments it could not read whole."""
    spooled = read_spool(directory)
    report.found, report.torn, report.corrupt = (
        len(spooled.records), spooled.torn, spooled.corrupt,
    )  # fmt: skip
    if not spooled.records:
        return spooled.unreadable
    if relay is not None:
        _deliver_to_step(spooled.records, relay, report)
    else:
        _deliver_to_collector(spooled.records, handover.get(CONFIG_VARIABLE), report)
    # A later process with this directory would replay what is left.
    report.kept = report.undelivered > 0
    return spooled.unreadable


def _keep(unreadable: list[Unreadable], directory: str, report: SpoolReport) -> None:
    """Copies what could not be read beside the spool (for `run_rust_step`'s spools, the
    system's temporary directory); when that fails, the whole spool stays instead: a
    segment not read is never deleted."""
    try:
        report.unreadable_kept = keep_unreadable(unreadable, os.path.dirname(directory))
    except OSError as e:
        report.error = f"its unreadable segments could not be kept elsewhere: {e}"
        report.kept = True


def _deliver_to_step(records: list[SpooledRecord], relay: Relay, report: SpoolReport) -> None:
    """The records into the step's logs, in the order logged, as the relay
    stores a request's, except those it stored or is storing (the spool is
    at-least-once; a request the program gave up on may still be in a slow
    store: waited for)."""
    items: list[Item] = []
    for item in records:
        try:
            record = decode_log_record(item.record)
        except ValueError:
            report.malformed += 1
            continue
        items.append((item.scope, record, digest(item.scope, item.record, record)))
    stored = relay.store(in_logged_order(items), SPOOL_WAIT_SECONDS)
    report.delivered, report.duplicates = stored.stored, stored.duplicates
    if stored.error is not None:
        report.error = stored.error.text


def _deliver_to_collector(
    records: list[SpooledRecord], config_text: str | None, report: SpoolReport
) -> None:
    """The records, in order, as OTLP/HTTP requests to the `otel` store's
    collector, with the handed-over configuration the program used."""
    config: object = json.loads(config_text) if config_text else None
    if not isinstance(config, dict) or not config.get("endpoint"):
        report.error = "no otel log store configuration to deliver them with"
        return
    good = [r for r in records if _decodes(r)]
    report.malformed += len(records) - len(good)
    for batch in _batches(good, MAX_REQUEST_BYTES):
        body = export_request(batch)
        try:
            _post_to_collector(config, body)
        except _Refused as e:
            report.error = str(e)
            if e.status == 413 and len(batch) == 1 and len(body) > MAX_REQUEST_BYTES:
                report.oversized += 1  # too large for this collector alone: on to the rest
                continue
            return  # the collector is not taking them: the rest would fail too
        except Exception as e:  # e.g. a TLS file that does not load
            report.error = str(e) or repr(e)
            return
        report.delivered += len(batch)


def _batches(records: Sequence[SpooledRecord], limit: int) -> Iterator[list[SpooledRecord]]:
    """Consecutive runs of `records`, each at most `SPOOL_BATCH` records whose request is
    at most `limit` bytes (as the crate cuts a batch, `src/otlp/limit.rs`); a record too
    large for any request is a batch of its own. The size counted is an upper bound of
    `export_request`'s: each record's field, and a ResourceLogs and ScopeLogs where one
    starts (a tag and a longest length varint at every level)."""
    batch: list[SpooledRecord] = []
    size = 0
    for record in records:
        cost = _cost(batch[-1] if batch else None, record)
        if batch and (size + cost > limit or len(batch) == SPOOL_BATCH):
            yield batch
            batch, size, cost = [], 0, _cost(None, record)
        batch.append(record)
        size += cost
    if batch:
        yield batch


def _cost(before: SpooledRecord | None, record: SpooledRecord) -> int:
    """What `record` adds to a request after `before` (None: it starts the request)."""
    cost = len(record.record) + _FIELD_ROOM
    scope = len(record.scope.encode()) + 3 * _FIELD_ROOM  # ScopeLogs, its scope, the name
    if before is None or before[:2] != record[:2]:
        return cost + scope + len(record.resource) + len(record.schema_url) + _FIELD_ROOM
    return cost + (scope if before.scope != record.scope else 0)


def _decodes(item: SpooledRecord) -> bool:
    """Whether the record and its resource decode: one bad record must not
    make the collector refuse a whole batch."""
    try:
        decode_log_record(item.record)
        decode_resource_logs(item.resource + item.schema_url)
    except ValueError:
        return False
    return True


def _collector_url(endpoint: str) -> str:
    """As the crate resolves an OTLP/HTTP endpoint: `/v1/logs` appended
    unless the URL ends in it."""
    base = endpoint.strip().rstrip("/")
    return base if base.endswith(LOGS_PATH) else base + LOGS_PATH


def _text(config: Mapping[str, object], key: str) -> str | None:
    """A configuration value as text; None when unset or empty."""
    value = config.get(key)
    return str(value) if value else None


def _ssl_context(config: Mapping[str, object]) -> ssl.SSLContext | None:
    ca_file, cert_file = _text(config, "certificate_file"), _text(config, "client_certificate_file")
    if not (ca_file or cert_file):
        return None
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        context.load_cert_chain(cert_file, _text(config, "client_key_file"))
    return context


class _Refused(RuntimeError):
    """The collector did not take a request; `status` is its answer's (0: none)."""

    def __init__(self, text: str, status: int) -> None:
        super().__init__(text)
        self.status = status


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follows no redirect: urllib's default would send a 301/302/303 POST on as a GET to
    wherever the answer points, with every header (the collector's credentials) and the
    records gone. A 3xx is the collector's final answer, as it is to the crate."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> None:
        return None


def _opener(context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def _post_to_collector(config: Mapping[str, object], body: bytes) -> None:
    """POSTs one request, retrying what a collector may answer differently
    a moment later (429, 502-504, no connection).

    Raises:
        _Refused: If the collector did not take it.
    """
    configured = config.get("headers")
    headers = {}
    if isinstance(configured, dict):
        headers = {str(k): str(v) for k, v in configured.items()}
    headers["Content-Type"] = "application/x-protobuf"
    if str(config.get("compression") or "").lower() == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(
        _collector_url(str(config["endpoint"])), data=body, headers=headers, method="POST"
    )
    millis = config.get("export_timeout_millis")
    timeout = (millis if isinstance(millis, (int, float)) and millis else 10_000) / 1000
    opener = _opener(_ssl_context(config))
    for attempt in range(SPOOL_ATTEMPTS):
        error = _post_once(opener, request, timeout)
        if error is None:
            return
        text, status, retry = error
        if not retry or attempt + 1 == SPOOL_ATTEMPTS:
            raise _Refused(text, status)
        time.sleep(0.5 * 2**attempt)


def _post_once(
    opener: urllib.request.OpenerDirector, request: urllib.request.Request, timeout: float
) -> tuple[str, int, bool] | None:
    """None when the collector took the request; else why not, the status (0: no answer),
    and whether trying again could help."""
    try:
        with opener.open(request, timeout=timeout) as answer:
            answer.read()
        return None
    except urllib.error.HTTPError as e:
        text = f"{request.full_url} answered {e.code} {e.reason}"
        if 300 <= e.code < 400:
            text += f" (redirects are not followed; Location: {_shown(e.headers.get('Location'))})"
        return text, e.code, e.code in (429, 502, 503, 504)
    except (urllib.error.URLError, OSError) as e:
        return f"{request.full_url}: {getattr(e, 'reason', e)}", 0, True


def _shown(url: str | None) -> str:
    """A URL for a message: without userinfo, query or fragment, which may hold secrets."""
    if not url:
        return "none"
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
