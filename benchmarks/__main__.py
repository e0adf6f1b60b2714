"""``python -m actors bench`` (or ``python -m benchmarks``): run the suite, print the tables.

A progress bar goes to stderr; the tables and the targets go to stdout (Markdown, to paste
into docs/benchmarks.md). The exit status is 1 when a case failed (a wrong result, a crash,
a timeout), else 0; peers that are not installed are skipped with a note. No threshold is
asserted: the targets are only reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import sys
import time
from pathlib import Path
from typing import TextIO

from .cases import (
    FULL,
    IMPLEMENTATIONS,
    QUICK,
    WORKLOADS,
    CaseResult,
    Implementation,
    Settings,
    Workload,
)
from .report import (
    machine_info,
    render_blocked,
    render_multiloop,
    render_placement,
    render_savina_matrix,
    render_scale,
    render_table,
    render_targets,
    summary,
    write_json,
)
from .runner import run_workload

ISOLATED = ("memory", "spawn", "spawn-host", "scale")
"""Workloads measured in a fresh process per implementation (see `benchmarks.isolated`)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    names = [w.name for w in WORKLOADS] + [i.name for i in IMPLEMENTATIONS]
    parser = argparse.ArgumentParser(
        prog="python -m actors bench",
        description="Savina programs and micro-benchmarks: actors next to its peers, one run.",
        epilog="names: " + ", ".join(names),
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, few repetitions (a smoke test, < 1 min)"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only matching cases: a workload, an implementation or WORKLOAD:IMPL; "
        "shell patterns allowed; repeat or separate with commas",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every sample here")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        help="draw charts (needs matplotlib): PATH, and PATH's stem + -scale, -latency",
    )
    parser.add_argument("--reps", type=int, help="repetitions per micro case (default 5, quick 2)")
    parser.add_argument(
        "--seconds", type=float, help="target seconds per repetition (default 0.3, quick 0.05)"
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    settings = QUICK if args.quick else FULL
    if args.reps is not None:
        settings = dataclasses.replace(settings, reps=max(1, args.reps))
    if args.seconds is not None:
        settings = dataclasses.replace(settings, seconds=max(0.001, args.seconds))
    return settings


def selected(patterns: list[str] | None) -> list[tuple[Workload, list[Implementation]]]:
    """Each workload with the implementations that run it and that a pattern matches."""
    wanted = [p for item in patterns or ["*"] for p in item.split(",") if p]
    plan: list[tuple[Workload, list[Implementation]]] = []
    for workload in WORKLOADS:
        impls = [
            impl
            for impl in IMPLEMENTATIONS
            if impl.runs(workload.name)
            and any(
                fnmatch.fnmatchcase(key, p)
                for p in wanted
                for key in (workload.name, impl.name, f"{workload.name}:{impl.name}")
            )
        ]
        if impls:
            plan.append((workload, impls))
    return plan


class Progress:
    """A progress bar on a terminal; one line per finished case otherwise."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.began = time.monotonic()

    def step(self, label: str, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        if self.tty:
            width = 30
            filled = round(width * self.done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            elapsed = time.monotonic() - self.began
            line = f"\r[{bar}] {self.done / self.total:4.0%} {elapsed:5.0f}s  {label[:60]:60}"
            self.stream.write(line)
            self.stream.flush()

    def line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 110 + "\r")
        print(text, file=self.stream, flush=True)


def _steps(workload: Workload, impls: list[Implementation], settings: Settings) -> int:
    if workload.kind in ISOLATED:
        return len(impls) * (6 if workload.kind == "scale" else 1)
    reps = settings.program_reps if workload.kind == "program" else settings.reps
    return len(impls) * (2 + reps)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    plan = selected(args.only)
    if args.list:
        for workload, impls in plan:
            print(f"{workload.name:24} {', '.join(i.name for i in impls)}")
        return 0
    if not plan:
        print("bench: --only matched no case (see --help for the names)", file=sys.stderr)
        return 2
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        # Checked before minutes of measuring, not after: a typo must not lose the run.
        if path is not None and not Path(path).resolve().parent.is_dir():
            print(f"bench: {option} {path}: no such directory", file=sys.stderr)
            return 2
    machine = machine_info()
    progress = Progress(sum(_steps(w, i, settings) for w, i in plan))
    began = time.monotonic()
    results: list[CaseResult] = []
    for workload, impls in plan:
        started = time.monotonic()

        def tick(result: CaseResult, name: str = workload.name) -> None:
            progress.step(f"{name} {result.implementation.name}")

        if workload.kind in ISOLATED:
            from .isolated import run_isolated

            done: list[CaseResult] = []
            for impl in impls:
                result = CaseResult(workload, impl)
                run_isolated(result, settings, tick)
                done.append(result)
        else:
            done = run_workload(workload, impls, settings, tick)
        for result in done:
            results.append(result)
            progress.line(f"[{len(results):3}] {summary(result)}")
        progress.line(f"      {workload.name}: {time.monotonic() - started:.1f} s")
    progress.line(f"all cases: {time.monotonic() - began:.1f} s")
    for section in (
        render_table(results),
        render_multiloop(results),
        render_savina_matrix(results),
        render_placement(results),
        render_blocked(results),
        render_scale(results),
        render_targets(results),
    ):
        if section:
            print(section)
            print()
    if args.json is not None:
        write_json(args.json, results, machine=machine, settings=settings, argv=argv)
        print(f"samples written to {args.json}", file=sys.stderr)
    if args.plot is not None:
        from .plot import plot

        try:
            for path in plot(args.plot, results, machine=machine, argv=argv):
                print(f"chart written to {path}", file=sys.stderr)
        except ImportError as error:
            print(f"bench: --plot needs matplotlib ({error})", file=sys.stderr)
            return 1
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
