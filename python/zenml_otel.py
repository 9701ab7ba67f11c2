"""Run a Rust program using `zenml-otel` as part of a ZenML step, logs included.

ZenML captures a step's logs only at the Python level (`logging` and the
step's `sys.stdout`/`sys.stderr`), and sets no environment variable with the
step's ids for the processes a step starts. Call `run_rust_step` inside a step
instead of `subprocess.run`:

    from zenml import step
    from zenml_otel import run_rust_step

    @step
    def train() -> None:
        run_rust_step(["./target/release/trainer", "--epochs", "3"])

The program needs nothing but `ZenmlOtelLayer::new(OtelLogStoreConfig::default())`.
Its records reach the step's logs by one of two paths, chosen by `logs=`:

- `"direct"`: the program exports to the active stack's `otel` log store
  itself, with that store's configuration handed over in
  `ZENML_OTEL_LOG_STORE_CONFIG`. ZenML cannot read an `otel` store back, so
  that is the only way there.
- `"relay"`: for the duration of the call, a receiver on 127.0.0.1 takes the
  program's OTLP/HTTP exports (protobuf, identity or gzip, behind a per-call
  bearer secret) and hands each record to the step's ZenML logging context as a
  `logging.LogRecord` (time, level, message, code location, attributes kept).
  The step's log store stores them with the step's Python records, so ZenML's
  dashboard shows them for any store that can be read back (`artifact`, the
  default; `datadog`; custom flavors).
- `"auto"` (default): direct when the log store's flavor is `otel`, else relay.

Either way the records carry the same `zenml.*` attributes (run, step, logs
entry, pipeline, project, stack, user, log store) as the step's own records,
handed over in `ZENML_OTEL_*` variables. When the program ends, one line in the
step's logs and the step's metadata (`zenml-otel: <program>`) say how it exited
and what the crate counted (`ZENML_OTEL_STATS_FILE`): records emitted,
exported, dropped, failed.

Each program also gets a spool directory of its own (`ZENML_OTEL_SPOOL_DIR`,
a fresh temporary directory): the crate writes every record there before the
`tracing` call returns. When a killed program (SIGKILL, OOM) or one whose
exports failed leaves records in it, they are delivered after it ends, by the
same path (relay: into the step's logs, skipping those the relay already
stored; direct: posted to the `otel` store's collector), and the receipt says
how many (`read_spool` reads a spool).

`relay_env()` is the context manager for code that starts processes itself;
`handover_env()` returns just the handover variables (direct path only).
`python zenml_otel.py decode < body.bin` prints an OTLP/HTTP logs request
body (plain or gzip) as JSON (see `decode_export_request`).

Put this file's directory on `PYTHONPATH`, copy the file next to the pipeline,
or `pip install` the directory holding it. It needs nothing beyond ZenML
(tested with 0.98.0) and the standard library.
"""

