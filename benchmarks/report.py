"""Statistics, the results table, the targets and the JSON file.

Only medians over repetitions and ratios between implementations measured in the same run
are reported: on a shared machine a lone absolute number says little.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import actors

from .cases import BLOCKED, BLOCKED_PINNED, DEFAULT, MULTILOOP_LOOPS, MULTILOOP_UNITS, UNBLOCKED
from .common import median
from .neighbour import ASK_EVERY, BLOCK_EVERY, BLOCK_FOR, LATE, RESPONDERS
from .savina import PROGRAMS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .cases import CaseResult, Settings, Workload

__all__ = (
    "TARGETS",
    "check_targets",
    "machine_info",
    "render_blocked",
    "render_multiloop",
    "render_placement",
    "render_savina_matrix",
    "render_scale",
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
    "pingpong": (Metric("msgs_per_s", "msgs/s"),),
    "program": (Metric("ops_per_s", "msgs/s"),),
    "spawn": (Metric("actors_per_s", "actors/s"),),
    "spawn-host": (Metric("actors_per_s", "actors/s"),),
    "life": (Metric("actors_per_s", "actors/s"),),
    "overload": (Metric("msgs_per_s", "msgs/s"), Metric("max_depth", "max queue depth")),
    "memory": (Metric("tracemalloc_b", "B/actor tracemalloc"), Metric("rss_b", "B/actor RSS")),
    "scale": (),
    "multiloop": (Metric("msgs_per_s", "msgs/s"),),
    "blocked": (Metric("p50_us", "p50 µs"), Metric("p99_us", "p99 µs")),
    "stream": (Metric("items_per_s", "items/s"),),
}

LOWER_IS_BETTER: Final = ("_us", "_b", "_mb", "max_depth")


def shown(workload: Workload) -> tuple[Metric, ...]:
    if workload.program is not None:
        return (Metric("ops_per_s", workload.program.unit),)
    return SHOWN[workload.kind]


SAVINA_PEERS: Final = (
    ("actors-uvloop", "queue-uvloop"),
    ("actors-asyncio", "queue-asyncio"),
    ("actors-uvloop", "pykka"),
    ("actors-uvloop", "thespian"),
    ("actors-uvloop", "xoscar"),
)


@dataclass(frozen=True)
class Target:
    text: str
    measure: Callable[[Sequence[CaseResult]], tuple[float | None, str]]
    op: Literal[">=", "<="]
    bound: float


def _ratio_of(workload: str, key: str, subject: str, peer: str) -> Callable[..., Any]:
    def measure(results: Sequence[CaseResult]) -> tuple[float | None, str]:
        r = ratio(results, workload, key, subject, peer)
        return r, "" if r is None else f"{r:.2f}x"

    return measure


def _value_of(workload: str, key: str, impl: str, fmt: str) -> Callable[..., Any]:
    def measure(results: Sequence[CaseResult]) -> tuple[float | None, str]:
        found = _find(results, workload, impl)
        v = None if found is None else metric_median(found, key)
        return v, "" if v is None else fmt.format(v)

    return measure


def _cross_over_same(results: Sequence[CaseResult]) -> tuple[float | None, str]:
    cross, same = (
        _find(results, "tell-cross-4", "actors-uvloop"),
        _find(results, "tell-same", "actors-uvloop"),
    )
    a = None if cross is None else metric_median(cross, "msgs_per_s")
    b = None if same is None else metric_median(same, "msgs_per_s")
    if a is None or not b:
        return None, ""
    return a / b, f"{a / b:.0%}"


def scale_flatness(results: Sequence[CaseResult]) -> tuple[float | None, str]:
    """The scale series' lowest rate over its rate with one actor (actors on uvloop)."""
    found = _find(results, "scale", "actors-uvloop")
    series: object = None if found is None else found.extra.get("series")
    if not isinstance(series, list) or len(series) < 2:  # pyright: ignore[reportUnknownArgumentType]
        return None, ""
    points = cast("list[dict[str, float]]", series)
    first = points[0]["msgs_per_s"]
    worst = min(points, key=lambda point: point["msgs_per_s"])
    if not first:
        return None, ""
    low = worst["msgs_per_s"] / first
    return low, f"{low:.2f}x (at {worst['actors']:,.0f} actors)"


