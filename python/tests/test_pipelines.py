"""The relay inside real ZenML pipelines (local orchestrator, in this process), read back
through the step's log store as ZenML's dashboard reads it."""

import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PROJECT, REPO, TESTS
from zenml_otel import decode_export_request

BINARY = REPO / "target" / "debug" / "examples" / "zenml-step"
PROG = Path(sys.executable).name  # the receipt names the program by its file name
COPIED = ("project_pipelines.py", "fake_program.py", "otlp_testing.py", "recording_store.py",
          "spool_testing.py")


@pytest.fixture(scope="session")
def project():
    """One ZenML project for every test here: `zenml init` in PROJECT, the default stack."""
    for name in COPIED:
        shutil.copy(TESTS / name, PROJECT / name)
    os.chdir(PROJECT)
    sys.path.insert(0, str(PROJECT))
    zenml = Path(sys.executable).with_name("zenml")
    subprocess.run([str(zenml), "init"], cwd=PROJECT, check=True, capture_output=True)
    import project_pipelines

    return project_pipelines


def fake(mode, *args):
    return [sys.executable, str(PROJECT / "fake_program.py"), mode, *args]


def step_logs(run, step_name="program_step"):
    """The step's log entries, as the dashboard gets them from the step's log store."""
    from zenml.client import Client
    from zenml.utils.logging_utils import search_logs_by_source

    client = Client()
    step = client.get_pipeline_run(run.id).steps[step_name]
    logs = search_logs_by_source(step.log_collection, "step")
    assert logs is not None, step.log_collection
    fetched = client.active_stack.log_store.fetch(logs_model=logs, limit=100_000)
    return getattr(fetched, "items", fetched)  # a list on ZenML 0.93, a page since


def messages(entries):
    return [e.message for e in entries]


def output(run, step_name="program_step"):
    from zenml.client import Client

    return Client().get_pipeline_run(run.id).steps[step_name].outputs["output"][0].load()


def receipt(entries):
    [line] = [e for e in entries if e.message.startswith("zenml-otel: ")]
    return line


def step_metadata(run, step_name="program_step"):
    from zenml.client import Client

    return Client().get_pipeline_run(run.id).steps[step_name].run_metadata


def index(entries, text):
    return next(i for i, e in enumerate(entries) if text in e.message)


def test_rust_program_logs_in_the_artifact_log_store(project):
    if not BINARY.exists():
        assert os.environ.get("CI") != "true", f"CI builds {BINARY}: it is missing"
        pytest.skip(f"{BINARY} is not built (cargo build --example zenml-step)")
    run = project.program_pipeline(cmd=[str(BINARY)])
    entries = step_logs(run)
    text = messages(entries)
    before, after = index(entries, "python: before"), index(entries, "python: after")
    rust = [i for i, m in enumerate(text) if m.startswith("rust: ")]
    assert len(rust) == 4, text
    assert before < min(rust) and max(rust) < after, text
    stamps = [e.timestamp for e in entries if e.timestamp]
    assert stamps == sorted(stamps)
    warn = entries[index(entries, "rust: score below threshold")]
    assert warn.level.name in ("WARN", "WARNING") and warn.filename == "examples/zenml/step.rs"
    assert warn.lineno and warn.module == "zenml_step"
    assert entries[index(entries, "rust: loading")].level.name == "INFO"
    line = receipt(entries).message
    assert line.startswith("zenml-otel: zenml-step exited 0: "), line
    assert "(relay received 4)" in line, line
    if "left no stats" not in line:  # a crate that writes $ZENML_OTEL_STATS_FILE
        assert "4 records emitted, 4 exported, 0 dropped, 0 failed" in line, line


def test_receipt_and_metadata(project):
    run = project.program_pipeline(cmd=fake("ok"))
    entries = step_logs(run)
    fakes = [m for m in messages(entries) if m.startswith("fake: ")]
    assert fakes == ["fake: record 0 i=0", "fake: record 1 i=1", "fake: record 2 i=2"]
    assert entries[index(entries, "fake: record 1 i=1")].level.name in ("WARN", "WARNING")
    line = receipt(entries)
    assert line.message == (
        f"zenml-otel: {PROG} exited 0: 3 records emitted, 3 exported, 0 dropped, "
        "0 failed (relay received 3)"
    )
    assert line.level.name == "INFO"
    meta = step_metadata(run)[f"zenml-otel {PROG}"]
    assert meta["emitted"] == 3 and meta["exported"] == 3 and meta["relay_received"] == 3
    assert meta["exit_code"] == 0 and meta["logs"] == "relay"


def test_non_zero_exit_raises_and_says_so(project):
    run = project.program_pipeline(cmd=fake("exit3"))
    assert output(run) == 3
    line = receipt(step_logs(run))
    assert line.message.startswith(f"zenml-otel: {PROG} exited 3: 3 records emitted")
    assert line.level.name in ("WARN", "WARNING")