import collections
import contextlib
import dataclasses
import errno
import gzip
import hmac
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import signal
import ssl
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import (
    Any,
    BinaryIO,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

__all__ = [
    "HANDOVER_VARIABLES",
    "child_env",
    "decode_export_request",
    "handover_env",
    "read_spool",
    "relay_env",
    "run_rust_step",
]

PREFIX = "ZENML_OTEL_"
CONFIG_VARIABLE = PREFIX + "LOG_STORE_CONFIG"
CONFIG_FILE_VARIABLE = PREFIX + "LOG_STORE_CONFIG_FILE"
STATS_FILE_VARIABLE = PREFIX + "STATS_FILE"
HANDOVER_VARIABLES = tuple(
    PREFIX + name
    for name in (
        "PIPELINE_RUN_ID", "PIPELINE_RUN_NAME", "STEP_RUN_ID", "STEP_RUN_NAME",
        "LOG_ID", "LOG_SOURCE", "PIPELINE_ID", "PIPELINE_NAME", "PROJECT_ID",
        "PROJECT_NAME", "STACK_ID", "STACK_NAME", "USER_ID", "USER_NAME",
        "LOG_STORE_ID", "LOG_STORE_NAME", "LOG_STORE_CONFIG",
    )
)
# The `otel` flavor's configuration keys (zenml/log_stores/otel/otel_flavor.py).
CONFIG_KEYS = (
    "service_name", "service_version", "max_queue_size",
    "schedule_delay_millis", "max_export_batch_size", "export_timeout_millis",
    "endpoint", "headers", "certificate_file", "client_key_file",
    "client_certificate_file", "compression",
)
# Variables through which an inherited environment could send the program's
# exports elsewhere than the relay (the crate reads them for fields the
# handed-over configuration leaves at their default, e.g. the protocol).
REDIRECTING_PREFIX = "OTEL_EXPORTER_OTLP_"
LOGS_MODES = ("auto", "relay", "direct")
LOGS_PATH = "/v1/logs"
MAX_BODY_BYTES = 64 * 1024 * 1024
# A rejected request's body up to this size is read before answering.
DISCARD_BYTES = 1024 * 1024
# Most nested AnyValue arrays/kvlists decoded; deeper input is malformed (and
# would otherwise end in a RecursionError).
MAX_DEPTH = 64

Env = Dict[str, str]
Json = Any
log = logging.getLogger("zenml_otel")


# --- the handover variables -------------------------------------------------


def _step_context() -> Any:
    from zenml import get_step_context

    try:
        return get_step_context()
    except RuntimeError:
        raise RuntimeError(
            "zenml_otel.run_rust_step()/handover_env()/relay_env() must be "
            "called inside a ZenML step (a function decorated with @step, "
            "while a pipeline runs it)"
        ) from None


def _put(env: Env, name: str, value: Any) -> None:
    """Sets `ZENML_OTEL_<name>` to `str(value)` unless the value is unknown."""
    text = None if value is None else str(value)
    if text is not None and text.strip():
        env[PREFIX + name] = text


def _put_entity(env: Env, name: str, entity: Any) -> None:
    """An id/name pair, as ZenML's `get_run_log_metadata` computes it."""
    if entity is not None:
        _put(env, name + "_ID", entity.id)
        _put(env, name + "_NAME", entity.name)


def _put_related(env: Env, name: str, run: Any) -> None:
    """`run.pipeline`, `.project`, `.stack` or `.user`, when known."""
    try:
        entity = getattr(run, name.lower())
    except Exception:  # e.g. a deleted user or stack: leave the pair out
        entity = None
    _put_entity(env, name, entity)


def _put_run(env: Env, context: Any) -> None:
    run, step_run = context.pipeline_run, context.step_run
    _put_entity(env, "PIPELINE_RUN", run)
    _put_entity(env, "STEP_RUN", step_run)
    for name in ("PIPELINE", "PROJECT", "STACK", "USER"):
        _put_related(env, name, run)


def _logging_context() -> Any:
    """The step's active ZenML `LoggingContext` (internal API), or None.

    With step logs disabled that is the enclosing (e.g. `client`) context.
    """
    try:
        from zenml.utils.logging_utils import LoggingContext

        return LoggingContext.get()
    except Exception:  # the API moved: no logs entry to name
        return None


def _put_logs_entry(env: Env, context: Any) -> None:
    """The logs entry the step's Python records go to."""
    log_model = getattr(context, "log_model", None)
    if log_model is not None:
        _put(env, "LOG_ID", log_model.id)
        _put(env, "LOG_SOURCE", log_model.source)


def _config_json(config: Any) -> str:
    """The `otel` flavor's keys; attribute access resolves secret references."""
    values = {key: getattr(config, key, None) for key in CONFIG_KEYS}
    compression = values["compression"]
    values["compression"] = getattr(compression, "value", compression)
    if values["headers"] is not None:
        values["headers"] = {str(k): str(v) for k, v in values["headers"].items()}
    return json.dumps(values)


def _active_log_store() -> Any:
    from zenml.client import Client

    try:
        return Client().active_stack.log_store
    except Exception:  # no stack to ask: as a stack without a log store
        return None


def _is_otel(store: Any) -> bool:
    return getattr(store, "flavor", None) == "otel"


def _put_log_store(env: Env, store: Any) -> None:
    if store is None:
        return
    _put(env, "LOG_STORE_ID", store.id)
    _put(env, "LOG_STORE_NAME", store.name)
    if _is_otel(store):
        env[CONFIG_VARIABLE] = _config_json(store.config)


def handover_env() -> Env:
    """The `ZENML_OTEL_*` variables for the current step; unknown ones left out.

    With an `otel` log store they hold its configuration (the direct path);
    `relay_env()` gives the variables for either path.

    Raises:
        RuntimeError: If called outside a running ZenML step.
    """
    context = _step_context()
    env: Env = {}
    _put_run(env, context)
    _put_logs_entry(env, _logging_context())
    _put_log_store(env, _active_log_store())
    return env


# --- a pure-Python reader of OTLP logs requests (protobuf) ------------------

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
Field = Tuple[int, int, Union[int, bytes]]


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    """The varint at `pos` (at most 10 bytes, 64 bits kept) and the next pos."""
    if pos < len(data) and data[pos] < 0x80:  # keys and short lengths: most varints
        return data[pos], pos + 1
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
    raise ValueError("varint longer than 10 bytes")


def _take(data: bytes, pos: int, size: int) -> Tuple[bytes, int]:
    if size > len(data) - pos:
        raise ValueError("field runs past the end of its message")
    return data[pos : pos + size], pos + size


def _fields(data: bytes) -> Iterator[Field]:
    """(field number, wire type, value) of each field of one message."""
    pos = 0
    while pos < len(data):
        number, wire, value, pos = _field_at(data, pos)
        yield number, wire, value


def _field_at(data: bytes, pos: int) -> Tuple[int, int, Union[int, bytes], int]:
    """The field starting at `pos`: number, wire type, value, and where the next starts."""
    key, pos = _varint(data, pos)
    number, wire = key >> 3, key & 7
    if number == 0:
        raise ValueError("field number 0")
    value: Union[int, bytes]
    if wire == VARINT:
        value, pos = _varint(data, pos)
    elif wire == FIXED64:
        raw, pos = _take(data, pos, 8)
        value = struct.unpack("<Q", raw)[0]
    elif wire == FIXED32:
        raw, pos = _take(data, pos, 4)
        value = struct.unpack("<I", raw)[0]
    elif wire == LENGTH:
        size, pos = _varint(data, pos)
        value, pos = _take(data, pos, size)
    else:  # groups (3, 4: long deprecated, never in OTLP) and 6, 7
        raise ValueError(f"unsupported wire type {wire} (field {number})")
    return number, wire, value, pos


def _expect(wire: int, expected: int, number: int) -> None:
    if wire != expected:
        raise ValueError(f"field {number}: wire type {wire}, expected {expected}")


def _bytes(wire: int, value: Union[int, bytes], number: int) -> bytes:
    _expect(wire, LENGTH, number)
    assert isinstance(value, bytes)
    return value


def _int(wire: int, value: Union[int, bytes], number: int, expected: int) -> int:
    _expect(wire, expected, number)
    assert isinstance(value, int)
    return value


def _text(wire: int, value: Union[int, bytes], number: int) -> str:
    try:
        return _bytes(wire, value, number).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"field {number}: invalid UTF-8 ({e.reason})") from None


def _signed(value: int, bits: int) -> int:
    """Two's complement: proto int64/int32 arrive as 64-bit varints."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _any_value(data: bytes, depth: int) -> Json:
    """An AnyValue: str, bool, int, float, {"bytes": hex}, list, dict or None."""
    if depth > MAX_DEPTH:
        raise ValueError(f"values nested deeper than {MAX_DEPTH}")
    value: Json = None
    for number, wire, raw in _fields(data):
        if number == 1:
            value = _text(wire, raw, number)
        elif number == 2:
            value = _int(wire, raw, number, VARINT) != 0
        elif number == 3:
            value = _signed(_int(wire, raw, number, VARINT), 64)
        elif number == 4:
            bits = _int(wire, raw, number, FIXED64)
            value = struct.unpack("<d", struct.pack("<Q", bits))[0]
        elif number == 5:
            value = _array(_bytes(wire, raw, number), depth + 1)
        elif number == 6:
            value = _key_values(_bytes(wire, raw, number), 1, depth + 1)
        elif number == 7:
            value = {"bytes": _bytes(wire, raw, number).hex()}
    return value


def _array(data: bytes, depth: int) -> List[Json]:
    """ArrayValue{values=1}."""
    return [
        _any_value(_bytes(wire, raw, number), depth)
        for number, wire, raw in _fields(data)
        if number == 1
    ]


def _key_value(data: bytes, depth: int) -> Tuple[str, Json]:
    """KeyValue{key=1, value=2}."""
    key, value = "", None
    for number, wire, raw in _fields(data):
        if number == 1:
            key = _text(wire, raw, number)
        elif number == 2:
            value = _any_value(_bytes(wire, raw, number), depth)
    return key, value


# A step's records repeat the same handed-over attributes (the `zenml.*` ids and
# names, byte for byte): decoded once, then looked up by their bytes.
_KEY_VALUES: Dict[bytes, Tuple[str, Json]] = {}
_KEY_VALUES_KEPT = 4096


def _record_attribute(data: bytes) -> Tuple[str, Json]:
    """A record's KeyValue; scalar ones memoized by their encoding."""
    known = _KEY_VALUES.get(data)
    if known is not None:
        return known
    pair = _key_value(data, 0)
    if not isinstance(pair[1], (list, dict)):  # shared, so never a mutable value
        if len(_KEY_VALUES) >= _KEY_VALUES_KEPT:
            _KEY_VALUES.clear()
        _KEY_VALUES[data] = pair
    return pair


