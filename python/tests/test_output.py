"""The program's output, unit by unit (`_output.py`, `_console.py`): plain lines bounded and
decoded, console frames taken as they come, one reader thread that ends on time, the caller's
own streams left alone. The pipelines of test_step_parity.py show the whole."""

import io
import logging
import os
import subprocess
import time

import pytest

from otlp_testing import length, log_record, string, varint
from zenml_otel import _console, _output
from zenml_otel._console import Console, ConsoleFrames
from zenml_otel._output import MAX_LINE, Backlog, Lines, Pump, plain_output


def lines_into(stream, flushes=None):
    backlog = Backlog(lambda: flushes.append(1) if flushes is not None else None)
    return Lines(lambda: stream, backlog)


def written(stream):
    return stream.getvalue().split("\n")[:-1]


def test_lines_are_written_as_print_writes_them_across_chunks():
    out = io.StringIO()
    lines = lines_into(out)
    for chunk in (b"first li", b"ne\nsecond\n\nthird wit", b"hout newline"):
        lines.feed(chunk)
    assert written(out) == ["first line", "second", ""]
    lines.end()
    assert written(out) == ["first line", "second", "", "third without newline"]


def test_utf8_split_across_reads_is_kept_and_invalid_bytes_replaced():
    out = io.StringIO()
    lines = lines_into(out)
    encoded = "naïve café\n".encode()
    for i in range(len(encoded)):  # one byte at a time: every character split
        lines.feed(encoded[i : i + 1])
    lines.feed(b"bad \xff\xfe bytes\n")
    assert written(out) == ["naïve café", "bad \ufffd\ufffd bytes"]


def test_a_long_line_goes_in_pieces_and_nothing_waits_for_its_end():
    out = io.StringIO()
    lines = lines_into(out)
    lines.feed(b"x" * (MAX_LINE * 2 + 5))  # no newline yet: two pieces already written
    assert written(out) == ["x" * MAX_LINE] * 2
    lines.feed(b"\n")
    assert written(out) == ["x" * MAX_LINE] * 2 + ["xxxxx"]


def test_the_store_is_flushed_every_flush_bytes(monkeypatch):
    monkeypatch.setattr(_output, "FLUSH_BYTES", 100)
    flushes: list[int] = []
    lines = lines_into(io.StringIO(), flushes)
    lines.feed(b"y" * 49 + b"\n")  # 50 characters with the newline
    assert flushes == []
    lines.feed(b"y" * 49 + b"\n")
    assert flushes == [1]


def frame(scope, body, severity_number=9, severity_text="INFO"):
    record = log_record(body=body, severity_number=severity_number, severity_text=severity_text)
    scope_logs = length(1, string(1, scope)) + length(2, record)
    return varint(len(scope_logs)) + scope_logs


class Shown(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append((record.name, record.levelno, record.getMessage()))


@pytest.fixture
def root_at_info():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(level)


def test_console_frames_are_shown_whole_however_the_pipe_cuts_them(root_at_info):
    shown = Shown()
    frames = ConsoleFrames(Console([shown]))
    data = frame("app::load", "loaded") + frame("app::train", "slow", 13, "WARN")
    for i in range(len(data)):
        frames.feed(data[i : i + 1])
    frames.end()
    assert shown.records == [
        ("app::load", logging.INFO, "loaded"),
        ("app::train", logging.WARNING, "slow"),
    ]


def test_records_below_zenmls_verbosity_are_not_printed(root_at_info):
    shown = Shown()
    frames = ConsoleFrames(Console([shown]))
    frames.feed(frame("app", "detail", 5, "DEBUG") + frame("app", "kept"))
    assert [message for _, _, message in shown.records] == ["kept"]


def test_a_stream_that_is_not_the_crates_stops_the_console_with_one_warning(caplog):
    shown = Shown()
    frames = ConsoleFrames(Console([shown]))
    with caplog.at_level(logging.WARNING, logger="zenml_otel"):
        frames.feed(varint(_console.MAX_FRAME + 1) + b"junk")
        frames.feed(frame("app", "after"))
    assert shown.records == []
    assert [r.getMessage() for r in caplog.records] == [
        f"zenml-otel: the program's console stream is unreadable (a frame of "
        f"{_console.MAX_FRAME + 1} bytes)"
    ]


class Collected:
    def __init__(self):
        self.chunks, self.ended = [], False

    def feed(self, chunk):
        self.chunks.append(chunk)

    def end(self):
        self.ended = True


def test_the_pump_reads_every_pipe_to_its_end():
    pump = Pump()
    one, two = Collected(), Collected()
    first, second = pump.pipe(one), pump.pipe(two)
    pump.start()
    subprocess.run(["sh", "-c", "echo out; echo err >&2"], stdout=first, stderr=second, check=True)
    pump.finish()
    assert (b"".join(one.chunks), b"".join(two.chunks)) == (b"out\n", b"err\n")
    assert one.ended and two.ended


def test_a_pipe_a_left_over_child_holds_open_ends_the_pump_on_time(monkeypatch):
    monkeypatch.setattr(_output, "DRAIN_SECONDS", 0.3)
    pump = Pump()
    sink = Collected()
    write = pump.pipe(sink)
    child = os.dup(write)  # as a daemon the program started would hold it
    pump.start()
    os.write(child, b"before exit\n")
    started = time.monotonic()
    pump.finish()
    try:
        assert time.monotonic() - started < 2.0
        assert b"".join(sink.chunks) == b"before exit\n" and sink.ended
    finally:
        os.close(child)


@pytest.mark.parametrize(
    "given,forwarded",
    [
        ({}, {"stdout", "stderr"}),
        ({"stdout": subprocess.PIPE}, {"stderr"}),
        ({"stderr": None}, {"stdout"}),
        ({"capture_output": True}, set()),
    ],
)
def test_the_callers_own_streams_are_left_as_given(given, forwarded):
    pump = Pump()
    kwargs = dict(given)
    plain_output(pump, kwargs, lambda: None)
    assert {k for k in kwargs if k not in given} == forwarded
    assert all(kwargs[k] == v for k, v in given.items())
    pump.finish()  # closes the pipes it made


def test_without_zenmls_console_handler_one_warning_names_the_release(monkeypatch):
    import zenml

    from zenml_otel import _zenml

    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.StreamHandler(io.StringIO())])
    monkeypatch.setattr(_zenml, "_said", set())
    said = Shown()
    _zenml.log.addHandler(said)
    try:
        assert _zenml.console_handlers() == []
        assert _zenml.console_handlers() == []
    finally:
        _zenml.log.removeHandler(said)
    assert [message for _, _, message in said.records] == [
        f"zenml-otel: with ZenML {zenml.__version__}, no ZenML console handler was found: "
        "the program's records are not printed"
    ]
