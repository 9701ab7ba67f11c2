"""OTLP logs protobuf: one pure-Python codec, decode and encode, one varint.

Decoding turns an `ExportLogsServiceRequest` (or one of its messages) into plain values (see
`decode_export_request`); encoding builds the requests the spool's delivery posts to a
collector. ZenML's base install has no protobuf runtime for OTLP, hence a small reader of
the wire format itself.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator, Sequence
from typing import Callable, TypedDict, Union, cast

# An AnyValue, decoded: str, bool, int, float, `{"bytes": hex}`, list, dict, or None when empty.
Value = Union[str, bool, int, float, None, list["Value"], dict[str, "Value"]]
# A field's raw value: an int (varint, fixed64, fixed32) or bytes (length-delimited).
Raw = Union[int, bytes]
Field = tuple[int, int, Raw]

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
# Most nested AnyValue arrays/kvlists decoded; deeper input is malformed (and would otherwise
# end in a RecursionError).
MAX_DEPTH = 64


class DecodedRecord(TypedDict):
    """A LogRecord, decoded; proto3 defaults for missing fields."""

    time_unix_nano: int
    observed_time_unix_nano: int
    severity_number: int
    severity_text: str
    body: Value
    attributes: dict[str, Value]
    event_name: str
    trace_id: str
    span_id: str
    flags: int
    dropped_attributes_count: int


class DecodedScope(TypedDict):
    """A ScopeLogs: its instrumentation scope and its records."""

    name: str
    version: str
    records: list[DecodedRecord]


class DecodedResource(TypedDict):
    """A ResourceLogs: its resource's attributes and its scopes."""

    resource: dict[str, Value]
    scopes: list[DecodedScope]


# --- the wire format -----------------------------------------------------------------------


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
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


def encode_varint(value: int) -> bytes:
    """`value` (non-negative) as a varint."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def take(data: bytes, pos: int, size: int) -> tuple[bytes, int]:
    """`size` bytes at `pos` and the next pos."""
    if size > len(data) - pos:
        raise ValueError("field runs past the end of its message")
    return data[pos : pos + size], pos + size


def prefixed(data: bytes, pos: int) -> tuple[bytes, int]:
    """A varint-length-prefixed byte string at `pos` and the next pos."""
    size, pos = read_varint(data, pos)
    return take(data, pos, size)


def fields(data: bytes) -> Iterator[Field]:
    """(field number, wire type, value) of each field of one message."""
    pos = 0
    while pos < len(data):
        number, wire, value, pos = field_at(data, pos)
        yield number, wire, value


def field_at(data: bytes, pos: int) -> tuple[int, int, Raw, int]:
    """The field starting at `pos`: number, wire type, value, and where the next starts."""
    key, pos = read_varint(data, pos)
    number, wire = key >> 3, key & 7
    if number == 0:
        raise ValueError("field number 0")
    value: Raw
    if wire == VARINT:
        value, pos = read_varint(data, pos)
    elif wire == FIXED64:
        raw, pos = take(data, pos, 8)
        value = struct.unpack("<Q", raw)[0]
    elif wire == FIXED32:
        raw, pos = take(data, pos, 4)
        value = struct.unpack("<I", raw)[0]
    elif wire == LENGTH:
        size, pos = read_varint(data, pos)
        value, pos = take(data, pos, size)
    else:  # groups (3, 4: long deprecated, never in OTLP) and 6, 7
        raise ValueError(f"unsupported wire type {wire} (field {number})")
    return number, wire, value, pos


def _expect(wire: int, expected: int, number: int) -> None:
    if wire != expected:
        raise ValueError(f"field {number}: wire type {wire}, expected {expected}")


def _bytes(wire: int, value: Raw, number: int) -> bytes:
    _expect(wire, LENGTH, number)
    assert isinstance(value, bytes)
    return value


def _int(wire: int, value: Raw, number: int, expected: int) -> int:
    _expect(wire, expected, number)
    assert isinstance(value, int)
    return value


def _utf8(data: bytes, number: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"field {number}: invalid UTF-8 ({e.reason})") from None


def _text(wire: int, value: Raw, number: int) -> str:
    return _utf8(_bytes(wire, value, number), number)


def _signed(value: int, bits: int) -> int:
    """Two's complement: proto int64/int32 arrive as 64-bit varints."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


# --- decoding ------------------------------------------------------------------------------

# The keys of AnyValue.string_value and .int_value, KeyValue.key and .value: the short
# messages of one such field (most) are read inline, to what the general reader makes of them.
_STRING_VALUE_KEY, _INT_VALUE_KEY = 1 << 3 | LENGTH, 3 << 3 | VARINT
_KEY_KEY, _VALUE_KEY = 1 << 3 | LENGTH, 2 << 3 | LENGTH


