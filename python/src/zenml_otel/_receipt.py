"""The receipt: one line in the step's logs and the step's metadata (`zenml-otel: <program>`)
saying how the program exited, what the crate counted (`ZENML_OTEL_STATS_FILE`), what the
relay received and what the spool's delivery did.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Sequence
from typing import Union

from . import _zenml
from ._delivery import SpoolReport
from ._relay import Relay
from ._zenml import ReceiptMetadata

# The keys of the crate's stats file (src/batch/receipt.rs).
STATS_KEYS = (
    "emitted", "exported", "dropped", "failed", "rejected", "truncated", "recovered", "spooled",
)  # fmt: skip
# The relay's counts the receipt names when not zero.
_RELAY_PROBLEMS = (
    "rejected_requests", "failed_requests", "broken_requests", "timed_out_requests",
    "refused_connections",
)  # fmt: skip
Command = Union[str, Sequence[str]]
log = logging.getLogger("zenml_otel")


def _read_stats(path: str) -> tuple[dict[str, int] | None, str]:
    """The program's stats (with its `handover_version`: 1 when it names none), or None and
    why not."""
    try:
        with open(path, encoding="utf-8") as file:
            raw: object = json.load(file)
    except FileNotFoundError:
        return None, "left no stats"
    except (OSError, ValueError) as e:
        return None, f"left unreadable stats ({e})"
    if not isinstance(raw, dict):
        return None, "left stats that are not a JSON object"
    stats = {k: v for k, v in raw.items() if k in STATS_KEYS and isinstance(v, int)}
    version = raw.get("handover_version")
    if stats:
        stats["handover_version"] = version if isinstance(version, int) else 1
    return stats, ""


def program(cmd: Command) -> str:
    """The program's name, for the receipt."""
    first = cmd.split()[0] if isinstance(cmd, str) and cmd.split() else cmd
    if not isinstance(first, str):
        first = str(first[0]) if len(first) else "?"
    return os.path.basename(str(first))


def _exit_text(returncode: int) -> str:
    if returncode >= 0:
        return f"exited {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def _stats_text(stats: dict[str, int] | None, missing: str) -> str:
    if stats is None:
        return missing
    text = (
        f"{stats.get('emitted', 0)} records emitted, {stats.get('exported', 0)} exported, "
        f"{stats.get('dropped', 0)} dropped, {stats.get('failed', 0)} failed"
    )
    extra = [f"{stats[k]} {k}" for k in ("rejected", "truncated") if stats.get(k)]
    if stats.get("spooled"):
        # Not delivered by the program; what its spool holds is delivered below.
        extra.append(f"{stats['spooled']} left in its spool")
    return ", ".join([text, *extra])


def _relay_text(relay: Relay | None) -> str:
    if relay is None:
        return ""
    counts = relay.counts
    text = f" (relay received {counts.get('received')}"
    problems = [f"{counts.get(k)} {k.replace('_', ' ')}" for k in _RELAY_PROBLEMS if counts.get(k)]
    return text + "".join(", " + p for p in problems) + ")"


def spool_text(report: SpoolReport | None) -> str:
    """The receipt's words on the spool; nothing when it was empty and whole."""
    if report is None or not (report.found or report.torn or report.corrupt or report.error):
        return ""
    if not report.found and report.error:
        text = f"; its spool was not read: {report.error}"
    else:
        text = f"; delivered {report.delivered} records from its spool{_spool_notes(report)}"
        if report.undelivered:
            text += f"; {report.undelivered} not delivered: {report.error}"
    if report.kept:
        text += f" (spool kept in {report.directory})"
    if report.unreadable_kept:
        text += f"; what it could not read is kept in {report.unreadable_kept}"
    return text


def _spool_notes(report: SpoolReport) -> str:
    skipped = (
        (report.duplicates, "already relayed", "already relayed"),
        (report.malformed, "malformed record skipped", "malformed records skipped"),
        (report.oversized, "record too large refused", "records too large refused"),
        (report.torn, "torn tail skipped", "torn tails skipped"),
        (report.corrupt, "unreadable segment skipped", "unreadable segments skipped"),
    )
    notes = [f"{n} {one if n == 1 else many}" for n, one, many in skipped if n]
    return f" ({', '.join(notes)})" if notes else ""


def _spool_metadata(report: SpoolReport | None) -> ReceiptMetadata:
    if report is None:
        return {}
    result: ReceiptMetadata = {"spool_delivered": report.delivered}
    counts = (
        ("found", report.found), ("duplicates", report.duplicates),
        ("malformed", report.malformed), ("torn", report.torn), ("corrupt", report.corrupt),
        ("oversized", report.oversized),
    )  # fmt: skip
    result.update((f"spool_{key}", count) for key, count in counts if count)
    if report.error:
        result["spool_error"] = report.error
    if report.kept:
        result["spool_kept"] = report.directory
    if report.unreadable_kept:
        result["spool_unreadable_kept"] = report.unreadable_kept
    return result


def receipt(
    cmd: Command,
    returncode: int,
    stats_file: str,
    relay: Relay | None,
    spool: SpoolReport | None = None,
) -> tuple[str, ReceiptMetadata, bool]:
    """The receipt line, its metadata, and whether all went well."""
    stats, missing = _read_stats(stats_file)
    line = (
        f"zenml-otel: {program(cmd)} {_exit_text(returncode)}: "
        f"{_stats_text(stats, missing)}{_relay_text(relay)}{spool_text(spool)}"
    )
    result: ReceiptMetadata = {"exit_code": returncode, "logs": "relay" if relay else "direct"}
    if stats:
        result.update(stats)
    else:  # none, or none of the keys: say why (blank when they were unknown)
        result["stats"] = missing
    if relay is not None:
        result["relay_received"] = relay.counts.get("received")
        result["relay_stored"] = relay.counts.get("relayed")
    result.update(_spool_metadata(spool))
    lost = any((stats or {}).get(k, 0) for k in ("dropped", "failed", "rejected"))
    # Kept segments that could not be read may hold records the step's logs lack.
    spool_ok = not (spool and (spool.error or spool.unreadable_kept))
    ok = returncode == 0 and stats is not None and not lost and spool_ok
    return line, result, ok


def log_receipt(name: str, line: str, metadata: ReceiptMetadata, ok: bool) -> None:
    """The receipt into the step's logs and, as `zenml-otel <name>`, its metadata."""
    log.log(logging.INFO if ok else logging.WARNING, line)
    try:
        _zenml.attach_metadata(f"zenml-otel {name}", metadata)
    except Exception as e:  # the step's metadata is a report: never fail the step on it
        log.warning("zenml-otel: could not attach the receipt as step metadata: %r", e)
