"""Delivering what a program's spool still holds, by the path its records took: into the
step's logs through the relay (skipping those it already stored), or to the `otel` store's
collector as OTLP/HTTP requests with the configuration the program was handed.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

from ._handover import CONFIG_VARIABLE
from ._ledger import digest
from ._otlp import decode_log_record, decode_resource_logs, export_request
from ._relay import LOGS_PATH, Item, Relay, in_logged_order
from ._spool import SpooledRecord, read_spool, spool_lock

# Records per OTLP request when delivering to the `otel` store's collector.
SPOOL_BATCH = 1000
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
    error: str = ""  # why some or all were not delivered
    kept: bool = False  # the directory was left in place (see `error`)

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
            _deliver_locked(directory, handover, relay, report)
    except Exception as e:  # a report, never the step's failure
        report.error, report.kept = f"{e!r}", True
    if not report.kept:
        shutil.rmtree(directory, ignore_errors=True)
    return report


def _deliver_locked(
    directory: str, handover: Mapping[str, str], relay: Relay | None, report: SpoolReport
) -> None:
    spooled = read_spool(directory)
    report.found, report.torn, report.corrupt = (
        len(spooled.records), spooled.torn, spooled.corrupt,
    )  # fmt: skip
    if not spooled.records:
        return
    if relay is not None:
        _deliver_to_step(spooled.records, relay, report)
    else:
        _deliver_to_collector(spooled.records, handover.get(CONFIG_VARIABLE), report)
    # A later process with this directory would replay what is left.
    report.kept = report.undelivered > 0


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
        items.append((item.scope, record, digest(item.scope, record)))
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
    for start in range(0, len(good), SPOOL_BATCH):
        batch = good[start : start + SPOOL_BATCH]
        try:
            _post_to_collector(config, export_request(batch))
        except Exception as e:
            report.error = str(e) or repr(e)
            return  # the collector is not taking them: the rest would fail too
        report.delivered += len(batch)


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


def _post_to_collector(config: Mapping[str, object], body: bytes) -> None:
    """POSTs one request, retrying what a collector may answer differently
    a moment later (429, 502-504, no connection).

    Raises:
        RuntimeError: If the collector did not take it.
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
    for attempt in range(SPOOL_ATTEMPTS):
        error = _post_once(request, timeout, _ssl_context(config))
        if error is None:
            return
        text, retry = error
        if not retry or attempt + 1 == SPOOL_ATTEMPTS:
            raise RuntimeError(text)
        time.sleep(0.5 * 2**attempt)


def _post_once(
    request: urllib.request.Request, timeout: float, context: ssl.SSLContext | None
) -> tuple[str, bool] | None:
    """None when the collector took the request; else why not, and whether
    trying again could help."""
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            answer.read()
        return None
    except urllib.error.HTTPError as e:
        return f"{request.full_url} answered {e.code} {e.reason}", e.code in (429, 502, 503, 504)
    except (urllib.error.URLError, OSError) as e:
        return f"{request.full_url}: {getattr(e, 'reason', e)}", True