def _any_value(data: bytes, depth: int) -> Value:
    """An AnyValue: str, bool, int, float, {"bytes": hex}, list, dict or None."""
    if depth > MAX_DEPTH:
        raise ValueError(f"values nested deeper than {MAX_DEPTH}")
    size = len(data) - 2
    if 0 <= size < 0x80 and data[0] == _STRING_VALUE_KEY and data[1] == size:
        return _utf8(data[2:], 1)
    if data and data[0] == _INT_VALUE_KEY:
        number, end = read_varint(data, 1)
        if end == len(data):
            return _signed(number, 64)
    value: Value = None
    for number, wire, raw in fields(data):
        if number == 1:
            value = _text(wire, raw, number)
        elif number == 2:
            value = _int(wire, raw, number, VARINT) != 0
        elif number == 3:
            value = _signed(_int(wire, raw, number, VARINT), 64)
        elif number == 4:
            bits = _int(wire, raw, number, FIXED64)
            value = cast(float, struct.unpack("<d", struct.pack("<Q", bits))[0])
        elif number == 5:
            value = _array(_bytes(wire, raw, number), depth + 1)
        elif number == 6:
            value = _key_values(_bytes(wire, raw, number), 1, depth + 1)
        elif number == 7:
            value = {"bytes": _bytes(wire, raw, number).hex()}
    return value


def _array(data: bytes, depth: int) -> list[Value]:
    """ArrayValue{values=1}."""
    return [
        _any_value(_bytes(wire, raw, number), depth)
        for number, wire, raw in fields(data)
        if number == 1
    ]


def _key_value(data: bytes, depth: int) -> tuple[str, Value]:
    """KeyValue{key=1, value=2}."""
    size = len(data)
    if size >= 4 and data[0] == _KEY_KEY and data[1] < 0x80:  # a short key, then a short value
        after = 2 + data[1]
        value_size = size - after - 2
        if 0 <= value_size < 0x80 and data[after] == _VALUE_KEY and data[after + 1] == value_size:
            return _utf8(data[2:after], 1), _any_value(data[after + 2 :], depth)
    key, value = "", None
    for number, wire, raw in fields(data):
        if number == 1:
            key = _text(wire, raw, number)
        elif number == 2:
            value = _any_value(_bytes(wire, raw, number), depth)
    return key, value


# A step's records repeat the same handed-over attributes (the `zenml.*` ids and names, byte
# for byte): decoded once, then looked up by their bytes. The memo lives as long as the step's
# process, so it is bounded by what it holds, not only by entries: an attribute longer than
# `_KEY_VALUE_MOST_BYTES` encoded is never kept (a long value is rarely repeated, and would
# be held twice, as bytes and as text), and the memo starts over once its keys and values
# would pass `_KEY_VALUES_BYTES` (the handed-over attributes are back after a few records).
_KEY_VALUES: dict[bytes, tuple[str, Value]] = {}
_KEY_VALUES_KEPT = 4096
_KEY_VALUE_MOST_BYTES = 1024
_KEY_VALUES_BYTES = 1 << 20
_key_values_bytes = 0  # the memo's size as `_memo_cost` counts it
# The last run of memoized attributes a record had (its encoding and pairs): the crate writes
# a span's context attributes (the handed-over ones among them) as one block, so the next
# record of the span has it byte for byte, and reads it at once. Learnt from a record without
# it; bounded by `_RUN_MOST_BYTES`; shared by the relay's threads (a tuple, replaced whole).
_last_run: tuple[bytes, tuple[tuple[str, Value], ...]] = (b"", ())
_RUN_MOST_BYTES = 64 * 1024


def _memo_cost(data: bytes, pair: tuple[str, Value]) -> int:
    """What a memo entry holds, about: its encoding (the dict's key) and its decoded key and
    value (text counted by characters; other scalars are small)."""
    value = pair[1]
    return len(data) + len(pair[0]) + (len(value) if isinstance(value, str) else 8)


def _record_attribute(data: bytes) -> tuple[str, Value]:
    """A record's KeyValue; short scalar ones memoized by their encoding."""
    global _key_values_bytes
    known = _KEY_VALUES.get(data)
    if known is not None:
        return known
    pair = _key_value(data, 0)
    # Shared, so never a mutable value.
    if len(data) <= _KEY_VALUE_MOST_BYTES and not isinstance(pair[1], (list, dict)):
        cost = _memo_cost(data, pair)
        if len(_KEY_VALUES) >= _KEY_VALUES_KEPT or _key_values_bytes + cost > _KEY_VALUES_BYTES:
            _KEY_VALUES.clear()
            _key_values_bytes = 0
        _KEY_VALUES[data] = pair
        _key_values_bytes += cost
    return pair


