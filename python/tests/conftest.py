"""Shared set-up: `zenml_otel` importable as users import it, and one throw-away ZenML project.

The environment ZenML reads at import (its own config directory, analytics off) is set here,
before any test imports ZenML, so every test shares one project and one local store.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent.parent

try:  # installed (`pip install ./python`) or on PYTHONPATH, as users have it
    import zenml_otel  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "python" / "src"))
    # and for the processes the tests start (`python -m zenml_otel`, pipelines)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "python" / "src")] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    )

PROJECT = Path(tempfile.mkdtemp(prefix="zenml-otel-pytest-"))
os.environ.update(
    ZENML_CONFIG_PATH=str(PROJECT / "config"),
    ZENML_ANALYTICS_OPT_IN="false",
    ZENML_ENABLE_RICH_TRACEBACK="false",
)
for name in list(os.environ):  # a stale handover from a step above us
    if name.startswith("ZENML_OTEL_"):
        del os.environ[name]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "latest_zenml: written against ZenML 0.98's log-store API (a custom flavor); "
        "scripts/zenml-matrix.sh deselects it on the older releases",
    )


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(PROJECT, ignore_errors=True)


# --- shared by the tests that run the real Rust program or a ZenML server -----------------------

RUST_STEP = REPO / "target" / "debug" / "examples" / "zenml-step"
ZENML = Path(sys.executable).with_name("zenml")  # the venv's CLI


@pytest.fixture(scope="session")
def rust_step_binary():
    """target/debug/examples/zenml-step: required in CI, else its tests are skipped."""
    if not RUST_STEP.exists():
        assert os.environ.get("CI") != "true", f"CI builds {RUST_STEP}: it is missing"
        pytest.skip(f"{RUST_STEP} is not built (cargo build --all-features --example zenml-step)")
    return RUST_STEP


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ZenmlServer:
    """A local ZenML server (`zenml login --local`) with a config directory of its own.

    `env` is the environment of a client connected to it (`zenml`, `python pipeline.py`), `root`
    a directory for the project's files, `url` the server's base URL.
    """

    def __init__(self, root, port):
        self.root, self.port = root, port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_OTEL_")}
        self.env.update(
            ZENML_CONFIG_PATH=str(root / "config"),
            ZENML_ANALYTICS_OPT_IN="false",
            ZENML_AUTO_OPEN_DASHBOARD="false",
            ZENML_ENABLE_RICH_TRACEBACK="false",
            PYTHONPATH=os.pathsep.join(
                [str(REPO / "python" / "src")] + [p for p in [os.environ.get("PYTHONPATH")] if p]
            ),
        )

    def zenml(self, *args, timeout=120):
        result = subprocess.run([str(ZENML), *args], cwd=self.root, env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"zenml {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def pid(self):
        """The server daemon's process id, while its pid file is there."""
        try:
            return int((self.root / "config/zen_server/daemon/service.pid").read_text().strip())
        except (OSError, ValueError):
            return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="module")
def zenml_server(tmp_path_factory):
    """Starts a local ZenML server on a free port, a ZenML project (`zenml init`) next to it;
    stops the server at the end (`zenml logout --local`, then its daemon's pid if still up)."""
    root = tmp_path_factory.mktemp("zenml-server")
    server = ZenmlServer(root, free_port())
    pid = None
    try:
        server.zenml("login", "--local", "--port", str(server.port))
        pid = server.pid()
        server.zenml("init")
        yield server
    finally:
        pid = pid or server.pid()
        subprocess.run([str(ZENML), "logout", "--local"], cwd=root, env=server.env,
                       capture_output=True, timeout=60)
        deadline = time.monotonic() + 10
        while pid and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid and _alive(pid):  # ours, and `zenml logout` did not stop it
            os.kill(pid, signal.SIGKILL)
