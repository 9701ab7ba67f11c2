"""The pure-Python OTLP decoder: canonical form, every AnyValue kind, bad input."""

import gzip
import json
import subprocess
import sys

import pytest

import otlp_testing as otlp
from zenml_otel import decode_export_request
from zenml_otel._records import to_log_record

T = 1_700_000_000_123_456_789


def one_record(**fields):
    body = otlp.request({"service.name": "svc"}, ("my_crate::train", "0.1.0"), [otlp.log_record(**fields)])
    [resource] = decode_export_request(body)
    [scope] = resource["scopes"]
    [record] = scope["records"]
    return record


def test_canonical_form():
    body = otlp.request(
        {"service.name": "svc", "telemetry.sdk.language": "rust"},
        ("my_crate::train", "0.1.0"),
        [
            otlp.log_record(
                body="hello", severity_number=9, severity_text="INFO",
                time_unix_nano=T, observed_time_unix_nano=T + 1,
                attributes={"code.line.number": 42}, trace_id=bytes(range(16)),
                span_id=bytes(range(8)), flags=1, event_name="ev", dropped_attributes_count=3,
            ),
            otlp.log_record(),
        ],
    )
    assert decode_export_request(body) == [
        {
            "resource": {"service.name": "svc", "telemetry.sdk.language": "rust"},
            "scopes": [
                {
                    "name": "my_crate::train",
                    "version": "0.1.0",
                    "records": [
                        {
                            "time_unix_nano": T, "observed_time_unix_nano": T + 1,
                            "severity_number": 9, "severity_text": "INFO", "body": "hello",
                            "attributes": {"code.line.number": 42}, "event_name": "ev",
                            "trace_id": bytes(range(16)).hex(), "span_id": bytes(range(8)).hex(),
                            "flags": 1, "dropped_attributes_count": 3,
                        },
                        {
                            "time_unix_nano": 0, "observed_time_unix_nano": 0,
                            "severity_number": 0, "severity_text": "", "body": None,
                            "attributes": {}, "event_name": "", "trace_id": "", "span_id": "",
                            "flags": 0, "dropped_attributes_count": 0,
                        },
                    ],
                }
            ],
        }
    ]


@pytest.mark.parametrize(
    "value",
    [
        "text", "", True, False, 0, 1, -1, -(2**63), 2**63 - 1, 1.5, -0.25, float("inf"),
        {"bytes": "00ff10"}, {"bytes": ""}, [], [1, "a", None, [2, [3.5]]],
        {"k": {"nested": [True, {"bytes": "ab"}]}, "n": None}, "é" * 300, "x" * 20000,
    ],
)
def test_every_any_value_round_trips(value):
    record = one_record(body=value, attributes={"v": value})
    assert record["body"] == value
    assert record["attributes"] == {"v": value}


def test_empty_any_value_is_none():
    record = one_record(attributes={"empty": None})
    assert record["attributes"] == {"empty": None}


def test_unknown_fields_are_skipped():
    unknown = (
        otlp.uint(99, 7) + otlp.fixed64(98, 1) + otlp.fixed32(97, 2) + otlp.string(96, "x" * 200)
    )
    record = otlp.log_record(body="kept", severity_number=13) + unknown
    scope = otlp.length(1, otlp.string(1, "s") + unknown) + otlp.length(2, record) + unknown
    resource_logs = otlp.length(2, scope) + otlp.string(3, "schema") + unknown
    body = otlp.length(1, resource_logs) + unknown
    [resource] = decode_export_request(body)
    [decoded] = resource["scopes"][0]["records"]
    assert (decoded["body"], decoded["severity_number"]) == ("kept", 13)
    assert resource["scopes"][0]["name"] == "s"


def test_negative_severity_and_large_counts():
    record = one_record(severity_number=-1, dropped_attributes_count=2**32 - 1)
    assert record["severity_number"] == -1
    assert record["dropped_attributes_count"] == 2**32 - 1


