#!/usr/bin/env python3
"""The docs cannot drift from the repository (python3, stdlib only; `.ci/run` runs it).

1. Every repository path the docs cite exists: README.md, docs/*.md, ARCHITECTURE.md,
   CONTRIBUTING.md, BENCHMARKS.md and BENCHMARKS-history.md. A path is a markdown link into the
   repository (relative, or https://github.com/zenml-io/zenml-otel/blob|tree/main/…, or its
   raw.githubusercontent.com form), or a word that starts with one of the repository's
   top-level directories (`src/…`, `tests/…`, `examples/…`, …) or names a top-level file.
   `{a,b}` alternatives are expanded; a trailing `:line` is ignored. A line holding "(removed)"
   is history that must keep a path that is gone: it is not checked.
2. The tables kept in the docs agree with the code:
   - the handover table of docs/zenml-steps.md names exactly the variables of
     src/handover.rs (plus the configuration's ZENML_OTEL_SPOOL_DIR);
   - the variables table of docs/configuration.md gives each field exactly the variables
     src/config/model.rs declares for it, in order (the crate's own tests, src/config/model.rs,
     check that table and the defaults table again from the compiled declaration);
   - the metrics table of docs/metrics.md names exactly the metrics of src/metrics/names.rs,
     each with its instrument and unit.

Usage: python3 scripts/check-docs.py [repo root]; exits 1 naming each problem.
"""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
DOCS = ["README.md", "ARCHITECTURE.md", "CONTRIBUTING.md", "BENCHMARKS.md", "BENCHMARKS-history.md"]
DOCS += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
TOP_DIRS = ("src", "tests", "examples", "scripts", "bench", "benches", "python", "docs", ".ci")
TOP_FILES = ("README.md", "ARCHITECTURE.md", "CONTRIBUTING.md", "BENCHMARKS.md",
             "BENCHMARKS-history.md", "CHANGELOG.md", "LICENSE", "Cargo.toml", "Cargo.lock")
OURS = re.compile(
    r"^https://(?:github\.com/zenml-io/zenml-otel/(?:blob|tree)/main|"
    r"raw\.githubusercontent\.com/zenml-io/zenml-otel/main)/(?P<path>[^#?)]*)"
)
LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<url>[^)\s]+)\)")
PATH = re.compile(
    r"(?<![\w./$~-])(?P<path>(?:" + "|".join(re.escape(d) for d in TOP_DIRS) + r")/"
    r"[\w.{},*/-]*[\w}/*]|(?:" + "|".join(re.escape(f) for f in TOP_FILES) + r")(?![\w-]))"
)

problems: list[str] = []


def expand(path: str) -> list[str]:
    """`a/{b,c}.rs` → `a/b.rs`, `a/c.rs`."""
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def exists(path: str) -> bool:
    if any(ch in path for ch in "*"):
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


def check_path(doc: str, lineno: int, path: str) -> None:
    path = re.sub(r":\d+$", "", path.split("#")[0]).rstrip(".,;:")
    if not path or "{number" in path:
        return
    for one in expand(path):
        if not exists(one):
            problems.append(f"{doc}:{lineno}: `{one}` does not exist (write \"(removed)\" on the line if history must keep it)")


