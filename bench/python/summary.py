#!/usr/bin/env python3
"""Summarises one `scripts/bench.sh` run: every `RESULT {json}` line of the harness
(`bench/src/throughput.rs`) and of `bench/python/reference.py` found in the files of a results
directory, plus criterion's estimates (`target/criterion/**/new/estimates.json`).

    python3 bench/python/summary.py <results-dir> [--criterion target/criterion] [--json]

Prints a human summary, with the goals of the performance issue checked where they apply, and
(with --json) one machine-readable `SUMMARY {json}` line. Uses the standard library only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys


def load_results(directory: str) -> list[dict]:
    results = []
    for path in sorted(glob.glob(os.path.join(directory, "*.txt"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("RESULT "):
                    try:
                        results.append(json.loads(line[len("RESULT "):]))
                    except json.JSONDecodeError:
                        print(f"warning: unparsable line in {path}: {line.strip()}", file=sys.stderr)
    return results


def load_criterion(root: str) -> dict[str, float]:
    """full benchmark id -> mean time per iteration in ns."""
    out = {}
    for est in glob.glob(os.path.join(root, "**", "new", "estimates.json"), recursive=True):
        bench = os.path.join(os.path.dirname(est), "benchmark.json")
        try:
            with open(bench) as f:
                full_id = json.load(f)["full_id"]
            with open(est) as f:
                out[full_id] = json.load(f)["mean"]["point_estimate"]
        except (OSError, KeyError, json.JSONDecodeError):
            continue
    return out


def pick(results, **match):
    return [r for r in results if all(r.get(k) == v for k, v in match.items())]


def check(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def fmt_ns(ns: float) -> str:
    return f"{ns / 1000:.2f} us" if ns >= 1000 else f"{ns:.1f} ns"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--criterion", default="target/criterion")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results = load_results(args.directory)
    summary: dict = {}
    lines: list[str] = []
    say = lines.append

    # ---------------------------------------------------------------- criterion (per event)
    crit = load_criterion(args.criterion)
    if crit:
        say("== criterion: cost of one event on the logging thread (cargo bench --bench layer) ==")
        for name in sorted(crit):
            say(f"  {name:55} {fmt_ns(crit[name])}")
        pairs = [
            ("event_in_run_span/zenml_otel", "event_in_run_span/official_bridge"),
            ("event_in_run_span_paced/zenml_otel", "event_in_run_span_paced/official_bridge"),
            ("event_in_run_span_threads/zenml_otel/2", "event_in_run_span_threads/official_bridge/2"),
            ("event_in_run_span_threads/zenml_otel/8", "event_in_run_span_threads/official_bridge/8"),
        ]
        summary["criterion_ns"] = crit
        for ours, bridge in pairs:
            if ours in crit and bridge in crit:
                say(f"  {ours} vs {bridge}: ours {crit[bridge] / crit[ours]:.2f}x faster per event")
        say("")

    # ---------------------------------------------------------------- P2 throughput
    rust = pick(results, scenario="throughput")
    rust = [r for r in rust if "ours_records_per_s" in r]
    py = [r for r in pick(results, scenario="throughput", impl="python") if "python_records_per_s" in r]
    say("== P2 delivered throughput (first emit -> last record acknowledged by rotel, OTLP/HTTP protobuf) ==")
    if rust:
        r = rust[-1]
        o, b = r["ours_records_per_s"], r["bridge_records_per_s"]
        say(f"  ours   {o:12.0f} records/s   (median of {r['reps']}, N={r['n']})")
        say(f"  bridge {b:12.0f} records/s")
        say(f"  ours / official bridge = {o / b:.2f}x   goal >= 1.5x: {check(o / b >= 1.5)}")
        summary["p2_ours_over_bridge"] = o / b
        for side in ("ours", "bridge"):
            cpu = r.get(f"{side}_cpu_us_per_record") or []
            if cpu:
                roles = sorted({k for c in cpu for k in c})
                med = {k: statistics.median([c.get(k, 0.0) for c in cpu]) for k in roles}
                say(f"  CPU us/record {side:6}: " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))
        if py:
            p = py[-1]["python_records_per_s"]
            say(f"  python {p:12.0f} records/s   (median of {py[-1]['reps']}, N={py[-1]['n']}, "
                f"opentelemetry-sdk {py[-1].get('opentelemetry_sdk')})")
            say(f"  ours / python = {o / p:.1f}x   goal >= 50x: {check(o / p >= 50)}")
            summary["p2_ours_over_python"] = o / p
            summary["p2_bridge_over_python"] = b / p
    else:
        skipped = [r for r in pick(results, scenario="throughput") if "skipped" in r]
        say("  not measured" + (f": {skipped[0]['skipped']}" if skipped else ""))
    say("")

    # ---------------------------------------------------------------- P3 burst
    burst = pick(results, scenario="burst")
    say("== P3 burst: 20,000 records at once, queue 2048 / delay 1000 ms / batch 512 ==")
    impls = []
    for r in burst:
        if "delivered" in r and r.get("impl") not in impls:
            impls.append(r["impl"])
    for impl in impls:
        rows = [r for r in burst if r.get("impl") == impl and "delivered" in r]
        delivered = [r["delivered"] for r in rows]
        dropped = [r["dropped"] for r in rows]
        emit = [r["emit_ms"] for r in rows]
        exact = all(r.get("accounting_exact", True) for r in rows)
        arrived = [r.get("arrived_at_sink") for r in rows if r.get("arrived_at_sink") is not None]
        extra = f", arrived {arrived}" if arrived else ""
        acc = ", emitted == exported+dropped+failed+rejected in every rep" if exact and impl.startswith("ours") else ""
        if not exact:
            acc = ", ACCOUNTING MISMATCH"
        say(f"  {impl:10} delivered {delivered} dropped {dropped} (emit {', '.join(f'{e:.1f}' for e in emit)} ms)"
            f"{extra}{acc}")
        summary[f"p3_{impl}_delivered_median"] = statistics.median(delivered)
    say("")

    # ---------------------------------------------------------------- P4 memory and runs
    say("== P4 memory ==")
    for r in pick(results, scenario="memory"):
        if "peak_rss_growth_mb" not in r:
            say(f"  memory: not measured ({r.get('skipped')})")
            continue
        say(f"  {r['n']:,} records at full speed: peak RSS growth {r['peak_rss_growth_mb']:.1f} MB "
            f"(limit 50 MB: {check(r['peak_rss_growth_mb'] < 50)}), threads {r['threads_before']} -> "
            f"{r['threads_max_during']} -> {r['threads_after']}, exported {r['exported']:,}, dropped "
            f"{r['dropped']:,}, accounting exact {r['accounting_exact']}, emit {r['emit_records_per_s']:,.0f}/s")
        summary["p4_peak_rss_growth_mb"] = r["peak_rss_growth_mb"]
    for r in pick(results, scenario="runs"):
        waves = r["waves"]
        say(f"  {r['runs']} runs x 2 steps open at once ({r['spans_open']} spans), {len(waves)} waves: "
            f"extra threads {r['extra_threads']} ({check(r['extra_threads'] <= 0)}), RSS "
            f"{r['rss_before_mb']:.1f} MB -> during {waves[0]['rss_during_mb']:.1f} -> after "
            f"{', '.join('%.1f' % w['rss_after_mb'] for w in waves)} MB, live runs during "
            f"{waves[0]['live_runs_during']} -> after {waves[-1]['live_runs_after']}")
        say(f"    {r['records']:,} records in {r['requests']:,} requests ({r['records_per_request']:.2f} "
            f"records/request), {r['records_per_s']:,.0f} records/s, dropped {r['dropped']}")
        summary["p4_runs_extra_threads"] = r["extra_threads"]
        summary["p4_runs_records_per_request"] = r["records_per_request"]
        summary["p4_runs_records_per_s"] = r["records_per_s"]
    say("")

    # ---------------------------------------------------------------- P5 bytes
    say("== P5 request bytes per record (protobuf body on the wire; HTTP headers separately) ==")
    rows = pick(results, scenario="bytes")
    if rows:
        say(f"  {'runs':>5} {'comp':5} {'ours B/rec':>11} {'bridge B/rec':>13} {'ratio':>6} "
            f"{'ours req':>9} {'bridge req':>11} {'ours hdr B/rec':>15}")
        keys = sorted({(r["runs"], r["compression"]) for r in rows})
        for runs, comp in keys:
            o = [r for r in rows if r["runs"] == runs and r["compression"] == comp and r["impl"] == "ours"]
            b = [r for r in rows if r["runs"] == runs and r["compression"] == comp and r["impl"] == "bridge"]
            if not (o and b):
                continue
            o, b = o[-1], b[-1]
            ratio = o["wire_bytes_per_record"] / b["wire_bytes_per_record"]
            say(f"  {runs:>5} {comp:5} {o['wire_bytes_per_record']:11.1f} {b['wire_bytes_per_record']:13.1f} "
                f"{ratio:6.2f} {o['requests']:9} {b['requests']:11} {o['header_bytes_per_record']:15.1f}")
            summary[f"p5_runs{runs}_{comp}_ours_over_bridge"] = ratio
    say("")

    # ---------------------------------------------------------------- export-path breakdown
    for r in pick(results, scenario="encode"):
        u = r["us_per_record"]
        say("== where the export thread's time goes (opentelemetry-otlp's encoding path, no I/O) ==")
        say(f"  {u['total_without_gzip']:.2f} us/record = group+convert to proto {u['group_and_convert_to_proto']:.2f}"
            f" + prost encode {u['prost_encode']:.2f} + drop {u['drop_request']:.2f}"
            f" + resource conversion {u['resource_conversion_per_request']:.3f}; gzip would add {u['gzip']:.2f}")
        summary["encode_us_per_record"] = u
        say("")

    print("\n".join(lines))
    if args.json:
        print("SUMMARY " + json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