def test_empty_body_is_no_resources():
    assert decode_export_request(b"") == []


GOOD = otlp.request({"a": 1}, ("s", "v"), [otlp.log_record(body="x" * 300, attributes={"k": [1, 2]})])


@pytest.mark.parametrize("cut", range(1, len(GOOD)))
def test_every_truncation_is_a_value_error(cut):
    # GOOD is one top-level field: every cut ends inside it.
    with pytest.raises(ValueError):
        decode_export_request(GOOD[:cut])


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x0a\x05abc",  # length past the end
        b"\xff" * 11,  # a varint longer than ten bytes
        b"\x0b",  # a group (wire type 3)
        b"\x0f",  # wire type 7
        b"\x00\x01",  # field number 0
        otlp.length(1, otlp.length(2, otlp.length(2, otlp.string(3, "") + b"\x1a\x02\xff\xfe"))),
        otlp.length(1, otlp.length(2, otlp.length(2, otlp.uint(1, 5)))),  # wrong wire type
        otlp.length(1, b"\x12"),  # truncated key/length inside
    ],
)
def test_garbage_is_a_value_error(garbage):
    with pytest.raises(ValueError):
        decode_export_request(garbage)


def test_deep_nesting_is_a_value_error():
    value = otlp.string(1, "leaf")
    for _ in range(200):
        value = otlp.length(5, otlp.length(1, value))
    body = otlp.request({}, ("s", ""), [otlp.length(5, value)])
    with pytest.raises(ValueError):
        decode_export_request(body)