def check_paths(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    in_fence = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if "(removed)" in line:
            continue
        rest = line
        for m in LINK.finditer(line):
            url = m.group("url")
            ours = OURS.match(url)
            if ours:
                check_path(doc, lineno, ours.group("path"))
            elif not re.match(r"^[a-z]+:", url) and not url.startswith("#"):
                target = (ROOT / doc).parent / url.split("#")[0]
                check_path(doc, lineno, str(target.resolve().relative_to(ROOT.resolve())))
            else:
                # An external link: its text (say `docs/otel/sdk-metrics.md` of another
                # repository) is not ours.
                rest = rest.replace(m.group(0), " ")
                continue
            rest = rest.replace(m.group(0), " " + m.group("text") + " ")
        for m in PATH.finditer(rest):
            path = m.group("path")
            if path.startswith("target/"):
                continue
            check_path(doc, lineno, path)


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after `heading`."""
    start = text.index(heading)
    lines = text[start:].splitlines()
    rows = list(itertools.takewhile(lambda l: l.startswith("|"),
                                    itertools.dropwhile(lambda l: not l.startswith("|"), lines)))
    return [[c.strip() for c in row.strip("|").split(" | ")] for row in rows[2:]]


def check_handover_table() -> None:
    code = (ROOT / "src/handover.rs").read_text(encoding="utf-8")
    declared = set(re.findall(r'pub const [A-Z_]+: &str = "(ZENML_OTEL_[A-Z_]+)";', code))
    doc = "docs/zenml-steps.md"
    text = (ROOT / doc).read_text(encoding="utf-8")
    listed: set[str] = set()
    for cells in table_rows(text, "| handover variable |"):
        last = None
        for word in re.findall(r"`([^`]+)`", cells[0]):
            if word.startswith("ZENML_OTEL_"):
                last = word
                listed.add(word)
            elif word.startswith("…_") and last:
                # `ZENML_OTEL_PIPELINE_ID`, `…_NAME`: the same prefix, another last part.
                listed.add(last.rsplit("_", 1)[0] + word[1:])
    config_vars = set(re.findall(r'"(ZENML_OTEL_[A-Z_]+)"', (ROOT / "src/config/model.rs").read_text()))
    extra = listed - declared - config_vars
    missing = declared - listed
    if extra:
        problems.append(f"{doc}: the handover table names {sorted(extra)}, which src/handover.rs does not declare")
    if missing:
        problems.append(f"{doc}: the handover table leaves out {sorted(missing)} (src/handover.rs)")


def check_variables_table() -> None:
    model = (ROOT / "src/config/model.rs").read_text(encoding="utf-8")
    declared: dict[str, list[str]] = {}
    for m in re.finditer(r"^\s{4}(\w+), with_\w+: .*?;\s*env \[(.*?)\]", model, re.S | re.M):
        declared[m.group(1)] = re.findall(r'"([A-Z_]+)"', m.group(2))
    if len(declared) < 20:
        problems.append(f"src/config/model.rs: only {len(declared)} fields parsed; the check needs updating")
        return
    doc = "docs/configuration.md"
    text = (ROOT / doc).read_text(encoding="utf-8")
    seen = set()
    for cells in table_rows(text, "## Where values come from"):
        field = cells[0].strip("`")
        seen.add(field)
        variables = [w for w in re.findall(r"`([^`]+)`", cells[1]) if re.fullmatch(r"[A-Z_]{2,}", w)]
        if field not in declared:
            problems.append(f"{doc}: the variables table names `{field}`, which is not a field")
        elif variables != declared[field]:
            problems.append(f"{doc}: `{field}` reads {declared[field]} (src/config/model.rs), the table says {variables}")
    for field, variables in declared.items():
        if variables and field not in seen:
            problems.append(f"{doc}: the variables table leaves out `{field}` ({variables})")
    fields_table = {c[0] for c in table_rows(text, "## The fields")}
    named = {n.strip("`") for cell in fields_table for n in cell.split(", ")}
    if named != set(declared):
        problems.append(f"{doc}: the fields table and src/config/model.rs differ: "
                        f"only in the docs {sorted(named - set(declared))}, only in the code {sorted(set(declared) - named)}")


def check_metrics_table() -> None:
    code = (ROOT / "src/metrics/names.rs").read_text(encoding="utf-8")
    declared = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(r'metric\(\s*"([a-z_.]+)",\s*(Counter|UpDownCounter),\s*"([^"]+)"', code)
    }
    if len(declared) < 10:
        problems.append(f"src/metrics/names.rs: only {len(declared)} metrics parsed; the check needs updating")
        return
    doc = "docs/metrics.md"
    text = (ROOT / doc).read_text(encoding="utf-8")
    listed = {}
    for cells in table_rows(text, "| metric |"):
        name = cells[0].strip("`")
        instrument, _, unit = cells[1].partition(", ")
        listed[name] = (instrument, unit.strip("`"))
    for name in sorted(set(declared) | set(listed)):
        if name not in listed:
            problems.append(f"{doc}: the metrics table leaves out `{name}` (src/metrics/names.rs)")
        elif name not in declared:
            problems.append(f"{doc}: the metrics table names `{name}`, which src/metrics/names.rs does not declare")
        elif listed[name] != declared[name]:
            problems.append(f"{doc}: `{name}` is {declared[name]} in src/metrics/names.rs, the table says {listed[name]}")


def main() -> int:
    for doc in DOCS:
        if (ROOT / doc).exists():
            check_paths(doc)
        else:
            problems.append(f"{doc} is missing")
    check_handover_table()
    check_variables_table()
    check_metrics_table()
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"check-docs: {len(DOCS)} files, every cited path exists, the handover, configuration "
              "and metrics tables match the code")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
