"""A Rust step is seen like a Python step (issue 26): its records in the run's console, its
plain output in the step's logs and console, on the default stack (the relay) and with an
`otel` log store (direct). Real pipelines, run as a user runs them (`python pipeline.py` in a
subprocess: its output is the run's console), on whichever ZenML this venv has — the matrix
(scripts/zenml-matrix.sh) runs this file on every release with log stores."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import PROJECT, TESTS
from test_pipelines import project  # noqa: F401 (a fixture)

RECORDS = [
    "rust: loading the features threads=2",
    "rust: fitted the model mean=0.5005",
    "rust: score below threshold score=0.5005 threshold=0.9",
    "rust: done",
]
# The records' bodies: what the crate exports (the fields are attributes).
BODIES = [r.split(" threads=")[0].split(" mean=")[0].split(" score=")[0] for r in RECORDS]
PLAIN = ["plain: a println line", "plain: an eprintln line"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def program(binary):
    """The example program, then one line on stdout and one on stderr."""
    return ["sh", "-c", f'"{binary}"; echo "{PLAIN[0]}"; echo "{PLAIN[1]}" >&2']


def run_pipeline(case, **args):
    """The run's console (stdout and stderr, as a terminal shows both, colours kept) and its
    RESULT."""
    shutil.copy(TESTS / "parity_pipelines.py", PROJECT / "parity_pipelines.py")
    done = subprocess.run(
        [sys.executable, "parity_pipelines.py", case, json.dumps(args)],
        cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    console, _, result = done.stdout.rpartition("RESULT ")
    return console.splitlines(), json.loads(result)


def plain(lines):
    return [ANSI.sub("", line) for line in lines]


def the_line(lines, text):
    """The one console line holding `text` (colours kept)."""
    found = [line for line in lines if text in ANSI.sub("", line)]
    assert len(found) == 1, (text, plain(lines))
    return found[0]


def assert_console(lines):
    """Each record and plain line once, between the step's Python records before and after;
    the Rust warning formatted as the Python warning is."""
    text = plain(lines)
    before = lines.index(the_line(lines, "python: before the program"))
    after = lines.index(the_line(lines, "python: after the program"))
    for wanted in RECORDS + PLAIN:
        line = the_line(lines, wanted)
        assert before < lines.index(line) < after, (wanted, text)
    python_warning = the_line(lines, "python: a warning")
    rust_warning = the_line(lines, RECORDS[2])
    assert python_warning.replace("python: a warning", RECORDS[2]) == rust_warning


@pytest.fixture(scope="module")
def binary(project, rust_step_binary):  # noqa: F811
    return str(rust_step_binary)


def test_on_the_default_stack_records_and_plain_lines_are_in_the_console_and_stored_once(binary):
    lines, result = run_pipeline("default", cmd=program(binary))
    assert_console(lines)
    stored = [(e["level"], e["message"].rstrip("\n")) for e in result["entries"]]
    messages = [m for _, m in stored]
    for wanted in RECORDS + PLAIN:
        assert messages.count(wanted) == 1, (wanted, messages)
    # The levels ZenML gives a Python step's stdout and stderr.
    assert ("INFO", PLAIN[0]) in stored and ("ERROR", PLAIN[1]) in stored, stored
    assert messages.index("python: a warning") < messages.index(RECORDS[0])
    [receipt] = [i for i, m in enumerate(messages) if m.startswith("zenml-otel: ")]
    assert messages.index(PLAIN[1]) < receipt
    # nothing but blank lines besides what was logged, printed and the receipt
    assert not [m for m in messages if not m.strip()], stored


def test_with_an_otel_store_records_and_plain_lines_are_in_the_console_and_exported_once(binary):
    from otlp_testing import Collector

    with Collector() as collector:
        lines, _ = run_pipeline("otel", cmd=program(binary), endpoint=collector.endpoint)
        assert_console(lines)
        rust = [
            r["body"]
            for request in collector.decoded()
            for resource in request
            for scope in resource["scopes"]
            for r in scope["records"]
        ]
        python = collector.strings()
    for body in BODIES:
        assert rust.count(body) == 1, (body, rust)
    for wanted in PLAIN:
        assert [s.rstrip("\n") for s in python].count(wanted) == 1, (wanted, python)


def test_gigabytes_of_output_do_not_grow_the_step(project):  # noqa: F811
    """100 MiB of plain output in 1 MiB lines: the step's peak memory grows far less."""
    writer = (
        "import sys\n"
        "line = 'y' * (1024 * 1024 - 1) + '\\n'\n"
        "for _ in range(100):\n"
        "    sys.stdout.write(line)\n"
        "print('plain: the last line')\n"
    )
    lines, result = run_pipeline("default", cmd=[sys.executable, "-c", writer])
    messages = [e["message"].rstrip("\n") for e in result["entries"]]
    assert messages.count("plain: the last line") == 1
    assert result["grown_mib"] < 64, result["grown_mib"]