def _key_values(data: bytes, field: int, depth: int) -> Dict[str, Json]:
    """The repeated KeyValue `field` of a message, as a dict (last key wins)."""
    pairs = [
        _key_value(_bytes(wire, raw, number), depth)
        for number, wire, raw in _fields(data)
        if number == field
    ]
    return dict(pairs)


def _new_record() -> Dict[str, Json]:
    """A LogRecord's proto3 defaults, in the canonical form's key order."""
    return {
        "time_unix_nano": 0, "observed_time_unix_nano": 0,
        "severity_number": 0, "severity_text": "", "body": None,
        "attributes": {}, "event_name": "", "trace_id": "", "span_id": "",
        "flags": 0, "dropped_attributes_count": 0,
    }


# LogRecord's fields: number -> (key, wire type, decoder of the raw value).
_RECORD_FIELDS: Dict[int, Tuple[str, int, Callable[[Any], Json]]] = {
    1: ("time_unix_nano", FIXED64, int),
    11: ("observed_time_unix_nano", FIXED64, int),
    2: ("severity_number", VARINT, lambda v: _signed(v, 32)),
    3: ("severity_text", LENGTH, lambda v: _text(LENGTH, v, 3)),
    5: ("body", LENGTH, lambda v: _any_value(v, 0)),
    7: ("dropped_attributes_count", VARINT, lambda v: v & 0xFFFFFFFF),
    8: ("flags", FIXED32, int),
    9: ("trace_id", LENGTH, lambda v: v.hex()),
    10: ("span_id", LENGTH, lambda v: v.hex()),
    12: ("event_name", LENGTH, lambda v: _text(LENGTH, v, 12)),
}


# Field 6 (attributes), length-delimited: most of a record's fields.
_ATTRIBUTE_KEY = 6 << 3 | 2


def _log_record(data: bytes) -> Dict[str, Json]:
    record = _new_record()
    attributes = []
    pos = 0
    while pos < len(data):
        if data[pos] == _ATTRIBUTE_KEY:  # the hot path, without the general field reader
            size, start = _varint(data, pos + 1)
            value, pos = _take(data, start, size)
            attributes.append(_record_attribute(value))
            continue
        number, wire, raw, pos = _field_at(data, pos)
        if number == 6:
            attributes.append(_record_attribute(_bytes(wire, raw, number)))
        elif number in _RECORD_FIELDS:
            key, expected, decode = _RECORD_FIELDS[number]
            _expect(wire, expected, number)
            record[key] = decode(raw)
    record["attributes"] = dict(attributes)
    return record


def _scope_logs(data: bytes) -> Dict[str, Json]:
    """ScopeLogs{scope=1 InstrumentationScope{name=1, version=2}, log_records=2}."""
    scope: Dict[str, Json] = {"name": "", "version": "", "records": []}
    for number, wire, raw in _fields(data):
        if number == 1:
            for inner, inner_wire, inner_raw in _fields(_bytes(wire, raw, number)):
                if inner in (1, 2):
                    key = "name" if inner == 1 else "version"
                    scope[key] = _text(inner_wire, inner_raw, inner)
        elif number == 2:
            scope["records"].append(_log_record(_bytes(wire, raw, number)))
    return scope


def _resource_logs(data: bytes) -> Dict[str, Json]:
    """ResourceLogs{resource=1 Resource{attributes=1}, scope_logs=2}."""
    resource: Dict[str, Json] = {}
    scopes = []
    for number, wire, raw in _fields(data):
        if number == 1:
            resource = _key_values(_bytes(wire, raw, number), 1, 0)
        elif number == 2:
            scopes.append(_scope_logs(_bytes(wire, raw, number)))
    return {"resource": resource, "scopes": scopes}


def decode_export_request(body: bytes) -> List[Dict[str, Json]]:
    """Decodes an OTLP `ExportLogsServiceRequest` (protobuf, uncompressed).

    Returns one `{"resource": {key: value}, "scopes": [{"name", "version",
    "records": [...]}]}` per ResourceLogs; a record holds `time_unix_nano`,
    `observed_time_unix_nano`, `severity_number`, `severity_text`, `body`,
    `attributes` ({key: value}), `event_name`, `trace_id`/`span_id` (hex),
    `flags` and `dropped_attributes_count`, proto3 defaults when missing.
    Values: str, bool, int, float, `{"bytes": hex}`, list, dict, or None for
    an empty AnyValue. Unknown fields are skipped.

    Raises:
        ValueError: If the body is not such a message.
    """
    data = bytes(body)
    return [
        _resource_logs(_bytes(wire, raw, number))
        for number, wire, raw in _fields(data)
        if number == 1
    ]


# --- relayed records as Python logging records -------------------------------

# Python has no TRACE level: TRACE (1-4) goes in as DEBUG.
_LEVELS_BY_NUMBER = (
    (4, logging.DEBUG), (8, logging.DEBUG), (12, logging.INFO),
    (16, logging.WARNING), (20, logging.ERROR), (24, logging.CRITICAL),
)
_LEVELS_BY_TEXT = {
    "TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
    "WARN": logging.WARNING, "WARNING": logging.WARNING,
    "ERROR": logging.ERROR, "FATAL": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
}
# The OTLP attributes that become the LogRecord's code location.
CODE_FILE, CODE_LINE, CODE_NAMESPACE = (
    "code.file.path", "code.line.number", "code.namespace",
)


def _level(severity_number: int, severity_text: str) -> int:
    for upper, level in _LEVELS_BY_NUMBER:
        if 1 <= severity_number <= upper:
            return level
    return _LEVELS_BY_TEXT.get(severity_text.strip().upper(), logging.INFO)


def _message(body: Json) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    return json.dumps(body, sort_keys=True)


def _fields_text(attributes: Mapping[str, Json]) -> str:
    """The event's own fields, after the message as `tracing`'s fmt layer
    prints them: ZenML's artifact log store keeps a record's message and code
    location but none of its other attributes."""
    own = (
        (key, value) for key, value in attributes.items()
        if not key.startswith(("zenml.", "code."))
    )
    return "".join(f" {key}={_attribute_value(value)}" for key, value in own)