def _key_values(data: bytes, field: int, depth: int) -> dict[str, Value]:
    """The repeated KeyValue `field` of a message, as a dict (last key wins)."""
    pairs = [
        _key_value(_bytes(wire, raw, number), depth)
        for number, wire, raw in fields(data)
        if number == field
    ]
    return dict(pairs)


def _new_record() -> dict[str, Value]:
    """A LogRecord's proto3 defaults, in the canonical form's key order."""
    return {
        "time_unix_nano": 0, "observed_time_unix_nano": 0,
        "severity_number": 0, "severity_text": "", "body": None,
        "attributes": {}, "event_name": "", "trace_id": "", "span_id": "",
        "flags": 0, "dropped_attributes_count": 0,
    }  # fmt: skip


def _unsigned32(value: int) -> int:
    return value & 0xFFFFFFFF


def _severity_number(value: int) -> int:
    return _signed(value, 32)


# LogRecord's scalar fields: number -> (key, wire type, conversion of the raw int) ...
_INT_FIELDS: dict[int, tuple[str, int, Callable[[int], int]]] = {
    1: ("time_unix_nano", FIXED64, int),
    11: ("observed_time_unix_nano", FIXED64, int),
    2: ("severity_number", VARINT, _severity_number),
    7: ("dropped_attributes_count", VARINT, _unsigned32),
    8: ("flags", FIXED32, int),
}
# ... and its length-delimited ones: number -> (key, decoder of the bytes).
_BYTES_FIELDS: dict[int, tuple[str, Callable[[bytes], Value]]] = {
    3: ("severity_text", lambda v: _utf8(v, 3)),
    5: ("body", lambda v: _any_value(v, 0)),
    9: ("trace_id", bytes.hex),
    10: ("span_id", bytes.hex),
    12: ("event_name", lambda v: _utf8(v, 12)),
}

# Field 6 (attributes), length-delimited: most of a record's fields.
_ATTRIBUTE_KEY = 6 << 3 | LENGTH
# The one-byte keys of the other fields read inline.
_FIXED64_KEYS = {number << 3 | FIXED64: key for number, (key, wire, _) in _INT_FIELDS.items()
                 if wire == FIXED64}  # fmt: skip
_SEVERITY_NUMBER_KEY = 2 << 3 | VARINT
_LENGTH_KEYS = {number << 3 | LENGTH: entry for number, entry in _BYTES_FIELDS.items()}
_U64 = struct.Struct("<Q")


def decode_log_record(data: bytes) -> DecodedRecord:
    """A LogRecord message (see `decode_export_request` for its keys).

    Raises:
        ValueError: If `data` is not such a message.
    """
    global _last_run
    record = _new_record()
    attributes: list[tuple[str, Value]] = []
    pos, end = 0, len(data)
    memo, (run_bytes, run_pairs) = _KEY_VALUES, _last_run
    # This record's last run of memoized attributes: where it starts and stops, the indexes of
    # its first and after its last; `start` is -1 once the last record's run was found in this
    # one (nothing to learn).
    start = stop = first = last = 0
    # The fields as the crate writes them (one-byte keys, short lengths) are read inline,
    # without the general field reader; anything else takes it, to the same result.
    while pos < end:
        key = data[pos]
        size = data[pos + 1] if pos + 1 < end else 0x80
        after = pos + 2 + size
        if key == _ATTRIBUTE_KEY and size < 0x80 and after <= end:  # most fields
            if pos != stop and run_bytes and data.startswith(run_bytes, pos):
                attributes += run_pairs
                pos, start = pos + len(run_bytes), -1
                continue
            value = data[pos + 2 : after]
            known = memo.get(value)
            if known is None:
                attributes.append(_record_attribute(value))
            else:
                if pos != stop and start >= 0:
                    start, first = pos, len(attributes)
                stop = after
                attributes.append(known)
                last = len(attributes)
            pos = after
            continue
        if key in _FIXED64_KEYS and pos + 9 <= end:
            record[_FIXED64_KEYS[key]] = _U64.unpack_from(data, pos + 1)[0]
            pos += 9
            continue
        if key == _SEVERITY_NUMBER_KEY and size < 0x80:
            record["severity_number"] = size  # a one-byte varint: a small positive number
            pos += 2
            continue
        if key in _LENGTH_KEYS and size < 0x80 and after <= end:
            name, decode = _LENGTH_KEYS[key]
            record[name] = decode(data[pos + 2 : after])
            pos = after
            continue
        number, wire, raw, pos = field_at(data, pos)
        if number == 6:
            attributes.append(_record_attribute(_bytes(wire, raw, number)))
        elif number in _BYTES_FIELDS:
            name, decode = _BYTES_FIELDS[number]
            record[name] = decode(_bytes(wire, raw, number))
        elif number in _INT_FIELDS:
            name, expected, convert = _INT_FIELDS[number]
            record[name] = convert(_int(wire, raw, number, expected))
    if start >= 0 and last - first >= 2 and stop - start <= _RUN_MOST_BYTES:
        _last_run = (data[start:stop], tuple(attributes[first:last]))
    record["attributes"] = dict(attributes)
    return cast(DecodedRecord, record)