SYNC_PEERS: Final = tuple(
    ("actors-uvloop-sync", peer) for subject, peer in SAVINA_PEERS if subject == "actors-uvloop"
)
"""The synchronous-handler rows against the same peers (there is no asyncio one)."""


def _savina_lead(
    program: str, pairs: tuple[tuple[str, str], ...] = SAVINA_PEERS
) -> Callable[..., Any]:
    def measure(results: Sequence[CaseResult]) -> tuple[float | None, str]:
        ratios = [
            (r, peer)
            for subject, peer in pairs
            if (r := ratio(results, f"savina-{program}", "ops_per_s", subject, peer)) is not None
        ]
        if not ratios:
            return None, ""
        worst, peer = min(ratios)
        return worst, f"{worst:.2f}x (closest: {peer})"

    return measure


def savina_mean(results: Sequence[CaseResult], subject: str) -> tuple[float, int] | None:
    """Geometric mean over the Savina programs of ``subject``'s rate over actors-uvloop's.

    Returns the mean and the number of programs it is over, or None if none ran on both.
    """
    ratios = [
        r
        for result in results
        if result.workload.kind == "program"
        and result.implementation.name == "actors-uvloop"
        and (r := ratio(results, result.workload.name, "ops_per_s", subject, "actors-uvloop"))
        is not None
    ]
    if not ratios:
        return None
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)), len(ratios)


def multi_loop_tax(results: Sequence[CaseResult], loops: int) -> tuple[float | None, str]:
    """Geometric mean over the Savina programs of (N loops pinned) / (1 loop), on uvloop.

    The programs' actors are pinned round-robin over the loops, so partners talk across
    threads and never move: this prices cross-loop communication without co-location (the
    default placement's rows are `render_placement` and the "default ActorSystem()"
    targets). `independent_tax` measures the tax of issue 5 (independent work on N loops).
    """
    found = savina_mean(results, f"actors-uvloop-{loops}loops")
    if found is None:
        return None, ""
    mean, count = found
    return mean, f"{mean:.2f}x (geometric mean of {count} programs)"


def _tax(loops: int) -> Callable[..., Any]:
    return lambda results: multi_loop_tax(results, loops)


def _loops_impl(base: str, loops: int) -> str:
    return base if loops == 1 else f"{base}-{loops}loops"


def independent_tax(
    results: Sequence[CaseResult], loops: int, base: str = "actors-uvloop"
) -> tuple[float | None, str]:
    """multiloop: total msgs/s with ``loops`` loops over the total with one (same work)."""
    r = ratio(results, "multiloop", "msgs_per_s", _loops_impl(base, loops), base)
    return r, "" if r is None else f"{r:.2f}x"


def _independent(loops: int) -> Callable[[Sequence[CaseResult]], tuple[float | None, str]]:
    def measure(results: Sequence[CaseResult]) -> tuple[float | None, str]:
        return independent_tax(results, loops)

    return measure


