#!/usr/bin/env python3
"""Print Stockade's benchmark results as a Markdown table.

Reads criterion's results (``<criterion dir>/**/new/estimates.json`` and
the ``benchmark.json`` beside each, for the group/function/parameter names)
written by ``cargo bench -p stockade-bench``, takes each benchmark's
*median* point estimate (ns per op; for 2-thread runs, ns per op per
thread), and prints per comparison: the medians of Stockade and each peer,
the ratios Stockade/peer, the targets and whether they are met (on the
interleaved ratios of ``<criterion dir>/paired/*.json`` where a bench wrote
one, else on criterion's medians),
plus the machine (CPU model, cores, rustc) and the date.

The criterion directory is, in order: ``--criterion-dir``,
``$CRITERION_HOME``, ``$CARGO_TARGET_DIR/criterion``, ``target/criterion``
under the repository root. Python 3 standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The comparisons, in print order: criterion group -> description.
GROUPS = {
    "limiter": "Rate limiter, grant path (`try_acquire` / governor `check`)",
    "breaker": "Circuit breaker, closed path (healthy call)",
    "bulkhead": "Bulkhead, `try_acquire` + drop",
    "retry": "Retry of a call that succeeds first time",
    "async-limiter": "Async rate limiter, grant path (`acquire_async` / governor `until_ready`)",
    "async-retry": "Async retry, first attempt succeeds (backon, tower-resilience)",
    "async-timeout": "Async timeout, ready future (`tokio::time::timeout`, `tower::timeout`)",
    "async-bulkhead": "Async bulkhead and layer, free permit (`tower::limit::ConcurrencyLimit`)",
    "async-breaker": "Async circuit breaker and layer, closed path (tower-resilience)",
}

# The targets: (group, stockade function, peer function, max ratio
# stockade/peer, label[, thread count]). Checked on the interleaved ratio
# where the bench wrote one (single thread), else on criterion's medians at
# that thread count (default `1t`). A new Stockade variant (e.g. the
# blocking `stockade-execute`) gets its own rows.
TARGETS = [
    ("limiter", "stockade-monotonic", "governor-default", 1.0, "≤ 1.0×"),
    ("limiter", "stockade-execute", "governor-default", 1.0, "≤ 1.0×"),
    ("breaker", "stockade", "recloser", 1 / 4, "≤ 1/4"),
    ("breaker", "stockade-execute", "recloser", 1 / 4, "≤ 1/4"),
    ("bulkhead", "stockade", "floor-two-atomics", 1.25, "≤ 1.25× (the two-atomic floor)"),
    ("bulkhead", "stockade", "tokio", 1.0, "≤ 1.0×"),
    ("retry", "stockade-execute", "backon", 1.0, "≤ 1.0×"),
    ("async-limiter", "stockade", "governor", 1.0, "≤ 1.0×"),
    ("async-retry", "stockade", "backon", 1.0, "≤ 1.0×"),
    ("async-retry", "stockade-layer", "tower-resilience", 1.0, "≤ 1.0×"),
    ("async-timeout", "stockade", "tokio", 1.0, "≤ 1.0×"),
    ("async-timeout", "stockade-layer", "tower", 1.0, "≤ 1.0×"),
    ("async-bulkhead", "stockade-layer", "tower-limit", 1.0, "≤ 1.0×"),
    ("async-bulkhead", "stockade-layer", "tower-limit", 0.5, "≤ 0.5×", "2t"),
    ("async-breaker", "stockade-layer", "tower-resilience", 1.0, "≤ 1.0×"),
]

# Two threads on one instance: per-op time per thread vs one thread.
SCALING_MAX = 2.5

THREADS = ("1t", "2t")

# Results this much older than the newest one are flagged as left over.
STALE_SECONDS = 3600


def criterion_dir(arg):
    if arg:
        return Path(arg)
    if os.environ.get("CRITERION_HOME"):
        return Path(os.environ["CRITERION_HOME"])
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]) / "criterion"
    return REPO / "target" / "criterion"


def load(root):
    """{(group, function, parameter): median ns} from criterion's files, and
    {key: modification time} to spot results left over from older runs."""
    results = {}
    times = {}
    for estimates in root.glob("**/new/estimates.json"):
        meta_file = estimates.with_name("benchmark.json")
        try:
            meta = json.loads(meta_file.read_text())
            median = json.loads(estimates.read_text())["median"]["point_estimate"]
        except (OSError, ValueError, KeyError):
            continue
        key = (meta.get("group_id"), meta.get("function_id"), meta.get("value_str"))
        results[key] = float(median)
        times[key] = estimates.stat().st_mtime
    return results, times


def load_paired(root):
    """{(group, subject, reference): result} from the interleaved comparisons
    (``<criterion dir>/paired/*.json``, written by ``stockade_bench::paired``)."""
    paired = {}
    for path in (root / "paired").glob("*.json"):
        try:
            data = json.loads(path.read_text())
            key = (data["group"], data["subject"], data["reference"])
            data["ratio"] = float(data["ratio"])
        except (OSError, ValueError, KeyError):
            continue
        if key[0] not in GROUPS:
            # benches/shared.rs's comparisons (group `shared`): in its own
            # table (`<criterion dir>/shared/report.md`).
            continue
        data["mtime"] = path.stat().st_mtime
        paired[key] = data
    return paired


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def clocksource():
    path = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    try:
        return path.read_text().strip()
    except OSError:
        return "unknown"


def rustc_version():
    try:
        out = subprocess.run(
            ["rustc", "--version"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def ns(value):
    if value is None:
        return "—"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}"


def met(r, limit):
    if r is None:
        return "n/a"
    return "yes" if r <= limit else "**no**"


def functions_of(results, group):
    names = sorted({f for (g, f, _p) in results if g == group})
    # Stockade first, then the peers.
    return sorted(names, key=lambda n: (not n.startswith("stockade"), n))


def print_clocks(results, root, out):
    names = [f for (g, f, _p) in results if g == "clock"]
    if not names:
        return
    resolution = {}
    try:
        resolution = json.loads((root / "clock-resolution.json").read_text())
    except (OSError, ValueError):
        pass
    out.append("## Clock read (`benches/clocks.rs`)")
    out.append("")
    out.append(
        "Median ns per read; *step* = smallest non-zero difference between two "
        "back-to-back reads (ns; ≈ the read cost for a fine clock, the tick for a "
        "coarse one); *back* = back-to-back reads that went backwards in 30 ms of "
        "reading on one thread; *getres* = `clock_getres`. Raw TSC values are converted at "
        f"the measured TSC rate ({resolution.get('_tsc_ghz', 0):.3f} GHz)."
    )
    out.append("")
    out.append("| clock | median ns/read | step ns | back | getres ns |")
    out.append("|---|---:|---:|---:|---:|")
    rows = []
    for name in sorted(set(names)):
        median = results.get(("clock", name, None))
        info = resolution.get(name, {}) if isinstance(resolution.get(name), dict) else {}
        rows.append((median if median is not None else float("inf"), name, median, info))
    for _, name, median, info in sorted(rows):
        step = info.get("step_ns")
        getres = info.get("getres_ns")
        back = info.get("backward_steps")
        out.append(
            f"| `{name}` | {ns(median)} | {ns(step)} | {'—' if back is None else back} | "
            f"{'—' if getres is None else getres} |"
        )
    out.append("")


# benches/telemetry.rs: a closed breaker's `execute` in two builds of the
# bench (plain, and `--features telemetry`), each row against the plain one.
TELEMETRY_ROWS = [
    ("execute-plain", "plain build (`metrics` and `tracing` not compiled)"),
    ("execute-features-idle", "`metrics` + `tracing` compiled in, nobody listening"),
    ("execute-metrics-collector", "a Prometheus recorder installed and a `Collector` alive"),
    ("execute-tracing-subscriber", "a `tracing` subscriber wanting every span (a bare `Registry`)"),
]


def print_telemetry(results, out):
    """The telemetry cost table (group `telemetry`), if the bench ran."""
    base = results.get(("telemetry", "execute-plain", "1t"))
    rows = [(name, label, results.get(("telemetry", name, "1t"))) for name, label in TELEMETRY_ROWS]
    if all(v is None for _, _, v in rows):
        return
    out.append("## Telemetry cost: closed breaker `execute`, 1 thread (`telemetry`)")
    out.append("")
    out.append(
        "Criterion medians of two builds of `benches/telemetry.rs` in one run "
        "(`scripts/bench.sh`); the ratio is each row ÷ the plain build."
    )
    out.append("")
    out.append("| build and listeners | ns/op | ÷ plain |")
    out.append("|---|---:|---:|")
    for name, label, value in rows:
        out.append(f"| `{name}`: {label} | {ns(value)} | {fmt_ratio(ratio(value, base))} |")
    out.append("")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--criterion-dir", help="criterion's output directory")
    args = parser.parse_args()

    root = criterion_dir(args.criterion_dir)
    results, times = load(root)
    paired = load_paired(root)
    if not results:
        print(f"no criterion results under {root}", file=sys.stderr)
        return 1

    now = datetime.datetime.now(datetime.timezone.utc)
    out = ["# Stockade benchmarks", ""]
    out.append(f"- date: {now:%Y-%m-%d %H:%M} UTC")
    out.append(f"- CPU: {cpu_model()} ({os.cpu_count()} cores visible)")
    out.append(f"- kernel clocksource: {clocksource()}")
    out.append(f"- {rustc_version()}")
    out.append(f"- medians from `{root}`")
    newest = max([*times.values(), *(p["mtime"] for p in paired.values())])
    stale = sorted(
        [
            "/".join(str(part) for part in key if part is not None)
            for key, t in times.items()
            if newest - t > STALE_SECONDS
        ]
        + [
            "paired " + "/".join(key)
            for key, p in paired.items()
            if newest - p["mtime"] > STALE_SECONDS
        ]
    )
    if stale:
        out.append(
            f"- **stale**: {len(stale)} results are over an hour older than the newest "
            f"(left from an earlier run): {', '.join(stale)}"
        )
    out.append("")

    checks = []
    for group, title in GROUPS.items():
        names = functions_of(results, group)
        if not names:
            continue
        ours = [n for n in names if n.startswith("stockade")]
        peers = [n for n in names if not n.startswith("stockade")]
        out.append(f"## {title} (`{group}`)")
        out.append("")
        header = "| implementation | 1 thread ns/op | 2 threads ns/op/thread | 2t/1t |"
        rule = "|---|---:|---:|---:|"
        for s in ours:
            header += f" `{s}` ÷ this, 1t | `{s}` ÷ this, 2t |"
            rule += "---:|---:|"
        out.append(header)
        out.append(rule)
        for name in names:
            one = results.get((group, name, "1t"))
            two = results.get((group, name, "2t"))
            row = f"| `{name}` | {ns(one)} | {ns(two)} | {fmt_ratio(ratio(two, one))} |"
            for s in ours:
                if name in peers:
                    for p in THREADS:
                        row += f" {fmt_ratio(ratio(results.get((group, s, p)), results.get((group, name, p))))} |"
                else:
                    row += " | |"
            out.append(row)
        out.append("")
        for s in ours:
            one = results.get((group, s, "1t"))
            two = results.get((group, s, "2t"))
            checks.append(
                (
                    f"{group}: `{s}` 2 threads vs 1 thread",
                    two,
                    one,
                    ratio(two, one),
                    f"≤ {SCALING_MAX}×",
                    met(ratio(two, one), SCALING_MAX),
                    "—",
                    fmt_ratio(ratio(two, one)),
                )
            )
        for g, s, peer, limit, label, *threads in TARGETS:
            if g != group or s not in ours or peer not in peers:
                continue
            threads = threads[0] if threads else "1t"
            a = results.get((group, s, threads))
            b = results.get((group, peer, threads))
            r = ratio(a, b)
            pair = paired.get((group, s, peer)) if threads == "1t" else None
            if pair is not None:
                # The interleaved ratio decides; criterion's is shown beside it.
                checks.append(
                    (
                        f"{group}: `{s}` vs `{peer}` (1 thread)",
                        pair["subject_ns"],
                        pair["reference_ns"],
                        pair["ratio"],
                        label,
                        met(pair["ratio"], limit),
                        f"{pair['ratio_p10']:.2f}–{pair['ratio_p90']:.2f}",
                        fmt_ratio(r),
                    )
                )
            else:
                n = threads.rstrip("t")
                where = "1 thread" if n == "1" else f"{n} threads"
                checks.append(
                    (f"{group}: `{s}` vs `{peer}` ({where})", a, b, r, label, met(r, limit), "—", fmt_ratio(r))
                )

    if checks:
        checks.sort(key=lambda c: ("2 threads" in c[0], c[0]))
        out.append("## Targets")
        out.append("")
        out.append(
            "Against a peer, *ratio* is the median of interleaved rounds "
            "(`stockade_bench::paired`: about 0.5 ms of each side per round, alternating, "
            "so the machine's drift cancels), *p10–p90* its spread, *ns* the medians of those "
            "rounds; *criterion* is the ratio of the two criterion medians above, measured "
            "seconds apart. Thread scaling uses criterion's medians."
        )
        out.append("")
        out.append("| check | stockade ns | reference ns | ratio | p10–p90 | criterion | target | met |")
        out.append("|---|---:|---:|---:|---|---:|---|---|")
        for label, a, b, r, target, ok, spread, crit in checks:
            out.append(
                f"| {label} | {ns(a)} | {ns(b)} | {fmt_ratio(r)} | {spread} | {crit} | {target} | {ok} |"
            )
        out.append("")

    print_telemetry(results, out)
    print_clocks(results, root, out)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
