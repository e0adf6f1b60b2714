"""Statistics, the results table, the targets and the JSON file.

Only medians over repetitions and ratios between implementations measured in the same run
are reported: on a shared machine a lone absolute number says little.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import actors

from .common import median

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .cases import CaseResult, Settings

__all__ = (
    "TARGETS",
    "check_targets",
    "machine_info",
    "render_table",
    "render_targets",
    "summary",
    "write_json",
)


@dataclass(frozen=True)
class Metric:
    key: str  # in `Rep.metrics`
    label: str  # in the table


ROOT: Final = Path(__file__).resolve().parent.parent

SHOWN: Final = {
    "tell": (Metric("msgs_per_s", "msgs/s"),),
    "ask": (Metric("p50_us", "p50 µs"), Metric("p99_us", "p99 µs")),
}


@dataclass(frozen=True)
class Target:
    workload: str
    metric: str
    subject: str
    peer: str
    op: Literal[">=", "<="]
    bound: float
    text: str


TARGETS: Final = (
    Target(
        "tell-same",
        "msgs_per_s",
        "actors-uvloop",
        "queue-uvloop",
        ">=",
        2.0,
        "same-loop tell throughput >= 2x the asyncio.Queue actor",
    ),
    Target(
        "tell-same",
        "msgs_per_s",
        "actors-uvloop",
        "pykka",
        ">=",
        10.0,
        "same-loop tell throughput >= 10x pykka",
    ),
    Target(
        "ask-same",
        "p50_us",
        "actors-uvloop",
        "queue-uvloop",
        "<=",
        2.0,
        "ask p50 <= 2x the asyncio.Queue actor's",
    ),
)


def metric_median(result: CaseResult, key: str) -> float | None:
    samples = result.samples(key)
    return median(samples) if samples else None


def _find(results: Sequence[CaseResult], workload: str, impl: str) -> CaseResult | None:
    for result in results:
        if result.workload.name == workload and result.implementation.name == impl:
            return result
    return None


def ratio(
    results: Sequence[CaseResult], workload: str, key: str, subject: str, peer: str
) -> float | None:
    """Median of ``subject`` over median of ``peer`` for one workload and metric."""
    mine, theirs = _find(results, workload, subject), _find(results, workload, peer)
    if mine is None or theirs is None:
        return None
    a, b = metric_median(mine, key), metric_median(theirs, key)
    if a is None or b is None or b == 0:
        return None
    return a / b


def _format_value(key: str, value: float) -> str:
    if key.endswith("_us"):
        return f"{value:,.1f}"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    return f"{value / 1e3:,.0f} k"


def _spread(samples: Sequence[float]) -> str:
    """(max - min) / median: how much the repetitions disagreed."""
    if len(samples) < 2:
        return "-"
    return f"{(max(samples) - min(samples)) / median(samples):.0%}"


def table_rows(results: Sequence[CaseResult]) -> list[list[str]]:
    rows: list[list[str]] = []
    for result in results:
        workload, impl = result.workload.name, result.implementation.name
        if result.skipped or result.error:
            rows.append([workload, impl, "-", "skipped" if result.skipped else "FAILED", "", ""])
            continue
        for metric in SHOWN[result.workload.kind]:
            samples = result.samples(metric.key)
            baseline = result.implementation.baseline
            r = None if baseline is None else ratio(results, workload, metric.key, baseline, impl)
            rows.append(
                [
                    workload,
                    impl,
                    metric.label,
                    _format_value(metric.key, median(samples)),
                    _spread(samples),
                    "" if r is None else f"{r:.2f}x",
                ]
            )
    return rows


HEADER: Final = ["workload", "implementation", "metric", "median", "spread", "actors/peer"]


def render_table(results: Sequence[CaseResult]) -> str:
    """A Markdown table: readable in a terminal, pasteable into the docs."""
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    right = {3, 4, 5}

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w + 1) + ":" if i in right else "-" * (w + 2) for i, w in enumerate(widths)]
    lines = [line(rows[0]), "|" + "|".join(rule) + "|", *(line(row) for row in rows[1:])]
    notes = [
        f"- {r.workload.name} / {r.implementation.name}: "
        + (f"skipped, {r.skipped}" if r.skipped else f"FAILED, {r.error}")
        for r in results
        if r.skipped or r.error
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def check_targets(results: Sequence[CaseResult]) -> list[tuple[Target, float | None, str]]:
    """Each target with the measured ratio and "met", "missed" or "not measured"."""
    verdicts: list[tuple[Target, float | None, str]] = []
    for target in TARGETS:
        r = ratio(results, target.workload, target.metric, target.subject, target.peer)
        if r is None:
            verdict = "not measured"
        elif (r >= target.bound) if target.op == ">=" else (r <= target.bound):
            verdict = "met"
        else:
            verdict = "missed"
        verdicts.append((target, r, verdict))
    return verdicts


def render_targets(results: Sequence[CaseResult]) -> str:
    lines = ["targets (actors-uvloop against the peer, same run):"]
    for target, r, verdict in check_targets(results):
        measured = "n/a" if r is None else f"{r:.2f}x"
        lines.append(f"  {verdict.upper():12} {target.text}: measured {measured}")
    return "\n".join(lines)


def summary(result: CaseResult) -> str:
    """One progress line for a finished case."""
    head = f"{result.workload.name:13} {result.implementation.name:19}"
    if result.skipped:
        return f"{head} skipped: {result.skipped}"
    if result.error:
        return f"{head} FAILED: {result.error}"
    parts: list[str] = []
    for metric in SHOWN[result.workload.kind]:
        samples = result.samples(metric.key)
        parts.append(
            f"{metric.label} {_format_value(metric.key, median(samples))} ({_spread(samples)})"
        )
    return f"{head} n={result.n:,} x{len(result.reps)}: " + ", ".join(parts)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_info() -> dict[str, Any]:
    """Which `actors` was measured: the code changes faster than the machine does."""
    status = _git("status", "--porcelain", "--", "actors")
    return {
        "actors_version": actors.__version__,
        "actors_path": str(Path(actors.__file__).parent),
        "git_commit": _git("rev-parse", "HEAD"),
        "actors_modified": None if status is None else bool(status),
    }


def machine_info() -> dict[str, Any]:
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(affinity(0)) if affinity is not None else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": {name: _version(name) for name in ("uvloop", "msgspec", "anyio", "pykka")},
        "source": source_info(),
        "gil_switch_interval_s": sys.getswitchinterval(),
        "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _case_json(result: CaseResult) -> dict[str, Any]:
    keys = sorted({key for rep in result.reps for key in rep.metrics})
    return {
        "workload": result.workload.name,
        "workload_title": result.workload.title,
        "implementation": result.implementation.name,
        "description": result.implementation.description,
        "baseline": result.implementation.baseline,
        "n": result.n,
        "reps": [asdict(rep) for rep in result.reps],
        "medians": {key: median(result.samples(key)) for key in keys},
        "error": result.error,
        "skipped": result.skipped,
    }


def write_json(
    path: Path,
    results: Sequence[CaseResult],
    *,
    machine: dict[str, Any],
    settings: Settings,
    argv: Sequence[str],
) -> None:
    document = {
        "machine": machine,
        "command": ["python", "-m", "benchmarks", *argv],
        "settings": asdict(settings),
        "results": [_case_json(result) for result in results],
        "targets": [
            {"target": t.text, "ratio": r, "bound": f"{t.op} {t.bound}", "verdict": v}
            for t, r, v in check_targets(results)
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