def _attribute_value(value: Json) -> Any:
    """OTel attribute values are scalars: anything else goes in as JSON text."""
    if isinstance(value, (str, bool, int, float)):
        return value
    return json.dumps(value, sort_keys=True)


def _set_time(record: logging.LogRecord, nanos: int) -> None:
    """The record's own time, as `logging` computes it from `time.time_ns()`."""
    if nanos <= 0:
        return  # unknown: keep the time the relay received it
    record.created = nanos / 1e9
    record.msecs = (nanos % 1_000_000_000) // 1_000_000 + 0.0
    start = getattr(logging, "_startTime", record.created)
    record.relativeCreated = (record.created - start) * 1000


def _metadata(attributes: Mapping[str, Json]) -> Dict[str, Any]:
    """A record's attributes, with the code location under the keys ZenML's
    artifact log store shows (`code.filepath`, `code.lineno`, `code.function`:
    zenml/log_stores/artifact/artifact_log_exporter.py)."""
    metadata = {k: _attribute_value(v) for k, v in attributes.items()}
    for theirs, ours in (
        ("code.filepath", CODE_FILE),
        ("code.lineno", CODE_LINE),
        ("code.function", CODE_NAMESPACE),
    ):
        if ours in metadata:
            metadata[theirs] = metadata[ours]
    return metadata


def to_log_record(scope_name: str, record: Mapping[str, Json]) -> logging.LogRecord:
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


# --- the relay: a loopback OTLP/HTTP receiver --------------------------------

# The handover configurations of the relays alive in this process: a child
# started with one gets no OTEL_EXPORTER_OTLP_* variables (see `child_env`).
_LIVE_CONFIGS: set = set()
_LIVE_LOCK = threading.Lock()

# An emitter takes one record and its metadata, and raises when ZenML did not
# take it.
Emit = Callable[[logging.LogRecord, Dict[str, Any]], None]


def _zenml_emitter(context: Any) -> Emit:
    """Emits into `context`, the step's `LoggingContext`, from any thread.

    `LoggingContext.emit` (zenml/utils/logging_utils.py) swallows the log
    store's errors; the relay must know them to answer 500, so it calls the
    store the way that method does, through the context's origin. The step's
    own attributes (its origin's metadata) win over a record's.
    """
    store = getattr(context, "_log_store", None)
    if store is None or not hasattr(context, "_origin"):  # the internals moved
        return lambda record, metadata: context.emit(record, metadata)

    def emit(record: logging.LogRecord, metadata: Dict[str, Any]) -> None:
        origin = context._origin  # None once the step's logs are closed
        if origin is None:
            raise RuntimeError("the step's ZenML logging context has ended")
        own = getattr(origin, "metadata", {})
        metadata = {k: v for k, v in metadata.items() if k not in own}
        store.emit(origin=origin, record=record, metadata=metadata)

    return emit