def _scope_fields(data: bytes) -> tuple[str, str, list[bytes]]:
    """ScopeLogs{scope=1 InstrumentationScope{name=1, version=2}, log_records=2}: the scope's
    name and version, and its LogRecord messages, undecoded."""
    name = version = ""
    records = []
    for number, wire, raw in fields(data):
        if number == 1:
            for inner, inner_wire, inner_raw in fields(_bytes(wire, raw, number)):
                if inner == 1:
                    name = _text(inner_wire, inner_raw, inner)
                elif inner == 2:
                    version = _text(inner_wire, inner_raw, inner)
        elif number == 2:
            records.append(_bytes(wire, raw, number))
    return name, version, records


def _scope_logs(data: bytes) -> DecodedScope:
    name, version, records = _scope_fields(data)
    return DecodedScope(name=name, version=version, records=[decode_log_record(r) for r in records])


def _resource_fields(data: bytes) -> tuple[dict[str, Value], list[bytes]]:
    """ResourceLogs{resource=1 Resource{attributes=1}, scope_logs=2}: the resource's
    attributes, and its ScopeLogs messages, undecoded."""
    resource: dict[str, Value] = {}
    scopes = []
    for number, wire, raw in fields(data):
        if number == 1:
            resource = _key_values(_bytes(wire, raw, number), 1, 0)
        elif number == 2:
            scopes.append(_bytes(wire, raw, number))
    return resource, scopes


def decode_resource_logs(data: bytes) -> DecodedResource:
    """ResourceLogs{resource=1 Resource{attributes=1}, scope_logs=2}.

    Raises:
        ValueError: If `data` is not such a message.
    """
    resource, scopes = _resource_fields(data)
    return DecodedResource(resource=resource, scopes=[_scope_logs(s) for s in scopes])


def _resource_logs(body: bytes) -> list[bytes]:
    """An ExportLogsServiceRequest's ResourceLogs messages, undecoded."""
    data = bytes(body)
    return [_bytes(wire, raw, number) for number, wire, raw in fields(data) if number == 1]


def decode_export_request(body: bytes) -> list[DecodedResource]:
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
    return [decode_resource_logs(resource) for resource in _resource_logs(body)]


def encoded_records(body: bytes) -> list[tuple[str, bytes]]:
    """An `ExportLogsServiceRequest`'s LogRecord messages, undecoded, each with its scope's
    name, in order (the rest read as `decode_export_request` reads it).

    Raises:
        ValueError: If the body is not such a message (its records aside).
    """
    return [
        (name, record)
        for resource in _resource_logs(body)
        for scope in _resource_fields(resource)[1]
        for name, _, records in [_scope_fields(scope)]
        for record in records
    ]


# --- encoding ------------------------------------------------------------------------------

# A record to encode: the encoded `resource` and `schema_url` fields of its ResourceLogs (each
# may be b""), its scope's name, and the encoded LogRecord message.
EncodedRecord = tuple[bytes, bytes, str, bytes]


def length_field(number: int, data: bytes) -> bytes:
    """A length-delimited field."""
    return encode_varint(number << 3 | LENGTH) + encode_varint(len(data)) + data


def _scope_logs_field(scope: str, records: Iterator[EncodedRecord]) -> bytes:
    """ResourceLogs.scope_logs: the scope (name only) and its records."""
    scope_field = length_field(1, length_field(1, scope.encode()))
    return length_field(2, scope_field + b"".join(length_field(2, r[3]) for r in records))


def export_request(records: Sequence[EncodedRecord]) -> bytes:
    """An ExportLogsServiceRequest: consecutive records of one resource share
    a ResourceLogs, of one scope a ScopeLogs, so the order is kept."""
    out = bytearray()
    for (resource, schema_url), same_resource in itertools.groupby(records, key=lambda r: r[:2]):
        scopes = b"".join(
            _scope_logs_field(scope, same_scope)
            for scope, same_scope in itertools.groupby(same_resource, key=lambda r: r[2])
        )
        out += length_field(1, resource + scopes + schema_url)
    return bytes(out)
