"""The relay seen through a real ZenML server, as its dashboard sees it.

A local ZenML server (`zenml login --local`, its own port and config directory) is the client's
store; a pipeline on ZenML's default stack (artifact log store: `run_rust_step` relays) runs the
real Rust program (examples/zenml/step.rs) between Python log calls; then the step's logs are read
back over HTTP with the two requests the dashboard makes:

    GET /api/v1/steps/{step_id}/logs?logs_id={logs_id}
    GET /api/v1/logs/{logs_id}/entries

A local server runs without authentication (NO_AUTH), so plain requests do.
"""

import json
import logging
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from datetime import datetime

import pytest

from conftest import TESTS
from server_pipeline import PLAIN

RUST = [
    ("rust: loading the features", logging.INFO),
    ("rust: fitted the model", logging.INFO),
    ("rust: score below threshold", logging.WARNING),
    ("rust: done", logging.INFO),
]
BEFORE = [("python: before the program", logging.INFO), ("python: the program may warn", logging.WARNING)]
AFTER = [("python: after the program", logging.INFO), ("python: done", logging.WARNING)]


def get(server, path, **query):
    url = f"{server.url}/api/v1{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def step_logs(zenml_server, rust_step_binary):
    """The step's logs (source "step") as both dashboard endpoints return them."""
    shutil.copy(TESTS / "server_pipeline.py", zenml_server.root / "server_pipeline.py")
    result = subprocess.run(
        [sys.executable, "server_pipeline.py", str(rust_step_binary)],
        cwd=zenml_server.root, env=zenml_server.env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    [run_id] = [l.split("=", 1)[1] for l in result.stdout.splitlines() if l.startswith("PIPELINE_RUN_ID=")]

    [step] = get(zenml_server, "/steps", pipeline_run_id=run_id, name="server_step")["items"]
    collection = get(zenml_server, f"/steps/{step['id']}")["resources"]["log_collection"]
    [logs_id] = [l["id"] for l in collection if l["body"]["source"] == "step"]
    return {
        "steps/{id}/logs": get(zenml_server, f"/steps/{step['id']}/logs", logs_id=logs_id),
        "logs/{id}/entries": get(zenml_server, f"/logs/{logs_id}/entries")["items"],
    }


@pytest.mark.parametrize("endpoint", ["steps/{id}/logs", "logs/{id}/entries"])
def test_python_and_rust_records_in_time_order(step_logs, endpoint):
    entries = step_logs[endpoint]
    text = [e["message"] for e in entries]
    expected = BEFORE + RUST + AFTER
    got = [(e["message"], e["level"]) for e in entries if e["message"].startswith(("python: ", "rust: "))]
    # A record's fields may follow its message (`rust: fitted the model mean=0.5005`).
    assert len(got) == len(expected) and all(
        (message == want or message.startswith(want + " ")) and level == want_level
        for (message, level), (want, want_level) in zip(got, expected)
    ), text
    # The artifact log store stamps entries when it exports them (not with the record's own
    # time), so the order it returns is the order the step's logging context got them in.
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in entries]
    assert stamps == sorted(stamps), stamps
    [warn] = [e for e in entries if e["message"].startswith("rust: score below threshold")]
    assert warn["filename"] == "examples/zenml/step.rs" and warn["lineno"], warn
    assert warn["module"] == "zenml_step", warn


@pytest.mark.parametrize("endpoint", ["steps/{id}/logs", "logs/{id}/entries"])
def test_plain_output_once_each_with_a_python_steps_levels(step_logs, endpoint):
    """The program's stdout and stderr lines, as the dashboard shows a Python step's print
    output (issue 26): each once, stdout at INFO and stderr at ERROR, after the records."""
    entries = step_logs[endpoint]
    text = [e["message"].rstrip("\n") for e in entries]
    for line, level in zip(PLAIN, (logging.INFO, logging.ERROR)):
        found = [e for e in entries if e["message"].rstrip("\n") == line]
        assert [e["level"] for e in found] == [level], text
    last_rust = max(i for i, m in enumerate(text) if m.startswith("rust: "))
    assert last_rust < text.index(PLAIN[0]) < text.index("python: after the program"), text


@pytest.mark.parametrize("endpoint", ["steps/{id}/logs", "logs/{id}/entries"])
def test_receipt(step_logs, endpoint):
    entries = step_logs[endpoint]
    text = [e["message"] for e in entries]
    [receipt] = [e for e in entries if e["message"].startswith("zenml-otel: ")]
    assert receipt["message"] == (
        "zenml-otel: sh exited 0: 4 records emitted, 4 exported, 0 dropped, 0 failed "
        "(relay received 4)"
    ), receipt
    assert receipt["level"] == logging.INFO
    # After the program's records, before the step's next Python line.
    position = text.index(receipt["message"])
    last_rust = max(i for i, m in enumerate(text) if m.startswith("rust: "))
    assert last_rust < position < text.index("python: after the program"), text