class Counts:
    """What a relay did, for the receipt (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: Dict[str, int] = {
            "requests": 0, "received": 0, "relayed": 0, "blank": 0,
            "rejected_requests": 0, "failed_requests": 0, "broken_requests": 0,
        }

    def add(self, **deltas: int) -> None:
        with self._lock:
            for key, delta in deltas.items():
                self.values[key] += delta

    def get(self, key: str) -> int:
        with self._lock:
            return self.values[key]


class RecentRecords:
    """Digests of the last `size` records a relay stored (thread-safe).

    A spooled record among them was acknowledged before its program died (the
    spool is at-least-once) and is not stored twice. A record without a time
    is never matched: two of those may well be alike on purpose.
    """

    def __init__(self, size: int = 1 << 17) -> None:
        self._lock = threading.Lock()
        self._size = size
        self._order: "collections.deque[int]" = collections.deque()
        self._counts: "collections.Counter[int]" = collections.Counter()

    @staticmethod
    def digest(scope_name: str, record: Mapping[str, Json]) -> Optional[int]:
        """The same for a record read from a request and from the spool: both
        hold the crate's same encoding, so the decoded fields come in the same
        order. A 64-bit hash (this process's): against the last 2^17 records a
        false match is about 2^-47 likely; canonical JSON cost 3x as much."""
        if not (record["time_unix_nano"] or record["observed_time_unix_nano"]):
            return None
        return hash((scope_name, repr(record)))

    def add(self, scope_name: str, record: Mapping[str, Json]) -> None:
        digest = self.digest(scope_name, record)
        if digest is None:
            return
        with self._lock:
            self._order.append(digest)
            self._counts[digest] += 1
            if len(self._order) > self._size:
                oldest = self._order.popleft()
                self._counts[oldest] -= 1
                if not self._counts[oldest]:
                    del self._counts[oldest]

    def __contains__(self, item: Tuple[str, Mapping[str, Json]]) -> bool:
        digest = self.digest(*item)
        with self._lock:
            return digest is not None and digest in self._counts


class HttpError(Exception):
    """An answer other than 200."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


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


def _unpack(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return _gunzip(body, limit)
    raise HttpError(415, f"Content-Encoding {encoding!r}: only identity and gzip")


class Relay:
    """Receives a program's OTLP/HTTP logs on 127.0.0.1 and emits each record
    through `emit` before answering; `start()`/`close()`, or `with`."""

    def __init__(self, emit: Emit, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.emit = emit
        self.max_body_bytes = max_body_bytes
        self.secret = secrets.token_urlsafe(32)
        self.counts = Counts()
        self.recent = RecentRecords()
        self._closed = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _RelayHandler)
        self._server.daemon_threads = True
        self._server.relay = self  # type: ignore[attr-defined]
        self._server.handle_error = self._broken  # type: ignore[assignment]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="zenml-otel-relay",
            daemon=True,
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{LOGS_PATH}"

    def config(self) -> Dict[str, Any]:
        """The handover configuration that points the crate at this relay."""
        return {
            "endpoint": self.endpoint,
            "headers": {"authorization": f"Bearer {self.secret}"},
            "compression": "gzip",
            "protocol": "http/protobuf",
        }

    def config_json(self) -> str:
        return json.dumps(self.config())

    def start(self) -> "Relay":
        with _LIVE_LOCK:
            _LIVE_CONFIGS.add(self.config_json())
        self._thread.start()
        return self

    def close(self) -> None:
        """Stops listening; a request still arriving gets no records in."""
        with _LIVE_LOCK:
            _LIVE_CONFIGS.discard(self.config_json())
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> "Relay":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _broken(self, request: Any, client_address: Any) -> None:
        """A connection that failed outside a request's answer (e.g. the
        client went away): counted, never printed into the step's output."""
        self.counts.add(broken_requests=1)

    def authorized(self, header: Optional[str]) -> bool:
        expected = f"Bearer {self.secret}".encode()
        return hmac.compare_digest((header or "").encode(), expected)

    def accept(self, body: bytes, encoding: str) -> None:
        """Decodes a request body and emits its records, in order.

        Raises:
            HttpError: 400 malformed, 413 too large, 415 encoding, 500 when
                ZenML did not take a record, 503 once the relay is closed.
        """
        try:
            resources = decode_export_request(_unpack(body, encoding, self.max_body_bytes))
        except ValueError as e:
            raise HttpError(400, f"malformed ExportLogsServiceRequest: {e}") from None
        records = [
            (scope["name"], record)
            for resource in resources
            for scope in resource["scopes"]
            for record in scope["records"]
        ]
        self.counts.add(received=len(records))
        for scope_name, record in records:
            self._emit_one(scope_name, record)

    def _emit_one(self, scope_name: str, record: Mapping[str, Json]) -> None:
        if self._closed.is_set():
            raise HttpError(503, "the relay is closed: the step's logs are done")
        log_record = to_log_record(scope_name, record)
        if not log_record.getMessage().strip():
            self.counts.add(blank=1)  # ZenML stores no blank messages either
            return
        try:
            self.emit(log_record, _metadata(record["attributes"]))
        except Exception as e:
            raise HttpError(500, f"ZenML did not take a record: {e!r}") from None
        self.recent.add(scope_name, record)
        self.counts.add(relayed=1)

    def relayed_before(self, scope_name: str, record: Mapping[str, Json]) -> bool:
        """Whether this record is among the last ones stored (see `RecentRecords`)."""
        return (scope_name, record) in self.recent


class _RelayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the crate reuses connections
    timeout = 60  # a stalled client frees its thread

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the default prints each request to the step's stderr."""

    def do_POST(self) -> None:
        relay: Relay = self.server.relay  # type: ignore[attr-defined]
        relay.counts.add(requests=1)
        self._body_read = False
        try:
            body = self._checked_body(relay)
            if body is None:
                return  # the client went away mid-body
            relay.accept(body, self.headers.get("Content-Encoding", ""))
        except HttpError as e:
            key = "failed_requests" if e.status >= 500 else "rejected_requests"
            relay.counts.add(**{key: 1})
            self._discard_body()
            self._answer(e.status, e.text.encode(), "text/plain; charset=utf-8")
            return
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

    def _checked_body(self, relay: Relay) -> Optional[bytes]:
        """The body of an authorized logs request, or None when cut off."""
        if not relay.authorized(self.headers.get("Authorization")):
            raise HttpError(401, "missing or wrong bearer token")
        if self.path.split("?", 1)[0] != LOGS_PATH:
            raise HttpError(404, f"only {LOGS_PATH} is served here")
        content_type = self.headers.get("Content-Type", "application/x-protobuf")
        if content_type.split(";")[0].strip().lower() != "application/x-protobuf":
            raise HttpError(415, f"Content-Type {content_type!r}: only application/x-protobuf")
        length = self._content_length()
        if length > relay.max_body_bytes:
            raise HttpError(413, f"body larger than {relay.max_body_bytes} bytes")
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) < length:
            relay.counts.add(broken_requests=1)
            self.close_connection = True
            return None
        return body

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

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        if status != 200:
            self.close_connection = True  # the request's body may be unread
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


# --- the spool: what a killed program had not delivered ----------------------

# With `ZENML_OTEL_SPOOL_DIR` set, the crate writes each record to a spool
# there before the `tracing` call returns and deletes a segment once the
# collector acknowledged all its records. What a program killed by a signal
# (or one whose exports failed) leaves there is delivered after it ends.
SPOOL_VARIABLE = PREFIX + "SPOOL_DIR"
SPOOL_MAGIC = b"ZOTSPOOL"
SPOOL_VERSION = 1
SPOOL_HEADER_LEN = 16
SPOOL_ENTRY_HEADER_LEN = 8  # u32 length, u32 CRC-32 of the payload
SPOOL_LOCK = "lock"
_SEGMENT_NAME = re.compile(r"[0-9a-f]{16}\.spool")
_CONTEXT_ENTRY, _RECORD_ENTRY = 1, 2
# Records per OTLP request when delivering to the `otel` store's collector.
SPOOL_BATCH = 1000
# Attempts per request to the collector (a restarting collector gets a
# second and third chance, as the crate's own retries would give it).
SPOOL_ATTEMPTS = 3


class SpooledRecord(NamedTuple):
    """A spooled record and the context it was emitted in."""

    resource: bytes  # the encoded `resource` field of a ResourceLogs (may be b"")
    schema_url: bytes  # the encoded `schema_url` field of a ResourceLogs (may be b"")
    scope: str  # the instrumentation scope's name (the Rust target)
    record: bytes  # the LogRecord message


@dataclasses.dataclass
class Spooled:
    """What `read_spool` found."""

    records: List[SpooledRecord] = dataclasses.field(default_factory=list)
    torn: int = 0  # segments whose last entry was cut short or corrupt
    corrupt: int = 0  # segment files skipped whole (no/bad header, unknown version)


def read_spool(directory: str) -> Spooled:
    """The records of every segment in `directory`, in segment order.

    A record's context is the last context entry of its id read before it
    (the crate repeats a context in each segment that uses it). Never raises
    on what the files hold (a torn or corrupt part is counted and skipped);
    only on OS errors such as a directory it may not read. A missing directory
    is an empty spool.
    """
    spooled = Spooled()
    contexts: Dict[int, Tuple[bytes, bytes, bytes]] = {}
    for path in _segment_paths(directory):
        data = _segment_bytes(path)
        if data is None or not _segment_header_ok(data):
            spooled.corrupt += 1
            continue
        records, torn = _segment_records(data, contexts)
        acknowledged = _acknowledged(path)
        spooled.records += [r for i, r in enumerate(records) if not acknowledged(i)]
        spooled.torn += torn
    return spooled


def _acknowledged(segment: str) -> Callable[[int], bool]:
    """Whether a segment's record (by ordinal) is in its acknowledgement log,
    `{number:016x}.acks`: entries of a u32 first ordinal and a u32 count (a
    torn last entry is ignored). A collector has those records already."""
    data = _segment_bytes(segment[: -len("spool")] + "acks") or b""
    ranges = [
        struct.unpack_from("<II", data, at) for at in range(0, len(data) - len(data) % 8, 8)
    ]
    return lambda ordinal: any(first <= ordinal < first + count for first, count in ranges)


def _segment_paths(directory: str) -> List[str]:
    """`{number:016x}.spool` files, by number; other names are not segments."""
    try:
        names = [n for n in os.listdir(directory) if _SEGMENT_NAME.fullmatch(n)]
    except FileNotFoundError:
        return []
    return [os.path.join(directory, n) for n in sorted(names, key=lambda n: int(n[:16], 16))]


def _segment_bytes(path: str) -> Optional[bytes]:
    """A segment's contents; None when it is no regular file (a FIFO would
    block the read, a symlink point anywhere) or vanished."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as file:
            return file.read()
    finally:
        os.close(fd)


def _segment_header_ok(data: bytes) -> bool:
    if len(data) < SPOOL_HEADER_LEN or data[:8] != SPOOL_MAGIC:
        return False
    return struct.unpack_from("<I", data, 8)[0] == SPOOL_VERSION


def _segment_records(
    data: bytes, contexts: Dict[int, Tuple[bytes, bytes, bytes]]
) -> Tuple[List[SpooledRecord], bool]:
    """The records of one segment's whole entries, and whether it is torn.

    A zero length ends the data (what follows is zeros, or a reused segment's old
    entries); an entry cut short or failing its CRC is a torn tail."""
    records: List[SpooledRecord] = []
    pos = SPOOL_HEADER_LEN
    while len(data) - pos >= SPOOL_ENTRY_HEADER_LEN:
        length, crc = struct.unpack_from("<II", data, pos)
        if length == 0:
            return records, False
        start = pos + SPOOL_ENTRY_HEADER_LEN
        payload = data[start : start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            return records, True
        try:
            record = _spool_entry(payload, contexts)
        except ValueError:
            return records, True
        if record is not None:
            records.append(record)
        pos = start + length
    # The file's end, or a length cut short.
    return records, bool(data[pos:].strip(b"\0"))


def _prefixed(data: bytes, pos: int) -> Tuple[bytes, int]:
    """A varint-length-prefixed byte string."""
    size, pos = _varint(data, pos)
    return _take(data, pos, size)


def _spool_entry(
    payload: bytes, contexts: Dict[int, Tuple[bytes, bytes, bytes]]
) -> Optional[SpooledRecord]:
    """Applies one entry: a context is remembered (the last one of an id
    wins), a record returned.

    Raises:
        ValueError: If the payload is not an entry of a known kind, or a
            record names a context not seen before it.
    """
    if len(payload) < 9:
        raise ValueError("entry shorter than its kind and id")
    kind, ident = payload[0], struct.unpack_from("<Q", payload, 1)[0]
    if kind == _CONTEXT_ENTRY:
        resource, pos = _prefixed(payload, 9)
        schema_url, pos = _prefixed(payload, pos)
        attributes, pos = _prefixed(payload, pos)
        if pos != len(payload):
            raise ValueError("bytes after a context's attributes")
        contexts[ident] = (resource, schema_url, attributes)
        return None
    if kind != _RECORD_ENTRY:
        raise ValueError(f"unknown entry kind {kind}")
    scope, pos = _prefixed(payload, 9)
    head, pos = _prefixed(payload, pos)
    if ident not in contexts:
        raise ValueError(f"record of unknown context {ident}")
    resource, schema_url, attributes = contexts[ident]
    # Protobuf fields concatenate: the context's attributes go between.
    record = head + attributes + payload[pos:]
    return SpooledRecord(resource, schema_url, scope.decode("utf-8"), record)


@contextlib.contextmanager
def _spool_lock(directory: str) -> Iterator[bool]:
    """Holds the spool's lock while the `with` runs (True), or False when a
    live process holds it: a descendant of the program still writing."""
    import fcntl

    fd = os.open(os.path.join(directory, SPOOL_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # the kernel drops the lock when the descriptor closes
    finally:
        os.close(fd)


def _new_spool_dir() -> Optional[str]:
    """A fresh spool directory for one program; None where `flock` is missing
    (Windows): without the lock, delivering could race a live writer."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return None
    return tempfile.mkdtemp(prefix="zenml-otel-spool-")


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


def _deliver_spool(directory: str, handover: Env, relay: Optional["Relay"]) -> SpoolReport:
    """Delivers what the program's spool still holds, to where its records
    went (the relay's step logs, or the `otel` store's collector), then removes
    the spool. Kept, and said why, when that fails. Never raises."""
    report = SpoolReport(directory)
    try:
        with _spool_lock(directory) as ours:
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
    directory: str, handover: Env, relay: Optional["Relay"], report: SpoolReport
) -> None:
    spooled = read_spool(directory)
    report.found, report.torn, report.corrupt = (
        len(spooled.records), spooled.torn, spooled.corrupt,
    )
    if not spooled.records:
        return
    if relay is not None:
        _deliver_to_step(spooled.records, relay, report)
    else:
        _deliver_to_collector(spooled.records, handover.get(CONFIG_VARIABLE), report)
    # A later process with this directory would replay what is left.
    report.kept = report.undelivered > 0