def test_random_bytes_never_raise_anything_but_value_error():
    import random

    rng = random.Random(7)
    for _ in range(3000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        try:
            decode_export_request(data)
        except ValueError:
            pass


def test_cli_decodes_stdin(tmp_path):
    body = otlp.request({"r": "v"}, ("s", "1"), [otlp.log_record(body="b", attributes={"i": -5})])
    out = subprocess.run(
        [sys.executable, "-m", "zenml_otel", "decode"], input=body, capture_output=True, check=True
    )
    assert json.loads(out.stdout) == decode_export_request(body)
    bad = subprocess.run([sys.executable, "-m", "zenml_otel", "decode"], input=b"\x0a\x09", capture_output=True)
    assert bad.returncode == 1 and b"zenml_otel decode" in bad.stderr


def test_log_record_keeps_time_level_location_and_scope():
    record = one_record(
        body="rust: score below threshold", severity_number=13, severity_text="WARN", time_unix_nano=T,
        attributes={"code.file.path": "examples/zenml/step.rs", "code.line.number": 29,
                    "code.namespace": "zenml_step", "score": 0.5},
    )
    log = to_log_record("zenml_step", record)
    assert (log.name, log.levelname, log.getMessage()) == ("zenml_step", "WARNING", "rust: score below threshold score=0.5")
    assert (log.pathname, log.filename, log.lineno, log.module) == ("examples/zenml/step.rs", "step.rs", 29, "zenml_step")
    assert log.created == pytest.approx(T / 1e9) and log.msecs == 123.0


@pytest.mark.parametrize(
    "number,text,level",
    [(1, "", "DEBUG"), (4, "", "DEBUG"), (5, "", "DEBUG"), (9, "", "INFO"), (12, "", "INFO"),
     (13, "", "WARNING"), (17, "", "ERROR"), (21, "", "CRITICAL"), (24, "", "CRITICAL"),
     (0, "warn", "WARNING"), (0, "FATAL", "CRITICAL"), (0, "TRACE", "DEBUG"), (0, "odd", "INFO")],
)
def test_levels(number, text, level):
    record = one_record(body="m", severity_number=number, severity_text=text)
    assert to_log_record("s", record).levelname == level


def test_observed_time_stands_in_for_a_missing_time():
    record = one_record(body="m", observed_time_unix_nano=T)
    assert to_log_record("s", record).created == pytest.approx(T / 1e9)


def test_gzip_members():
    from zenml_otel._relay import unpack

    assert unpack(gzip.compress(b"ab") + gzip.compress(b"cd"), "gzip", 100) == b"abcd"


def memo_bytes():
    """What the decoder's attribute memo holds: its keys (encodings) and decoded pairs."""
    from zenml_otel import _otlp

    return sum(len(data) + len(k) + len(v if isinstance(v, str) else "")
               for data, (k, v) in _otlp._KEY_VALUES.items())


def test_the_attribute_memo_is_bounded_by_bytes():
    """Issue 25 item 5: a step process decodes for its whole life; large distinct strings
    (each held as bytes and as text) must not fill the memo up to its count of entries."""
    from zenml_otel._otlp import _KEY_VALUES_BYTES, decode_log_record

    for i in range(200):  # large values, each once
        decode_log_record(otlp.log_record(body="b", attributes={"payload": f"{i:04}" + "x" * 100_000}))
    assert memo_bytes() <= _KEY_VALUES_BYTES
    for i in range(4000):  # many small ones, together past the bound
        decode_log_record(otlp.log_record(body="b", attributes={f"key{i}": f"{i:04}" + "y" * 600}))
    assert memo_bytes() <= _KEY_VALUES_BYTES
    # The handed-over attributes, repeated byte for byte, are still shared.
    first = decode_log_record(otlp.log_record(attributes={"zenml.step_run_name": "train"}))
    again = decode_log_record(otlp.log_record(attributes={"zenml.step_run_name": "train"}))
    assert first["attributes"] == {"zenml.step_run_name": "train"}
    assert next(iter(first["attributes"])) is next(iter(again["attributes"]))


def test_a_repeated_run_of_attributes_reads_as_written():
    """The decoder reads a run of attributes the last record had byte for byte at once (the
    crate's span context block): each record must still decode to exactly its attributes,
    whether the run comes again, changes, moves, is cut short or carries a non-scalar."""
    from zenml_otel._otlp import _key_value, decode_log_record, fields

    context = {f"zenml.key{i}": f"value-{i}" for i in range(6)}
    changed = {**context, "zenml.key5": "other"}
    third = {**context, "zenml.key2": "third"}
    sequences = [
        {"i": 1, **context}, {"i": 2, **context}, {"i": 3, **context},  # learnt, then found
        {"i": 4, **changed}, {"i": 5, **changed},  # a changed run: learnt again
        {**changed, "i": 6},  # the run first, then another attribute
        {"i": 7, **dict(list(changed.items())[:3])},  # only the run's start
        {"i": 8, **changed, "list": [1, 2]}, {"i": 9, **changed, "list": [1, 2]},
        {"i": 10, **changed, "zenml.key0": "last wins"},  # a key again after the run
        {"i": 11, "zenml.key0": "x", **{k: v for k, v in changed.items() if k != "zenml.key0"}},
        # learnt from a run before another attribute, then found before a different one
        {"m": 1, **third, "i": 12}, {"m": 2, **third, "i": 13}, {"m": 3, **third, "j": 14},
    ]
    for attributes in sequences:
        decoded = decode_log_record(otlp.log_record(body="b", time_unix_nano=T, attributes=attributes))
        assert decoded["attributes"] == attributes
        assert list(decoded["attributes"]) == list(attributes)
    # Fields between attributes end a run: each record reads as the general reader reads it.
    run = otlp.key_values(6, context)
    for _ in range(3):
        for data in (
            otlp.fixed64(1, T) + run + otlp.string(3, "INFO") + run + otlp.uint(2, 9),
            run + otlp.key_values(6, {"i": 1}) + run[: len(run) // 2] + otlp.string(3, "WARN"),
        ):
            decoded = decode_log_record(data)
            pairs = (_key_value(raw, 0) for number, _, raw in fields(data) if number == 6)
            assert decoded["attributes"] == dict(pairs)
