"""Decoded OTLP records as the `logging.LogRecord`s a Python logger would have made.

The relay and the spool's delivery hand ZenML these records and their metadata, so a Rust
record is stored like a Python one: time, level, message, code location and attributes kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Container, Mapping
from typing import Callable, Union

from ._otlp import DecodedRecord, Value

# A metadata value: OTel attribute values are scalars.
Scalar = Union[str, bool, int, float]
Metadata = dict[str, Scalar]
# Takes one record and its OTLP attributes (the step's metadata for it: see `metadata`) into
# the step's logs; raises when ZenML did not take it.
Emit = Callable[[logging.LogRecord, Mapping[str, Value]], None]

# Python has no TRACE level: TRACE (1-4) goes in as DEBUG.
_LEVELS_BY_NUMBER = (
    (4, logging.DEBUG), (8, logging.DEBUG), (12, logging.INFO),
    (16, logging.WARNING), (20, logging.ERROR), (24, logging.CRITICAL),
)  # fmt: skip
_LEVELS_BY_TEXT = {
    "TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
    "WARN": logging.WARNING, "WARNING": logging.WARNING,
    "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
}  # fmt: skip
# Metadata values as they are; checked inline (not by `_attribute_value`), as a record's
# attributes are many.
_SCALAR_TYPES = (str, bool, int, float)
# The attributes that are not the event's own fields.
_NOT_FIELDS = ("zenml.", "code.")
# The OTLP attributes that become the LogRecord's code location.
CODE_FILE, CODE_LINE, CODE_NAMESPACE = "code.file.path", "code.line.number", "code.namespace"


def _level(severity_number: int, severity_text: str) -> int:
    for upper, level in _LEVELS_BY_NUMBER:
        if 1 <= severity_number <= upper:
            return level
    return _LEVELS_BY_TEXT.get(severity_text.strip().upper(), logging.INFO)


def _message(body: Value) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    return json.dumps(body, sort_keys=True)


def _fields_text(attributes: Mapping[str, Value]) -> str:
    """The event's own fields, after the message as `tracing`'s fmt layer
    prints them: ZenML's artifact log store keeps a record's message and code
    location but none of its other attributes."""
    return "".join([
        f" {key}={value if isinstance(value, _SCALAR_TYPES) else _attribute_value(value)}"
        for key, value in attributes.items()
        if not key.startswith(_NOT_FIELDS)
    ])  # fmt: skip


def _attribute_value(value: Value) -> Scalar:
    """OTel attribute values are scalars: anything else goes in as JSON text."""
    if isinstance(value, _SCALAR_TYPES):
        return value
    return json.dumps(value, sort_keys=True)


def _set_time(record: logging.LogRecord, nanos: int) -> None:
    """The record's own time, as `logging` computes it from `time.time_ns()`."""
    if nanos <= 0:
        return  # unknown: keep the time the relay received it
    record.created = nanos / 1e9
    record.msecs = (nanos % 1_000_000_000) // 1_000_000 + 0.0
    start: float = getattr(logging, "_startTime", record.created)
    record.relativeCreated = (record.created - start) * 1000


def metadata(attributes: Mapping[str, Value], replaced: Container[str] = ()) -> Metadata:
    """A record's attributes but those `replaced` (the step's own, which ZenML puts on each
    of its records), with the code location under the keys ZenML's artifact log store shows
    (`code.filepath`, `code.lineno`, `code.function`:
    zenml/log_stores/artifact/artifact_log_exporter.py)."""
    result = {
        k: v if isinstance(v, _SCALAR_TYPES) else _attribute_value(v)
        for k, v in attributes.items()
        if k not in replaced
    }
    for theirs, ours in (
        ("code.filepath", CODE_FILE),
        ("code.lineno", CODE_LINE),
        ("code.function", CODE_NAMESPACE),
    ):
        if ours in result:
            result[theirs] = result[ours]
    return result


def to_log_record(scope_name: str, record: DecodedRecord) -> logging.LogRecord:
    """A decoded OTLP record as the `logging.LogRecord` a Python logger named
    after its scope (the Rust target) would have made."""
    attributes = record["attributes"]
    line = attributes.get(CODE_LINE)
    namespace = attributes.get(CODE_NAMESPACE)
    result = logging.LogRecord(
        name=scope_name or "rust",
        level=_level(record["severity_number"], record["severity_text"]),
        pathname=str(attributes.get(CODE_FILE) or ""),
        lineno=line if isinstance(line, int) else 0,
        msg=_message(record["body"]) + _fields_text(attributes),
        args=None,
        exc_info=None,
    )
    if isinstance(namespace, str) and namespace:
        result.module = namespace
    _set_time(result, record["time_unix_nano"] or record["observed_time_unix_nano"])
    return result
