"""The constants the crate and the package share, read from both sides: the handover variables
(src/handover.rs, src/config/model.rs), the spool format (src/spool/format.rs, segment.rs, the
lock file's name), the stats file's keys (src/batch/receipt.rs) and the `otel` flavor's keys
(src/config/model.rs). A change on one side only fails here, not first in an end-to-end
test."""

import re

import pytest

import spool_testing as sp
from conftest import REPO
from zenml_otel import HANDOVER_VARIABLES
from zenml_otel._delivery import MAX_REQUEST_BYTES
from zenml_otel._handover import (
    CONFIG_FILE_VARIABLE,
    CONFIG_VARIABLE,
    CONSOLE_VARIABLE,
    HANDOVER_VERSION,
    OWNER_FILE_VARIABLE,
    PREFIX,
    SPOOL_VARIABLE,
    STATS_FILE_VARIABLE,
    VERSION_VARIABLE,
)
from zenml_otel._receipt import STATS_KEYS
from zenml_otel._spool import (
    ACKS_EXTENSION,
    CONTEXT_ENTRY,
    RECORD_ENTRY,
    SEGMENT_EXTENSION,
    SPOOL_ENTRY_HEADER_LEN,
    SPOOL_HEADER_LEN,
    SPOOL_LOCK,
    SPOOL_MAGIC,
    SPOOL_VERSION,
)
from zenml_otel._zenml import CONFIG_KEYS

SRC = REPO / "src"


def rust(path):
    return (SRC / path).read_text(encoding="utf-8")


def const(path, name, kind):
    """The value of `const NAME: <kind> = <value>;` in a Rust file, as text."""
    pattern = rf"\bconst {name}: {re.escape(kind)} = (.+?);"
    found = re.findall(pattern, rust(path), re.S)
    assert len(found) == 1, f"src/{path}: expected one `const {name}: {kind}`, found {found}"
    return found[0].strip()


def string(path, name):
    """A `const NAME: &str = "...";`."""
    value = const(path, name, "&str")
    assert re.fullmatch(r'"[^"\\]*"', value), f"src/{path}: {name} is not a plain string: {value}"
    return value[1:-1]


def integer(path, name, kind):
    value = const(path, name, kind)
    assert re.fullmatch(r"\d+", value), f"src/{path}: {name} is not a plain integer: {value}"
    return int(value)


def handover_constants():
    """`pub const NAME: &str = "ZENML_OTEL_..."` of src/handover.rs, by name."""
    pairs = re.findall(r'pub const (\w+): &str = "([^"]*)";', rust("handover.rs"))
    assert pairs, "src/handover.rs: no `pub const NAME: &str` found"
    return dict(pairs)


def test_the_handover_variables_are_the_crates():
    names = handover_constants()
    body = const("handover.rs", "ALL", "&[&str]")
    listed = re.findall(r"\b([A-Z][A-Z0-9_]*)\b", body)
    assert listed, f"src/handover.rs: ALL lists nothing: {body}"
    rust_all = [names[n] for n in listed]
    # HANDOVER_VARIABLES: what a step hands over; the crate also reads the config file, the
    # stats file and owner file (one process's: `child_env` drops them as stale) and the
    # version.
    ours = [*HANDOVER_VARIABLES, CONFIG_FILE_VARIABLE, STATS_FILE_VARIABLE, OWNER_FILE_VARIABLE,
            CONSOLE_VARIABLE, VERSION_VARIABLE]  # fmt: skip
    assert ours == rust_all
    assert all(v.startswith(PREFIX) for v in rust_all)


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (CONFIG_VARIABLE, "LOG_STORE_CONFIG"),
        (CONFIG_FILE_VARIABLE, "LOG_STORE_CONFIG_FILE"),
        (STATS_FILE_VARIABLE, "STATS_FILE"),
        (OWNER_FILE_VARIABLE, "OWNER_FILE"),
        (VERSION_VARIABLE, "HANDOVER_VERSION"),
        (CONSOLE_VARIABLE, "CONSOLE_FIFO"),
    ],
)
def test_the_configuration_and_stats_variables_are_the_crates(ours, theirs):
    assert ours == handover_constants()[theirs]