TARGETS: Final = (
    Target(
        "same-loop tell >= 2x the asyncio.Queue actor",
        _ratio_of("tell-same", "msgs_per_s", "actors-uvloop", "queue-uvloop"),
        ">=",
        2.0,
    ),
    Target(
        "same-loop tell >= 12x pykka",
        _ratio_of("tell-same", "msgs_per_s", "actors-uvloop", "pykka"),
        ">=",
        12.0,
    ),
    Target(
        "same-loop tell >= 12x thespian",
        _ratio_of("tell-same", "msgs_per_s", "actors-uvloop", "thespian"),
        ">=",
        12.0,
    ),
    Target(
        "same-loop tell >= 70% of the callback actor",
        _ratio_of("tell-same", "msgs_per_s", "actors-uvloop", "callback"),
        ">=",
        0.7,
    ),
    Target(
        "ping-pong >= 1.5x the asyncio.Queue actor",
        _ratio_of("savina-pingpong", "ops_per_s", "actors-uvloop", "queue-uvloop"),
        ">=",
        1.5,
    ),
    Target(
        "ping-pong >= 2x thespian",
        _ratio_of("savina-pingpong", "ops_per_s", "actors-uvloop", "thespian"),
        ">=",
        2.0,
    ),
    Target(
        "same-loop ask p50 within 1.2x the asyncio.Queue actor's",
        _ratio_of("ask-same", "p50_us", "actors-uvloop", "queue-uvloop"),
        "<=",
        1.2,
    ),
    Target(
        "cross-loop ask p50 within 1.3x a bare cross-thread future round trip",
        _ratio_of("ask-cross", "p50_us", "actors-uvloop", "bare-uvloop"),
        "<=",
        1.3,
    ),
    Target("cross-loop tell, 4 producers >= 50% of same-loop tell", _cross_over_same, ">=", 0.5),
    Target(
        "idle actor <= 1 KiB (tracemalloc)",
        _value_of("memory", "tracemalloc_b", "actors-uvloop", "{:,.0f} B"),
        "<=",
        1024,
    ),
    Target(
        "idle actor <= 1 KiB (RSS)",
        _value_of("memory", "rss_b", "actors-uvloop", "{:,.0f} B"),
        "<=",
        1024,
    ),
    Target(
        "spawn >= 200k actors/s",
        _value_of("spawn", "actors_per_s", "actors-uvloop", "{:,.0f}/s"),
        ">=",
        200_000,
    ),
    Target(
        "spawn from the host >= the asyncio.Queue actor's creation rate",
        _ratio_of("spawn-host", "actors_per_s", "actors-uvloop", "queue-uvloop"),
        ">=",
        1.0,
    ),
    Target(
        "spawn from the host >= 0.5x a spawn on the actors' own loop (information)",
        _ratio_of("spawn-host", "actors_per_s", "actors-uvloop", "actors-uvloop-on-loop"),
        ">=",
        0.5,
    ),
    *(
        Target(f"savina {p.name}: ahead of every Python peer", _savina_lead(p.name), ">=", 1.0)
        for p in PROGRAMS
    ),
    Target(
        "sync handlers: same-loop tell >= 2x the asyncio.Queue actor",
        _ratio_of("tell-same", "msgs_per_s", "actors-uvloop-sync", "queue-uvloop"),
        ">=",
        2.0,
    ),
    Target(
        "sync handlers: same-loop tell >= 0.6x the callback actor",
        _ratio_of("tell-same", "msgs_per_s", "actors-uvloop-sync", "callback"),
        ">=",
        0.6,
    ),
    Target(
        "sync handlers: an actor's life within 1.5x the asyncio.Queue actor's (rate >= 0.67x)",
        _ratio_of("life", "actors_per_s", "actors-uvloop-sync", "queue-uvloop"),
        ">=",
        1 / 1.5,
    ),
    *(
        Target(
            f"sync handlers: savina {p.name} ahead of every Python peer",
            _savina_lead(p.name, SYNC_PEERS),
            ">=",
            1.0,
        )
        for p in PROGRAMS
    ),
    Target(
        "scale: every actor count up to the largest >= 0.8x the rate with 1 actor",
        scale_flatness,
        ">=",
        0.8,
    ),
    # Issue 14: the default system (a loop per CPU, actors unpinned) against one loop.
    *(
        Target(
            f"savina {p.name}: default ActorSystem() >= 0.9x workers=1",
            _ratio_of(f"savina-{p.name}", "ops_per_s", DEFAULT, "actors-uvloop"),
            ">=",
            0.9,
        )
        for p in PROGRAMS
    ),
    Target(
        "ping-pong of two app-spawned actors: default ActorSystem() >= 0.9x workers=1",
        _ratio_of("pingpong-app", "msgs_per_s", DEFAULT, "actors-uvloop"),
        ">=",
        0.9,
    ),
    Target(
        "blocked loop: p99 ask latency of actors beside it within 2x of an unblocked run",
        _ratio_of("blocked-neighbour", "p99_us", BLOCKED, UNBLOCKED),
        "<=",
        2.0,
    ),
    Target("multi-loop tax, independent work: 2 loops >= 0.9x 1 loop", _independent(2), ">=", 0.9),
    Target("multi-loop tax, independent work: 4 loops >= 0.9x 1 loop", _independent(4), ">=", 0.9),
    # Information: Savina actors pinned round-robin, partners on other loops for good.
    Target(
        "Savina pinned round-robin (no co-location): 2 loops >= 0.9x 1 loop (information)",
        _tax(2),
        ">=",
        0.9,
    ),
    Target(
        "Savina pinned round-robin (no co-location): 4 loops >= 0.9x 1 loop (information)",
        _tax(4),
        ">=",
        0.9,
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
    if key.endswith("_b"):
        return f"{value:,.0f} B"
    if key.endswith("_mb"):
        return f"{value:,.1f}"
    if key == "max_depth":
        return f"{value:,.0f}"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    return f"{value / 1e3:,.0f} k"


def _spread(samples: Sequence[float]) -> str:
    """(max - min) / median: how much the repetitions disagreed."""
    middle = median(samples) if samples else 0
    if len(samples) < 2 or not middle:
        return "-"
    return f"{(max(samples) - min(samples)) / middle:.0%}"


def table_rows(results: Sequence[CaseResult]) -> list[list[str]]:
    rows: list[list[str]] = []
    for result in results:
        workload, impl = result.workload.name, result.implementation.name
        if result.skipped or result.error:
            rows.append([workload, impl, "-", "skipped" if result.skipped else "FAILED", "", ""])
            continue
        for metric in shown(result.workload):
            samples = result.samples(metric.key)
            if not samples:
                continue
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


def check_targets(
    results: Sequence[CaseResult],
) -> list[tuple[Target, float | None, str, str]]:
    """Each target with its measured value, how it reads, and "met", "missed" or "n/a"."""
    verdicts: list[tuple[Target, float | None, str, str]] = []
    for target in TARGETS:
        value, text = target.measure(results)
        if value is None:
            verdict = "n/a"
        elif (value >= target.bound) if target.op == ">=" else (value <= target.bound):
            verdict = "met"
        else:
            verdict = "missed"
        verdicts.append((target, value, text, verdict))
    return verdicts


def render_targets(results: Sequence[CaseResult]) -> str:
    """The targets as a Markdown table (actors-uvloop unless the target names another)."""
    rows = [["target", "measured", "status"], ["---", "---:", "---"]]
    for target, _, text, verdict in check_targets(results):
        rows.append([target.text, text or "not measured", verdict])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def render_savina_matrix(results: Sequence[CaseResult]) -> str:
    """Savina: for each program, actors-uvloop's rate over each implementation's."""
    programs = [r.workload.name for r in results if r.workload.kind == "program"]
    programs = list(dict.fromkeys(programs))
    impls = list(
        dict.fromkeys(
            r.implementation.name
            for r in results
            if r.workload.kind == "program" and r.implementation.name != "actors-uvloop"
        )
    )
    if not programs:
        return ""
    rows = [["program", "actors-uvloop", *impls], ["---", "---:", *(["---:"] * len(impls))]]
    for name in programs:
        mine = _find(results, name, "actors-uvloop")
        rate = None if mine is None else metric_median(mine, "ops_per_s")
        row = [name.removeprefix("savina-"), "-" if rate is None else _format_value("", rate)]
        for impl in impls:
            r = ratio(results, name, "ops_per_s", "actors-uvloop", impl)
            row.append("-" if r is None else f"{r:.2f}x")
        rows.append(row)
    head = "actors-uvloop's rate, and its ratio to each implementation (above 1: actors faster)"
    return head + "\n\n" + "\n".join("| " + " | ".join(row) + " |" for row in rows)


def render_multiloop(results: Sequence[CaseResult]) -> str:
    """multiloop: each implementation's total per number of loops, and its ratio to 1 loop."""
    bases = [
        base
        for base in ("actors-uvloop", "queue-uvloop")
        if any(_find(results, "multiloop", _loops_impl(base, n)) for n in MULTILOOP_LOOPS)
    ]
    if not bases:
        return ""
    rows = [
        ["loops", *(f"{base} {what}" for base in bases for what in ("msgs/s", "vs 1 loop"))],
        ["---:", *(["---:"] * (2 * len(bases)))],
    ]
    for loops in MULTILOOP_LOOPS:
        row = [str(loops)]
        for base in bases:
            found = _find(results, "multiloop", _loops_impl(base, loops))
            rate = None if found is None else metric_median(found, "msgs_per_s")
            r, _ = independent_tax(results, loops, base)
            row += [
                "-" if rate is None else _format_value("", rate),
                "-" if r is None else f"{r:.2f}x",
            ]
        rows.append(row)
    head = (
        f"Multi-loop tax, independent work: {MULTILOOP_UNITS} producer->counter pairs spread "
        "evenly over the loops; total msgs/s (median) and its ratio to one loop"
    )
    return head + "\n\n" + "\n".join("| " + " | ".join(row) + " |" for row in rows)


PINNED: Final = ("actors-uvloop-2loops", "actors-uvloop-4loops")


def placement_counters(result: CaseResult) -> str:
    """The placement counters of one repetition (medians) that are not zero: "moves 3"."""
    keys = sorted(
        {key for rep in result.reps for key in rep.metrics if key.startswith("placement_")}
    )
    if not keys:
        return "-"
    counts = [(key.removeprefix("placement_"), metric_median(result, key) or 0) for key in keys]
    shown = [f"{name} {value:g}" for name, value in counts if value]
    return ", ".join(shown) or "none"


def render_placement(results: Sequence[CaseResult]) -> str:
    """The default ActorSystem() against workers=1, per case; the pinned spread beside it.

    The placement counters (moves, refused moves, ...) are those of one repetition
    (medians): a Savina program starts new actors every run, the ping-pong pair once.
    """
    cases = [
        name
        for name in dict.fromkeys(r.workload.name for r in results)
        if _find(results, name, DEFAULT) is not None
    ]
    if not cases:
        return ""
    pinned = [impl for impl in PINNED if any(_find(results, c, impl) for c in cases)]
    default = next(r for r in results if r.implementation.name == DEFAULT)
    loops = metric_median(default, "loops")
    shown_loops = "?" if loops is None else f"{loops:.0f}"
    rows = [
        [
            "case",
            "workers=1",
            f"default ({shown_loops} loops)",
            "default vs workers=1",
            "placement counters per repetition",
            *(f"{impl.removeprefix('actors-uvloop-')} pinned vs workers=1" for impl in pinned),
        ],
        ["---", "---:", "---:", "---:", "---", *(["---:"] * len(pinned))],
    ]
    notes: list[str] = []
    for name in cases:
        key = "msgs_per_s" if name == "pingpong-app" else "ops_per_s"
        one, mine = _find(results, name, "actors-uvloop"), _find(results, name, DEFAULT)
        assert mine is not None
        cells = [
            "-" if one is None or (v := metric_median(one, key)) is None else _format_value("", v),
            "-" if (v := metric_median(mine, key)) is None else _format_value("", v),
        ]
        for impl in (DEFAULT, *pinned):
            r = ratio(results, name, key, impl, "actors-uvloop")
            cells.append("-" if r is None else f"{r:.2f}x")
            if impl == DEFAULT:
                cells.append(placement_counters(mine))
        rows.append([name.removeprefix("savina-"), *cells])
        together = mine.samples("same_loop")
        if together:
            notes.append(
                f"{name}: the pair ended {sum(together):.0f} of {len(together)} "
                f"repetitions on one loop (default ActorSystem())"
            )
    means = [
        None if (found := savina_mean(results, impl)) is None else found[0]
        for impl in (DEFAULT, *pinned)
    ]
    if any(m is not None for m in means):
        rows.append(
            [
                "Savina, geometric mean",
                "",
                "",
                *("-" if m is None else f"{m:.2f}x" for m in means[:1]),
                "",
                *("-" if m is None else f"{m:.2f}x" for m in means[1:]),
            ]
        )
    head = (
        "Placement: the default ActorSystem() (a loop per usable CPU, actors not pinned, "
        "co-location on) and the same spread pinned round-robin, each over "
        "ActorSystem(workers=1) (median rates; above 1: faster than one loop)"
    )
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    return "\n\n".join([head, table, *(["\n".join(f"- {n}" for n in notes)] if notes else [])])


BLOCKED_VARIANTS: Final = (
    (UNBLOCKED, "unblocked"),
    (BLOCKED, "blocked"),
    (BLOCKED_PINNED, "blocked, pinned (no evacuation)"),
)


def render_blocked(results: Sequence[CaseResult]) -> str:
    """blocked-neighbour: each variant's latencies (medians) and p99 over the unblocked p99."""
    found = [
        (label, result)
        for impl, label in BLOCKED_VARIANTS
        if (result := _find(results, "blocked-neighbour", impl)) is not None and result.reps
    ]
    if not found:
        return ""
    rows = [
        [
            "variant",
            "p50 µs",
            "p99 µs",
            "p99 vs unblocked",
            "p99.9 µs",
            "max µs",
            f"asks > {LATE * 1000:g} ms",
            "p99 from the 2nd block on, µs",
            "evacuations",
            "responders moved",
        ],
        ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"],
    ]
    for label, result in found:
        cells = [label]
        for key in ("p50_us", "p99_us"):
            v = metric_median(result, key)
            cells.append("-" if v is None else _format_value(key, v))
        r = ratio(results, "blocked-neighbour", "p99_us", result.implementation.name, UNBLOCKED)
        cells.append("-" if r is None else f"{r:.2f}x")
        for key in ("p999_us", "max_us"):
            v = metric_median(result, key)
            cells.append("-" if v is None else _format_value(key, v))
        late = metric_median(result, "late_share")
        cells.append("-" if late is None else f"{late:.1%}")
        v = metric_median(result, "later_p99_us")
        cells.append("-" if v is None else _format_value("later_p99_us", v))
        for key in ("placement_evacuations", "away"):
            v = metric_median(result, key)
            cells.append("-" if v is None else f"{v:g}")
        rows.append(cells)
    head = (
        f"Blocked loop: {RESPONDERS} responders start on worker 0 beside a hog actor; the host "
        f"asks them round-robin, one ask every {ASK_EVERY * 1000:g} ms; the hog blocks its loop "
        f"for {BLOCK_FOR * 1000:g} ms about every {BLOCK_EVERY * 1000:g} ms (unblocked: blocks "
        "of 0 s). Default ActorSystem(): evacuation after 10 ms, the warning at the default "
        "blocked_threshold (0.1 s). Medians over "
        "repetitions; evacuations and responders moved off worker 0 per repetition"
    )
    return head + "\n\n" + "\n".join("| " + " | ".join(row) + " |" for row in rows)


def render_scale(results: Sequence[CaseResult]) -> str:
    series = {
        r.implementation.name: r.extra.get("series")
        for r in results
        if r.workload.kind == "scale" and r.extra.get("series")
    }
    if not series:
        return ""
    names = list(series)
    rows = [
        ["actors", *(f"{n} msgs/s" for n in names), *(f"{n} B/actor RSS" for n in names)],
        ["---:", *(["---:"] * (2 * len(names)))],
    ]
    by_count: dict[int, dict[str, dict[str, float]]] = {}
    for name, points in series.items():
        for point in points:  # type: ignore[union-attr]
            by_count.setdefault(int(point["actors"]), {})[name] = point
    for count in sorted(by_count):
        row = [f"{count:,}"]
        for key in ("msgs_per_s", "rss_b_per_actor"):
            for name in names:
                point = by_count[count].get(name)
                row.append("-" if point is None else _format_value(key, point[key]))
        rows.append(row)
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def summary(result: CaseResult) -> str:
    """One progress line for a finished case."""
    head = f"{result.workload.name:13} {result.implementation.name:19}"
    if result.skipped:
        return f"{head} skipped: {result.skipped}"
    if result.error:
        return f"{head} FAILED: {result.error}"
    parts: list[str] = []
    for metric in shown(result.workload):
        samples = result.samples(metric.key)
        if not samples:
            continue
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
        "versions": {
            name: _version(name)
            for name in ("uvloop", "msgspec", "anyio", "pykka", "thespian", "xoscar")
        },
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
        "command": ["python", "-m", "actors", "bench", *argv],
        "settings": asdict(settings),
        "results": [_case_json(result) for result in results],
        "targets": [
            {
                "target": t.text,
                "value": v,
                "measured": text,
                "bound": f"{t.op} {t.bound}",
                "verdict": verdict,
            }
            for t, v, text, verdict in check_targets(results)
        ],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
