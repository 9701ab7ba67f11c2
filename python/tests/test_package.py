"""The package's shape: its public API is exactly what `__all__` names, each name documented;
it is typed (`py.typed`); `python -m zenml_otel` is its command line."""

import inspect
import subprocess
import sys
from pathlib import Path

import zenml_otel


def test_the_public_api_is_all():
    public = {name for name in vars(zenml_otel) if not name.startswith("_")}
    assert public == set(zenml_otel.__all__)
    assert len(zenml_otel.__all__) == len(set(zenml_otel.__all__))


def test_every_public_name_is_documented():
    for name in zenml_otel.__all__:
        value = getattr(zenml_otel, name)
        if name.isupper():  # a constant: named in the package's docs
            assert f"`{name}`" in (zenml_otel.__doc__ or ""), name
        else:
            assert inspect.getdoc(value), name


def test_it_is_typed():
    assert (Path(zenml_otel.__file__).parent / "py.typed").is_file()


def test_usage():
    bad = subprocess.run([sys.executable, "-m", "zenml_otel"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage: python -m zenml_otel decode" in bad.stderr