def _deliver_to_step(records: List[SpooledRecord], relay: "Relay", report: SpoolReport) -> None:
    """Each record into the step's logs as the relay hands over its records,
    except those the relay already took (the spool is at-least-once)."""
    for item in records:
        try:
            record = _log_record(item.record)
        except ValueError:
            report.malformed += 1
            continue
        if relay.relayed_before(item.scope, record):
            report.duplicates += 1
            continue
        log_record = to_log_record(item.scope, record)
        if log_record.getMessage().strip():  # ZenML stores no blank messages
            try:
                relay.emit(log_record, _metadata(record["attributes"]))
            except Exception as e:
                report.error = f"ZenML did not take a record: {e!r}"
                continue
        report.delivered += 1


def _deliver_to_collector(
    records: List[SpooledRecord], config_text: Optional[str], report: SpoolReport
) -> None:
    """The records, in order, as OTLP/HTTP requests to the `otel` store's
    collector, with the handed-over configuration the program used."""
    config = json.loads(config_text) if config_text else None
    if not isinstance(config, dict) or not config.get("endpoint"):
        report.error = "no otel log store configuration to deliver them with"
        return
    good = [r for r in records if _decodes(r)]
    report.malformed += len(records) - len(good)
    for start in range(0, len(good), SPOOL_BATCH):
        batch = good[start : start + SPOOL_BATCH]
        try:
            _post_to_collector(config, _export_request(batch))
        except Exception as e:
            report.error = str(e) or repr(e)
            return  # the collector is not taking them: the rest would fail too
        report.delivered += len(batch)