def test_no_stats_file(project):
    run = project.program_pipeline(cmd=fake("nostats"))
    line = receipt(step_logs(run)).message
    assert line == f"zenml-otel: {PROG} exited 0: left no stats (relay received 3)"


def test_killed_program_returns_promptly(project):
    started = time.monotonic()
    run = project.program_pipeline(cmd=fake("kill"))
    assert time.monotonic() - started < 60
    assert output(run) == -signal.SIGKILL
    entries = step_logs(run)
    assert "fake: record 0 i=0" in messages(entries)
    line = receipt(entries).message
    assert line == f"zenml-otel: {PROG} killed by SIGKILL: left no stats (relay received 1)"


def test_a_killed_programs_spool_reaches_the_steps_logs(project, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_OUT", str(tmp_path / "spool"))
    run = project.program_pipeline(cmd=fake("spoolkill", "7"))
    assert output(run) == -signal.SIGKILL
    entries = step_logs(run)
    fakes = [m for m in messages(entries) if m.startswith("fake: ")]
    # Each once: the 2 the relay stored before the kill are not delivered again.
    assert fakes == [f"fake: record {i} i={i}" for i in range(7)]
    record = entries[index(entries, "fake: record 5 i=5")]
    assert (record.filename, record.lineno, record.module) == ("src/fake.rs", 15, "fake::main")
    assert index(entries, "fake: record 6") < index(entries, "python: after")
    line = receipt(entries)
    meta = step_metadata(run)[f"zenml-otel {PROG}"]
    kept = Path(meta["spool_unreadable_kept"])  # the torn segment (test_spool_kept.py)
    assert (kept / "0000000000000001.spool").is_file()
    shutil.rmtree(kept)
    assert line.message == (
        f"zenml-otel: {PROG} killed by SIGKILL: left no stats (relay received 2); delivered 5 "
        f"records from its spool (2 already relayed, 1 torn tail skipped); what it could not "
        f"read is kept in {kept}"
    )
    assert line.level.name in ("WARN", "WARNING")
    assert (meta["spool_delivered"], meta["spool_duplicates"], meta["spool_torn"]) == (5, 2, 1)
    spool = Path((tmp_path / "spool").read_text())
    assert spool.name.startswith("zenml-otel-spool-") and not spool.exists()


def test_a_killed_programs_spool_reaches_the_otel_stores_collector(project, tmp_path, monkeypatch):
    from zenml.client import Client
    from zenml.enums import StackComponentType as T

    from otlp_testing import Collector

    monkeypatch.setenv("FAKE_OUT", str(tmp_path / "spool"))
    client = Client()
    with Collector() as collector:
        client.create_stack_component(name="otel_spool", flavor="otel", component_type=T.LOG_STORE,
                                      configuration={"endpoint": collector.endpoint, "compression": "gzip",
                                                     "headers": {"x-test": "spool"}})
        client.create_stack(name="otel_spool_stack", components={
            T.ORCHESTRATOR: "default", T.ARTIFACT_STORE: "default", T.LOG_STORE: "otel_spool"})
        client.activate_stack("otel_spool_stack")
        try:
            run = project.program_pipeline(cmd=fake("spoolkill", "4"))
        finally:
            client.activate_stack("default")
        receipt_line = wait_for_receipt(collector)
    assert output(run) == -signal.SIGKILL
    delivered = [
        (path, headers, body) for path, headers, body, status in collector.requests
        if path == "/v1/logs" and status == 200
    ]
    [(path, headers, body)] = delivered  # the program posted to the endpoint as given, ZenML too
    assert headers.get("x-test") == "spool" and headers.get("Content-Encoding") == "gzip"
    [resource] = decode_export_request(gzip.decompress(body))
    assert resource["resource"] == {"service.name": "zenml", "telemetry.sdk.language": "rust"}
    [scope] = resource["scopes"]
    assert scope["name"] == "fake"
    assert [r["body"] for r in scope["records"]] == [f"fake: record {i}" for i in range(4)]
    assert scope["records"][3]["attributes"] == {
        "code.file.path": "src/fake.rs", "code.namespace": "fake::main", "code.line.number": 13, "i": 3}
    # Direct: no relay to say which ones the collector already had (at-least-once).
    meta = step_metadata(run)[f"zenml-otel {PROG}"]
    shutil.rmtree(meta["spool_unreadable_kept"])  # the torn segment (test_spool_kept.py)
    assert receipt_line.endswith(
        "killed by SIGKILL: left no stats; delivered 4 records from its spool (1 torn tail skipped)"
        f"; what it could not read is kept in {meta['spool_unreadable_kept']}")
    assert (meta["logs"], meta["spool_delivered"]) == ("direct", 4)
    assert not Path((tmp_path / "spool").read_text()).exists()


def wait_for_receipt(collector, timeout=30):
    """The receipt, once ZenML's own exporter has sent the step's Python records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for text in collector.strings():
            if text.startswith("zenml-otel: "):
                return text
        time.sleep(0.2)
    raise AssertionError("no receipt reached the collector")


def test_no_secret_is_401_and_stores_nothing(project, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_OUT", str(tmp_path / "status"))
    run = project.program_pipeline(cmd=fake("nosecret"))
    assert (tmp_path / "status").read_text() == "401"
    entries = step_logs(run)
    assert not [m for m in messages(entries) if m.startswith("fake: ")]
    assert "1 rejected requests" in receipt(entries).message


def test_malformed_body_is_400_and_the_relay_goes_on(project, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_OUT", str(tmp_path / "status"))
    run = project.program_pipeline(cmd=fake("garbage"))
    assert (tmp_path / "status").read_text() == "400"
    assert "fake: record 0 i=0" in messages(step_logs(run))


def test_direct_mode_starts_no_relay(project, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_OUT", str(tmp_path / "status"))
    run = project.program_pipeline(cmd=[sys.executable, str(PROJECT / "fake_program.py"), "nohandover"], logs="direct")
    # Without a handed-over configuration the fake program fails on its first line.
    assert output(run) != 0
    line = receipt(step_logs(run)).message
    assert "relay received" not in line


def test_relay_env_serves_several_processes(project):
    run = project.two_processes_pipeline()
    entries = step_logs(run, "two_processes_step")
    assert sum(m.startswith("fake: record") for m in messages(entries)) == 6


@pytest.mark.latest_zenml
def test_custom_log_store_flavor_receives_the_records(project):
    from zenml.client import Client
    from zenml.enums import StackComponentType

    import recording_store

    client = Client()
    client.create_flavor(source="recording_store.RecordingLogStoreFlavor",
                         component_type=StackComponentType.LOG_STORE)
    client.create_stack_component(name="recording", flavor="recording",
                                  component_type=StackComponentType.LOG_STORE, configuration={})
    client.create_stack(name="recording_stack", components={
        StackComponentType.ORCHESTRATOR: "default",
        StackComponentType.ARTIFACT_STORE: "default",
        StackComponentType.LOG_STORE: "recording",
    })
    client.activate_stack("recording_stack")
    try:
        run = project.program_pipeline(cmd=fake("ok"))
    finally:
        client.activate_stack("default")
    step = client.get_pipeline_run(run.id).steps["program_step"]
    log_id = str(next(l for l in step.log_collection if l.source == "step").id)
    mine = [(r, m) for i, r, m in recording_store.RECEIVED if i == log_id]
    text = [r.getMessage() for r, _ in mine]
    assert text.index("python: before the program") < text.index("fake: record 0 i=0")
    assert text.index("fake: record 2 i=2") < text.index("python: after the program")
    record, metadata = mine[text.index("fake: record 1 i=1")]
    assert (record.name, record.levelname, record.pathname, record.lineno) == ("fake", "WARNING", "src/fake.rs", 11)
    assert metadata["i"] == 1 and metadata["code.filepath"] == "src/fake.rs"


def test_an_aborted_rust_programs_spool_reaches_the_steps_logs(project, rust_step_binary, monkeypatch):
    """The real program, ended by abort() right after its records: no guard dropped, no
    shutdown, its 1 s schedule delay not yet over; its records reach the step from the spool."""
    import zenml_otel._spool

    spools = []
    new_spool_dir = zenml_otel._spool.new_spool_dir
    monkeypatch.setattr(zenml_otel._spool, "new_spool_dir",
                        lambda: spools.append(new_spool_dir()) or spools[-1])
    run = project.abort_pipeline(binary=str(rust_step_binary))
    assert output(run, "abort_step") == -signal.SIGABRT
    entries = step_logs(run, "abort_step")
    text = messages(entries)
    rust = [m for m in text if m.startswith("rust: ")]
    # Each exactly once, in the order logged (the relay received none before the abort).
    assert rust == ["rust: loading the features threads=2", "rust: fitted the model mean=0.5005",
                    "rust: score below threshold score=0.5005 threshold=0.9", "rust: done",
                    "rust: aborting"], text
    before, after = index(entries, "python: before"), index(entries, "python: after")
    positions = [i for i, m in enumerate(text) if m.startswith("rust: ")]
    assert before < min(positions) and max(positions) < after, text
    aborting = entries[index(entries, "rust: aborting")]
    assert aborting.level.name == "ERROR" and aborting.filename == "examples/zenml/step.rs"
    line = receipt(entries)
    assert line.message.startswith("zenml-otel: zenml-step killed by SIGABRT: "), line.message
    assert "(relay received 0); delivered 5 records from its spool" in line.message, line.message
    assert line.level.name in ("WARN", "WARNING")
    meta = step_metadata(run, "abort_step")["zenml-otel zenml-step"]
    assert meta["exit_code"] == -signal.SIGABRT and meta["spool_delivered"] == 5
    [spool] = spools
    assert Path(spool).name.startswith("zenml-otel-spool-") and not Path(spool).exists()
