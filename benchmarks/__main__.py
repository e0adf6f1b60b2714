"""``python -m benchmarks``: run the workloads for every implementation and print the table.

Progress goes to stderr, one line per case (a workload's cases finish together, as their
repetitions are interleaved: see `benchmarks.runner`); the table and the targets go to
stdout. The exit status is 1 when a case failed (a wrong result or an error), else 0;
missing optional peers are skipped with a note. No threshold is asserted: the targets are
only reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import sys
import time
from pathlib import Path

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
from .report import machine_info, render_table, render_targets, summary, write_json
from .runner import run_workload


def parse_args(argv: list[str]) -> argparse.Namespace:
    names = [w.name for w in WORKLOADS] + [i.name for i in IMPLEMENTATIONS]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Throughput and latency of actors next to an asyncio.Queue actor and pykka.",
        epilog="names: " + ", ".join(names),
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, 2 repetitions (a smoke test)"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only matching cases: a workload, an implementation or WORKLOAD:IMPL; "
        "shell patterns allowed; repeat or separate with commas",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every sample here")
    parser.add_argument("--reps", type=int, help="repetitions per case (default 5, quick 2)")
    parser.add_argument(
        "--seconds", type=float, help="target seconds per repetition (default 0.3, quick 0.05)"
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    settings = QUICK if args.quick else FULL
    if args.reps is not None:
        settings = dataclasses.replace(settings, reps=max(1, args.reps))
    if args.seconds is not None:
        settings = dataclasses.replace(settings, seconds=max(0.001, args.seconds))
    return settings


def selected(patterns: list[str] | None) -> list[tuple[Workload, list[Implementation]]]:
    """Each workload with the implementations that support it and that a pattern matches."""
    wanted = [p for item in patterns or ["*"] for p in item.split(",") if p]
    plan: list[tuple[Workload, list[Implementation]]] = []
    for workload in WORKLOADS:
        impls = [
            impl
            for impl in IMPLEMENTATIONS
            if workload.name in impl.workloads
            and any(
                fnmatch.fnmatchcase(key, p)
                for p in wanted
                for key in (workload.name, impl.name, f"{workload.name}:{impl.name}")
            )
        ]
        if impls:
            plan.append((workload, impls))
    return plan


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    plan = selected(args.only)
    if not plan:
        print("benchmarks: --only matched no case (see --help for the names)", file=sys.stderr)
        return 2
    machine = machine_info()
    total = sum(len(impls) for _, impls in plan)
    began = time.monotonic()
    results: list[CaseResult] = []
    for workload, impls in plan:
        started = time.monotonic()
        done = run_workload(workload, impls, settings)
        took = time.monotonic() - started
        for result in done:
            results.append(result)
            print(f"[{len(results):2}/{total}] {summary(result)}", file=sys.stderr)
        print(f"        {workload.name}: {took:.1f} s", file=sys.stderr)
    print(f"all cases: {time.monotonic() - began:.1f} s", file=sys.stderr)
    print(render_table(results))
    print()
    print(render_targets(results))
    if args.json is not None:
        write_json(args.json, results, machine=machine, settings=settings, argv=argv)
        print(f"samples written to {args.json}", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