def _decodes(item: SpooledRecord) -> bool:
    """Whether the record and its resource decode: one bad record must not
    make the collector refuse a whole batch."""
    try:
        _log_record(item.record)
        _resource_logs(item.resource + item.schema_url)
    except ValueError:
        return False
    return True


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_field(number: int, data: bytes) -> bytes:
    return _encode_varint(number << 3 | LENGTH) + _encode_varint(len(data)) + data


def _export_request(records: Sequence[SpooledRecord]) -> bytes:
    """An ExportLogsServiceRequest: consecutive records of one resource share
    a ResourceLogs, of one scope a ScopeLogs, so the order is kept."""
    out = bytearray()
    by_resource = itertools.groupby(records, key=lambda r: (r.resource, r.schema_url))
    for (resource, schema_url), same_resource in by_resource:
        scopes = b"".join(
            _length_field(2, _length_field(1, _length_field(1, scope.encode()))
                          + b"".join(_length_field(2, r.record) for r in same_scope))
            for scope, same_scope in itertools.groupby(same_resource, key=lambda r: r.scope)
        )
        out += _length_field(1, resource + scopes + schema_url)
    return bytes(out)


def _collector_url(endpoint: str) -> str:
    """As the crate resolves an OTLP/HTTP endpoint: `/v1/logs` appended
    unless the URL ends in it."""
    base = endpoint.strip().rstrip("/")
    return base if base.endswith(LOGS_PATH) else base + LOGS_PATH


def _ssl_context(config: Mapping[str, Any]) -> Optional[ssl.SSLContext]:
    if not (config.get("certificate_file") or config.get("client_certificate_file")):
        return None
    context = ssl.create_default_context(cafile=config.get("certificate_file") or None)
    if config.get("client_certificate_file"):
        context.load_cert_chain(config["client_certificate_file"], config.get("client_key_file") or None)
    return context


def _post_to_collector(config: Mapping[str, Any], body: bytes) -> None:
    """POSTs one request, retrying what a collector may answer differently
    a moment later (429, 502-504, no connection).

    Raises:
        RuntimeError: If the collector did not take it.
    """
    headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
    headers["Content-Type"] = "application/x-protobuf"
    if str(config.get("compression") or "").lower() == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(
        _collector_url(str(config["endpoint"])), data=body, headers=headers, method="POST"
    )
    timeout = (config.get("export_timeout_millis") or 10_000) / 1000
    for attempt in range(SPOOL_ATTEMPTS):
        error = _post_once(request, timeout, _ssl_context(config))
        if error is None:
            return
        text, retry = error
        if not retry or attempt + 1 == SPOOL_ATTEMPTS:
            raise RuntimeError(text)
        time.sleep(0.5 * 2**attempt)


def _post_once(
    request: urllib.request.Request, timeout: float, context: Optional[ssl.SSLContext]
) -> Optional[Tuple[str, bool]]:
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


def _spool_text(report: Optional[SpoolReport]) -> str:
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
    return text


def _spool_notes(report: SpoolReport) -> str:
    skipped = (
        (report.duplicates, "already relayed", "already relayed"),
        (report.malformed, "malformed record skipped", "malformed records skipped"),
        (report.torn, "torn tail skipped", "torn tails skipped"),
        (report.corrupt, "unreadable segment skipped", "unreadable segments skipped"),
    )
    notes = [f"{n} {one if n == 1 else many}" for n, one, many in skipped if n]
    return f" ({', '.join(notes)})" if notes else ""


def _spool_metadata(report: Optional[SpoolReport]) -> Dict[str, Any]:
    if report is None:
        return {}
    metadata: Dict[str, Any] = {"spool_delivered": report.delivered}
    for key in ("found", "duplicates", "malformed", "torn", "corrupt"):
        if getattr(report, key):
            metadata[f"spool_{key}"] = getattr(report, key)
    if report.error:
        metadata["spool_error"] = report.error
    if report.kept:
        metadata["spool_kept"] = report.directory
    return metadata


# --- choosing the path, and the child's environment --------------------------


def _relays(logs: str, store: Any, context: Any) -> bool:
    if logs not in LOGS_MODES:
        raise ValueError(f"logs={logs!r}: expected one of {', '.join(LOGS_MODES)}")
    if logs == "relay" and context is None:
        raise RuntimeError("logs='relay' needs the step's ZenML logging context: there is none")
    # No logging context (step logs off entirely): nothing to relay into.
    return logs == "relay" or (logs == "auto" and not _is_otel(store) and context is not None)


@contextlib.contextmanager
def _handover(logs: str) -> Iterator[Tuple[Env, Optional[Relay]]]:
    """This step's handover variables, and the relay they point at, if any."""
    env = handover_env()
    context = _logging_context()
    if not _relays(logs, _active_log_store(), context):
        yield env, None
        return
    with Relay(_zenml_emitter(context)) as relay:
        env[CONFIG_VARIABLE] = relay.config_json()
        yield env, relay


@contextlib.contextmanager
def relay_env(logs: str = "auto") -> Iterator[Env]:
    """The handover variables for processes the caller starts itself.

        with relay_env() as env:
            subprocess.Popen(cmd, env={**os.environ, **env}).wait()

    When relaying (see the module docs for `logs`), the relay lives until the
    `with` ends and takes exports from any number of processes; wait for them
    inside it. Start them with `child_env(env)` to drop inherited variables
    that could send their exports elsewhere.

    No spool directory is handed over (`ZENML_OTEL_SPOOL_DIR`): one directory
    belongs to one live process (the crate locks it), and what a killed
    process leaves is delivered only by `run_rust_step`. Give a process one of
    its own to have it replay its spool when started again.

    Raises:
        RuntimeError: If called outside a running ZenML step.
    """
    with _handover(logs) as (env, _relay):
        yield env


