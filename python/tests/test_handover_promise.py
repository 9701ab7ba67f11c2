"""The handover keeps the delivery promise (issue 25): the program's children, secrets,
proxies, an interrupted call, and a helper and a crate of different releases. Real ZenML
pipelines (the default stack: the relay), read back as the dashboard reads a step's logs."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import PROJECT, TESTS
from test_pipelines import (  # noqa: F401 (project is a fixture)
    BINARY,
    PROG,
    fake,
    messages,
    output,
    project,
    receipt,
    step_logs,
    step_metadata,
)
from zenml_otel import _run
from zenml_otel._handover import CONFIG_FILE_VARIABLE, CONFIG_VARIABLE, HANDOVER_VERSION
from zenml_otel._output import Pump


@pytest.fixture(scope="module")
def pipelines(project):  # noqa: F811
    shutil.copy(TESTS / "handover_pipelines.py", PROJECT / "handover_pipelines.py")
    import handover_pipelines

    return handover_pipelines


def rust_lines(entries):
    return [m for m in messages(entries) if m.startswith("rust: ")]


def test_only_the_program_uses_its_spool_and_stats_not_its_children(pipelines, rust_step_binary):
    """The program starts two copies of itself while it holds its spool: they log into the
    step (the handover's context and relay), but take neither its spool nor its receipt."""
    run = pipelines.env_pipeline(cmd=[str(rust_step_binary)],
                                 extra={"ZENML_OTEL_EXAMPLE_CHILDREN": "2"})
    assert output(run, "env_step") == 0, "a child failed (its spool in use by another process?)"
    entries = step_logs(run, "env_step")
    assert len(rust_lines(entries)) == 12, messages(entries)
    line = receipt(entries).message
    assert "4 records emitted, 4 exported, 0 dropped, 0 failed (relay received 12)" in line, line
    meta = step_metadata(run, "env_step")["zenml-otel zenml-step"]
    assert meta["handover_version"] == HANDOVER_VERSION


PRINT_ENV = (
    "import json, os, sys\n"
    "path = os.environ.get('ZENML_OTEL_LOG_STORE_CONFIG_FILE')\n"
    "facts = {'env': dict(os.environ), 'path': path,\n"
    "         'mode': os.stat(path).st_mode & 0o777 if path else None,\n"
    "         'config': open(path).read() if path else None}\n"
    "open(os.environ['FAKE_OUT'], 'w').write(json.dumps(facts))\n"
)


def test_the_relay_s_secret_is_in_a_private_file_gone_after_the_call(pipelines, tmp_path):
    out = tmp_path / "facts.json"
    run = pipelines.env_pipeline(cmd=[sys.executable, "-c", PRINT_ENV],
                                 extra={"FAKE_OUT": str(out)})
    assert output(run, "env_step") == 0
    facts = json.loads(out.read_text())
    env, config = facts["env"], json.loads(facts["config"] or "{}")
    assert CONFIG_VARIABLE not in env and env[CONFIG_FILE_VARIABLE] == facts["path"]
    [secret] = config["headers"].values()
    assert secret and not any(secret in value for value in env.values()), "a secret in environ"
    assert facts["mode"] == 0o600
    assert not os.path.exists(facts["path"]), "the file outlived the call"


def test_the_relay_is_never_reached_through_a_proxy(pipelines):
    """The fake program posts with urllib, which honours the proxy variables as most clients
    do; the proxy here is a closed port."""
    dead = "http://127.0.0.1:9"
    proxies = {name: dead for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")}
    proxies.update(NO_PROXY="example.com", no_proxy="example.com")
    run = pipelines.env_pipeline(cmd=fake("ok"), extra=proxies)
    assert output(run, "env_step") == 0, "the program's export went to the proxy"
    fakes = [m for m in messages(step_logs(run, "env_step")) if m.startswith("fake: ")]
    assert len(fakes) == 3, fakes


def test_a_program_built_against_the_first_handover_under_this_helper(pipelines):
    """fake_program.py is frozen to handover 1 (the configuration from either variable, stats
    without `handover_version`, no owner file): it still relays and gets its receipt."""
    run = pipelines.env_pipeline(cmd=fake("ok"), extra={})
    entries = step_logs(run, "env_step")
    assert len([m for m in messages(entries) if m.startswith("fake: ")]) == 3
    line = receipt(entries).message
    assert line.endswith("3 records emitted, 3 exported, 0 dropped, 0 failed (relay received 3)")
    meta = step_metadata(run, "env_step")[f"zenml-otel {PROG}"]
    assert meta["handover_version"] == 1 and meta["exported"] == 3


def test_this_crate_under_the_first_handover(pipelines, rust_step_binary):
    """Today's program, started as the helper before handover 2 started it, ignores what it
    does not get: it relays, and writes its stats (the spool and stats file are its own)."""
    run = pipelines.first_helper_pipeline(binary=str(rust_step_binary))
    stats = json.loads(output(run, "first_helper_step"))
    assert (stats["emitted"], stats["exported"], stats["dropped"]) == (4, 4, 0), stats
    assert len(rust_lines(step_logs(run, "first_helper_step"))) == 4


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_call_still_delivers_the_spool(monkeypatch, tmp_path, interrupt):
    """Ctrl-C (or a SystemExit from a signal handler) while the program runs: its spool is
    delivered before the interruption goes on."""
    delivered = []
    monkeypatch.setattr(_run, "deliver_spool", lambda *args: delivered.append(args))

    real_run = subprocess.run

    def interrupted(cmd, **kwargs):
        real_run(cmd, **kwargs)
        raise interrupt()

    monkeypatch.setattr(_run.subprocess, "run", interrupted)
    with pytest.raises(interrupt):
        _run._run_program(["true"], dict(os.environ), {}, Pump(), str(tmp_path), {}, None)
    assert delivered == [(str(tmp_path), {}, None)]
