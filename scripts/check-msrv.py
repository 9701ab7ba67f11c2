#!/usr/bin/env python3
"""Check that the crate's declared `rust-version` is still true.

The crate's `rust-version` must not claim support for a Rust older than what
its locked dependencies need: CI (`.ci/run`) fails as soon as a dependency in
Cargo.lock declares a newer `rust-version`. This walks
the locked graph (`cargo metadata --locked --all-features`) from the root
package along normal and build edges (never dev edges: they don't compile for
users), reads every reached package's `rust_version` and compares.

Exit codes: 0 ok, 1 the declaration is too old, 2 no `rust-version` declared.
`--print-required` prints only the required version (the maximum) and exits 0;
`--metadata FILE` reads that `cargo metadata` output instead of running cargo.

Note: `cargo metadata`'s resolve is a superset of a user's build (it keeps
optional deps named only in weak `dep?/feat` features, e.g. const-hex ->
proptest, and unifies with dev-dependencies' features), so it errs on the safe
side; `cargo tree -e normal,build --all-features --target all` is the exact set.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def key(v):
    parts = [int(p) for p in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def metadata():
    """`cargo metadata`'s output, or with `--metadata FILE` that file's (tests/msrv.rs)."""
    args = sys.argv[1:]
    if "--metadata" in args:
        return json.loads(Path(args[args.index("--metadata") + 1]).read_text())
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    meta = metadata()
    pkgs = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root_id = next(p["id"] for p in meta["packages"]
                   if p["name"] == "zenml-otel" and p["source"] is None)
    declared = pkgs[root_id]["rust_version"]

    seen, todo = {root_id}, [root_id]
    while todo:
        for dep in nodes[todo.pop()]["deps"]:
            if any(k["kind"] in (None, "normal", "build") for k in dep["dep_kinds"]) \
                    and dep["pkg"] not in seen:
                seen.add(dep["pkg"])
                todo.append(dep["pkg"])
    reached = [pkgs[i] for i in seen - {root_id} if pkgs[i]["rust_version"]]

    required = max((p["rust_version"] for p in reached), key=key, default="1.0")
    if declared and key(declared) > key(required):
        required = declared
    if "--print-required" in sys.argv[1:]:
        print(required)
        return 0
    if not declared:
        print(f"zenml-otel declares no rust-version; the locked graph needs {required}")
        return 2

    newer = sorted((p for p in reached if key(p["rust_version"]) > key(declared)),
                   key=lambda p: (key(p["rust_version"]), p["name"]), reverse=True)
    print(f"{len(seen) - 1} packages reached; declared rust-version = {declared}")
    if newer:
        print(f"\n{'package':<32} {'version':<12} rust_version")
        for p in newer:
            print(f"{p['name']:<32} {p['version']:<12} {p['rust_version']}")
    top = sorted(f"{p['name']} {p['version']}" for p in reached
                 if key(p["rust_version"]) == key(required))
    print(f"\nrequired rust-version = {required}" + (f" (needed by {', '.join(top)})" if top else ""))
    if newer:
        print(f"FAIL: rust-version {declared} is too old: {len(newer)} package(s) "
              f"need newer, up to {required}; raise it to {required} or pin older deps")
        return 1
    print("OK: the declared rust-version covers every reached dependency")
    return 0


if __name__ == "__main__":
    sys.exit(main())