def child_env(handover: Env, base: Optional[Mapping[str, str]] = None) -> Env:
    """`base` (default `os.environ`) without stale handover variables (a
    spool directory and stats file are one process's, never inherited), plus
    `handover`; with a configuration handed over, also without the
    `ZENML_OTEL_LOG_STORE_CONFIG_FILE`/`OTEL_EXPORTER_OTLP_*` variables that
    the crate would read for what the configuration leaves at its default."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if k not in HANDOVER_VARIABLES and k not in (STATS_FILE_VARIABLE, SPOOL_VARIABLE)
    }
    if CONFIG_VARIABLE in handover:
        env.pop(CONFIG_FILE_VARIABLE, None)  # the Rust side refuses both
    if _is_relay_config(handover.get(CONFIG_VARIABLE)):
        env = {k: v for k, v in env.items() if not k.startswith(REDIRECTING_PREFIX)}
    env.update(handover)
    return env


def _is_relay_config(text: Optional[str]) -> bool:
    """Whether `text` is the handover configuration of a live relay."""
    with _LIVE_LOCK:
        return text in _LIVE_CONFIGS


# --- the receipt -------------------------------------------------------------

STATS_KEYS = (
    "emitted", "exported", "dropped", "failed", "rejected", "truncated", "recovered", "spooled",
)


@contextlib.contextmanager
def _stats_path() -> Iterator[str]:
    """A path the program writes its stats to (the directory is removed after)."""
    directory = tempfile.mkdtemp(prefix="zenml-otel-stats-")
    try:
        yield os.path.join(directory, "stats.json")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _read_stats(path: str) -> Tuple[Optional[Dict[str, int]], str]:
    """The program's stats, or None and why not."""
    try:
        with open(path, encoding="utf-8") as file:
            raw = json.load(file)
    except FileNotFoundError:
        return None, "left no stats"
    except (OSError, ValueError) as e:
        return None, f"left unreadable stats ({e})"
    if not isinstance(raw, dict):
        return None, "left stats that are not a JSON object"
    return {k: v for k, v in raw.items() if k in STATS_KEYS and isinstance(v, int)}, ""


def _program(cmd: Union[str, Sequence[str]]) -> str:
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


def _stats_text(stats: Optional[Dict[str, int]], missing: str) -> str:
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
    return ", ".join([text] + extra)


def _relay_text(relay: Optional[Relay]) -> str:
    if relay is None:
        return ""
    counts = relay.counts
    text = f" (relay received {counts.get('received')}"
    problems = [
        f"{counts.get(k)} {k.replace('_', ' ')}"
        for k in ("rejected_requests", "failed_requests", "broken_requests")
        if counts.get(k)
    ]
    return text + "".join(", " + p for p in problems) + ")"


def _receipt(
    cmd: Union[str, Sequence[str]],
    returncode: int,
    stats_file: str,
    relay: Optional[Relay],
    spool: Optional[SpoolReport] = None,
) -> Tuple[str, Dict[str, Any], bool]:
    """The receipt line, its metadata, and whether all went well."""
    stats, missing = _read_stats(stats_file)
    program = _program(cmd)
    line = (
        f"zenml-otel: {program} {_exit_text(returncode)}: "
        f"{_stats_text(stats, missing)}{_relay_text(relay)}{_spool_text(spool)}"
    )
    metadata: Dict[str, Any] = {"exit_code": returncode, "logs": "relay" if relay else "direct"}
    metadata.update(stats or {"stats": missing})
    if relay is not None:
        metadata["relay_received"] = relay.counts.get("received")
        metadata["relay_stored"] = relay.counts.get("relayed")
    metadata.update(_spool_metadata(spool))
    lost = any((stats or {}).get(k, 0) for k in ("dropped", "failed", "rejected"))
    ok = returncode == 0 and stats is not None and not lost and not (spool and spool.error)
    return line, metadata, ok


def _log_receipt(program: str, line: str, metadata: Dict[str, Any], ok: bool) -> None:
    log.log(logging.INFO if ok else logging.WARNING, line)
    try:
        from zenml import log_metadata

        log_metadata(metadata={f"zenml-otel {program}": metadata})
    except Exception as e:  # the step's metadata is a report: never fail the step on it
        log.warning("zenml-otel: could not attach the receipt as step metadata: %r", e)


# --- running the program -----------------------------------------------------


def run_rust_step(
    cmd: Union[str, Sequence[str]], logs: str = "auto", **kwargs: Any
) -> int:
    """Runs `cmd` with this step's handover variables and waits for it.

    `logs` picks the path of the program's records (see the module docs):
    `"auto"` (relay unless the log store's flavor is `otel`), `"relay"` or
    `"direct"`. `kwargs` go to `subprocess.run` (`check` is ignored: a failure
    always raises); with `env`, that mapping is the base instead of
    `os.environ`. The receipt goes to the step's logs and metadata.

    Returns:
        The exit code, 0.

    Raises:
        RuntimeError: If called outside a running ZenML step.
        ValueError: If `logs` is none of the above.
        subprocess.CalledProcessError: If the program exits non-zero or is
            killed; it holds the output and stderr when they were captured.
    """
    kwargs.pop("check", None)
    base = kwargs.pop("env", None)
    with _handover(logs) as (handover, relay), _stats_path() as stats_file:
        env = child_env(handover, base)
        env[STATS_FILE_VARIABLE] = stats_file
        spool_dir = _new_spool_dir()
        if spool_dir is not None:
            env[SPOOL_VARIABLE] = spool_dir
        result = _run(cmd, env, kwargs, spool_dir, handover, relay)
        spool = _deliver_spool(spool_dir, handover, relay) if spool_dir else None
        line, metadata, ok = _receipt(cmd, result.returncode, stats_file, relay, spool)
    _log_receipt(_program(cmd), line, metadata, ok)
    if result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, cmd, output=result.stdout, stderr=result.stderr
        )
    return result.returncode


def _run(
    cmd: Union[str, Sequence[str]],
    env: Env,
    kwargs: Dict[str, Any],
    spool_dir: Optional[str],
    handover: Env,
    relay: Optional[Relay],
) -> "subprocess.CompletedProcess[Any]":
    """`subprocess.run`; when that raises (e.g. `timeout=` killed the
    program), the spool is still delivered and said so before the error goes on."""
    try:
        return subprocess.run(cmd, env=env, **kwargs)
    except Exception as e:
        if spool_dir is not None:
            text = _spool_text(_deliver_spool(spool_dir, handover, relay))
            log.warning("zenml-otel: %s failed (%r)%s", _program(cmd), e, text)
        raise


# --- command line ------------------------------------------------------------


def _main(argv: Sequence[str], stdin: BinaryIO) -> int:
    if list(argv) != ["decode"]:
        print("usage: python zenml_otel.py decode < body.bin", file=sys.stderr)
        return 2
    body = stdin.read()
    # A protobuf request never starts with gzip's magic (field 3, wire type 7).
    encoding = "gzip" if body[:2] == b"\x1f\x8b" else "identity"
    try:
        decoded = decode_export_request(_unpack(body, encoding, MAX_BODY_BYTES))
    except (ValueError, HttpError) as e:
        print(f"zenml_otel decode: {e}", file=sys.stderr)
        return 1
    json.dump(decoded, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:], sys.stdin.buffer))
