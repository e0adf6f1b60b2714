"""Charts of a run (matplotlib, from the ``bench`` extra), as SVG for docs/benchmarks.md.

* ``PATH``: the throughput of every implementation relative to ``actors-uvloop`` (log
  scale), one group of bars per throughput workload: micro-cases and Savina programs.
* ``<stem>-latency<suffix>``: ask round trips, p50 and p99.
* ``<stem>-scale<suffix>``: message rate and RSS per actor as the number of actors grows.

Text stays text in the SVG (small files, searchable); the footer names the machine, the
Python version and the exact command.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

from .common import median

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from .cases import CaseResult

__all__ = ("plot",)

COLOURS = {
    "actors-uvloop": "#1f77b4",
    "actors-asyncio": "#6baed6",
    "actors-host-uvloop": "#9ecae1",
    "actors-uvloop-on-loop": "#c6dbef",
    "actors-uvloop-default": "#17becf",
    "actors-uvloop-2loops": "#3182bd",
    "actors-uvloop-4loops": "#08519c",
    "queue-uvloop": "#ff7f0e",
    "queue-uvloop-2loops": "#e6550d",
    "queue-uvloop-4loops": "#a63603",
    "queue-asyncio": "#fdae6b",
    "callback": "#7f7f7f",
    "bare-uvloop": "#bdbdbd",
    "pykka": "#2ca02c",
    "thespian": "#d62728",
    "xoscar": "#9467bd",
}

RATE_KEYS = {
    "tell": "msgs_per_s",
    "pingpong": "msgs_per_s",
    "program": "ops_per_s",
    "spawn": "actors_per_s",
    "spawn-host": "actors_per_s",
    "multiloop": "msgs_per_s",
}


def _footer(machine: dict[str, Any], argv: Sequence[str]) -> str:
    cpus = machine.get("usable_cpus") or machine.get("cpu_count")
    python = str(machine.get("python", "")).split()[0]
    commit = (machine.get("source") or {}).get("git_commit") or "?"
    return (
        f"{platform.system()} {machine.get('machine')}, {cpus} CPUs; CPython {python}; "
        f"actors at {str(commit)[:7]}; python -m actors bench {' '.join(argv)}"
    )


def _median(result: CaseResult, key: str) -> float | None:
    samples = result.samples(key)
    return median(samples) if samples else None


def plot(
    path: Path, results: Sequence[CaseResult], *, machine: dict[str, Any], argv: Sequence[str]
) -> list[Path]:
    """Draw the charts; return the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "actors-bench", "font.size": 9})
    metadata = {"Date": None, "Creator": "python -m actors bench"}
    footer = _footer(machine, argv)
    written: list[Path] = []

    # -- throughput relative to actors-uvloop -------------------------------------------------
    groups: list[tuple[str, dict[str, float]]] = []
    for name in dict.fromkeys(r.workload.name for r in results):
        cases = [r for r in results if r.workload.name == name and not r.error]
        if not cases or cases[0].workload.kind not in RATE_KEYS:
            continue
        key = RATE_KEYS[cases[0].workload.kind]
        rates = {r.implementation.name: v for r in cases if (v := _median(r, key))}
        base = rates.get("actors-uvloop")
        if base:
            groups.append((name, {impl: v / base for impl, v in rates.items()}))
    if groups:
        impls = list(dict.fromkeys(i for _, g in groups for i in g))
        height = 0.8 / len(impls)
        fig, ax = plt.subplots(figsize=(8, 0.25 * len(groups) * len(impls) / 2 + 2))
        for j, impl in enumerate(impls):
            ys = [i + j * height for i, (_, g) in enumerate(groups) if impl in g]
            xs = [g[impl] for _, g in groups if impl in g]
            ax.barh(ys, xs, height=height, label=impl, color=COLOURS.get(impl))
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(groups))])
        ax.set_yticklabels([name for name, _ in groups])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xlabel("throughput relative to actors-uvloop (log scale; right of 1: faster)")
        ax.legend(loc="lower right", fontsize=7)
        ax.set_title("Throughput, each implementation over actors-uvloop, one run")
        fig.text(0.01, 0.005, footer, fontsize=6)
        fig.tight_layout(rect=(0, 0.02, 1, 1))
        fig.savefig(path, metadata=metadata)
        plt.close(fig)
        written.append(path)

    # -- ask latency ----------------------------------------------------------------------------
    asks = [r for r in results if r.workload.kind == "ask" and not r.error and r.reps]
    if asks:
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(asks) + 1.5))
        labels = [f"{r.workload.name} {r.implementation.name}" for r in asks]
        p50 = [_median(r, "p50_us") or 0 for r in asks]
        p99 = [_median(r, "p99_us") or 0 for r in asks]
        ys = list(range(len(asks)))
        ax.barh([y + 0.2 for y in ys], p99, height=0.4, label="p99", color="#fdae6b")
        ax.barh([y - 0.2 for y in ys], p50, height=0.4, label="p50", color="#1f77b4")
        ax.set_yticks(ys)
        ax.set_yticklabels(labels)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("round trip, µs (log scale; shorter is better)")
        ax.legend(loc="lower right")
        ax.set_title("Ask round trip")
        fig.text(0.01, 0.005, footer, fontsize=6)
        fig.tight_layout(rect=(0, 0.02, 1, 1))
        target = path.with_name(f"{path.stem}-latency{path.suffix}")
        fig.savefig(target, metadata=metadata)
        plt.close(fig)
        written.append(target)

    # -- scale ------------------------------------------------------------------------------------
    series = {
        r.implementation.name: r.extra["series"]
        for r in results
        if r.workload.kind == "scale" and r.extra.get("series")
    }
    if series:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
        for impl, points in series.items():
            xs = [p["actors"] for p in points]  # type: ignore[union-attr]
            left.plot(
                xs,
                [p["msgs_per_s"] for p in points],
                "o-",
                label=impl,  # type: ignore[union-attr]
                color=COLOURS.get(impl),
            )
            right.plot(
                xs,
                [p["rss_b_per_actor"] for p in points],
                "o-",
                label=impl,  # type: ignore[union-attr]
                color=COLOURS.get(impl),
            )
        for ax in (left, right):
            ax.set_xscale("log")
            ax.set_xlabel("actors, each sent its share of the messages")
            ax.legend(fontsize=7)
        left.set_ylabel("msgs/s")
        left.set_ylim(bottom=0)
        right.set_ylabel("RSS per actor, bytes")
        right.set_ylim(bottom=0)
        left.set_title("Throughput as the actor count grows")
        right.set_title("Memory per actor")
        fig.text(0.01, 0.005, footer, fontsize=6)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        target = path.with_name(f"{path.stem}-scale{path.suffix}")
        fig.savefig(target, metadata=metadata)
        plt.close(fig)
        written.append(target)
    return written