def test_the_spool_variable_is_the_crates():
    assert config_fields()["spool_dir"][0] == [SPOOL_VARIABLE]
    # The handover reads it as one process's (src/handover.rs `OWNED`).
    assert const("handover.rs", "SPOOL_DIR", "&str") == f'"{SPOOL_VARIABLE}"'


def config_fields():
    """The field table of src/config/model.rs: name -> (its variables, whether it is a key of
    ZenML's `otel` flavor)."""
    pattern = r"^ +(\w+), with_\1: [^=]+ = [^;]+;\s+env \[([^\]]*)\][^;]*;\s+flavor (true|false),"
    found = re.findall(pattern, rust("config/model.rs"), re.M)
    assert found, "src/config/model.rs: no `name, with_name: Type = default; env [...]; flavor`"
    return {name: (re.findall(r'"([^"]+)"', env), flavor == "true") for name, env, flavor in found}


def test_the_otel_flavor_keys_are_the_crates():
    # What a step hands over (CONFIG_KEYS) is what the crate declares as the flavor's keys.
    flavor = {name for name, (_, is_flavor) in config_fields().items() if is_flavor}
    assert set(CONFIG_KEYS) == flavor
    assert len(CONFIG_KEYS) == len(set(CONFIG_KEYS))


def test_the_handover_version_is_the_crates():
    assert integer("handover.rs", "VERSION", "u32") == HANDOVER_VERSION


def test_the_spool_format_is_the_crates():
    magic = const("spool/format.rs", "MAGIC", "&[u8; 8]")
    assert magic == 'b"' + SPOOL_MAGIC.decode("ascii") + '"'
    assert integer("spool/format.rs", "VERSION", "u32") == SPOOL_VERSION
    assert integer("spool/format.rs", "HEADER_LEN", "usize") == SPOOL_HEADER_LEN
    assert integer("spool/format.rs", "ENTRY_HEADER_LEN", "usize") == SPOOL_ENTRY_HEADER_LEN
    assert integer("spool/format.rs", "CONTEXT", "u8") == CONTEXT_ENTRY
    assert integer("spool/format.rs", "RECORD", "u8") == RECORD_ENTRY
    # The tests' own spool writer (spool_testing.py) writes the same format.
    assert (sp.MAGIC, sp.HEADER[8:12], (sp.CONTEXT, sp.RECORD)) == (
        SPOOL_MAGIC,
        SPOOL_VERSION.to_bytes(4, "little"),
        (CONTEXT_ENTRY, RECORD_ENTRY),
    )
    assert len(sp.HEADER) == SPOOL_HEADER_LEN


def test_the_spool_file_names_are_the_crates():
    assert string("spool/segment.rs", "EXTENSION") == SEGMENT_EXTENSION
    assert string("spool/segment.rs", "ACKS_EXTENSION") == ACKS_EXTENSION
    # The lock file: the one name a spool directory is joined with (src/spool*).
    sources = [SRC / "spool.rs", *sorted((SRC / "spool").rglob("*.rs"))]
    joined = {n for f in sources for n in re.findall(r'\bdir\.join\("([^"]+)"\)', f.read_text())}
    assert joined == {SPOOL_LOCK}, f"src/spool*: a spool directory is joined with {joined}"


def test_the_stats_keys_are_the_crates():
    keys = re.findall(r'"(\w+)": stats\.(\w+),', rust("batch/receipt.rs"))
    assert keys, "src/batch/receipt.rs: no `\"key\": stats.field` found"
    assert all(key == field for key, field in keys), keys
    assert tuple(key for key, _ in keys) == STATS_KEYS


def test_the_request_size_limit_is_the_crates():
    # Direct delivery of a spool cuts requests as the crate does by default.
    pattern = r"^ +max_export_batch_bytes, with_max_export_batch_bytes: usize = ([\d_]+);"
    found = re.findall(pattern, rust("config/model.rs"), re.M)
    assert len(found) == 1, f"src/config/model.rs: no plain max_export_batch_bytes default: {found}"
    assert int(found[0].replace("_", "")) == MAX_REQUEST_BYTES
