"""Signals in the drain: watch notices and traced timer ticks to a synchronous actor.

Run: python -m benchmarks.drain_signals [--base TREE] [--reps N] [--notices N] [--ticks N]
     [--callgrind]

Each measurement runs in a child process of its own, with ``PYTHONPATH`` set to the tree it
measures: this checkout, and with ``--base`` another one (a worktree of the code before), in
turns (base, change, base, change, ...), so that load from other work on the machine falls
on both alike. Printed: each case's median seconds per unit for each tree, and the ratio of
the medians (base / change: above 1, the change is faster).

* ``notices-async``: a watcher with a synchronous ``receive`` and an ``async def
  on_terminated`` hears of ``--notices`` actors that stop (they stop themselves on a message
  the watcher sends them all at once, on its own loop). Timed: from that message until the
  last notice was handled. The base's only form of the hook.
* ``notices-plain``: the same with a plain ``def on_terminated`` (this checkout only; its
  ratio is against the base's ``notices-async``).
* ``notices-async-spread``, ``notices-plain-spread``: as those, but each target has a
  watcher of its own, so that each notice finds its watcher idle (a supervisor of workers
  that end now and then), where a single watcher takes many notices in one run.
* ``ticks-traced``: ``--ticks`` synchronous actors in a tracing system (an SDK provider
  that records spans and exports nowhere) each start a timer of no delay on a message sent
  to them all at once, and handle its one tick. Timed: from that message until the last
  tick. One tick per actor, so that each tick finds its actor idle, as a periodic timer's
  usually does: a 1 µs periodic timer would find the run task of the code before still
  lingering from the previous tick, and measure no hand-over at all.

The set-up's objects are frozen out of the garbage collector's view before the timed part
(``gc.freeze``): a full collection walking thousands of actors falls into some runs and not
others, which made the medians bimodal (measured: the slow runs were those with a full
collection in them). With ``--callgrind`` each case also runs once per tree under
``valgrind --tool=callgrind`` (the garbage collector off), and the instructions per unit
are printed: a notice is the watched case minus the same program whose watchers do not
watch, over the count; a tick is the case minus the same program whose actors count down at
the start instead of starting a timer, over the count.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import msgspec
from opentelemetry.sdk.trace import TracerProvider

import actors

HERE = Path(__file__).resolve()
TREE = HERE.parent.parent


class Quit(msgspec.Struct, frozen=True):
    pass


class Target(actors.Actor[Quit]):
    def receive(self, message: Quit) -> None:
        self.stop()


class WatchAll(actors.Request[None], frozen=True):
    refs: tuple[actors.ActorRef[Quit], ...]
    watch: bool


class Go(msgspec.Struct, frozen=True):
    pass


class Left:
    """A countdown shared by the actors of one loop (its thread only), and its end."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.done = threading.Event()

    def one(self) -> None:
        self.count -= 1
        if not self.count:
            self.done.set()


class Watcher(actors.Actor[WatchAll | Go]):
    """Watches its targets (or not), and on `Go` tells them all to stop."""

    def __init__(self, left: Left) -> None:
        self.left = left
        self.refs: tuple[actors.ActorRef[Quit], ...] = ()

    def receive(self, message: WatchAll | Go) -> None:
        if isinstance(message, WatchAll):
            self.refs = message.refs
            if message.watch:
                for ref in message.refs:
                    self.watch(ref)
        else:
            for ref in self.refs:
                ref.try_send(Quit())

    def noted(self) -> None:
        self.left.one()


class AsyncHook(Watcher):
    async def on_terminated(self, event: actors.Terminated) -> None:
        self.noted()


def plain_hook() -> type[Watcher]:
    """The watcher with a plain hook: made on demand, since the base refuses the class."""

    class PlainHook(Watcher):
        def on_terminated(self, event: actors.Terminated) -> None:
            self.noted()

    return PlainHook


class Beat(msgspec.Struct, frozen=True):
    pass


class Start(msgspec.Struct, frozen=True):
    tick: bool  # False: count down at once, no timer (the baseline of the instruction count)


class Heart(actors.Actor[Start | Beat]):
    """On `Start`, a timer of no delay; its tick counts down (or the start itself does)."""

    def __init__(self, left: Left) -> None:
        self.left = left

    def receive(self, message: Start | Beat) -> None:
        if isinstance(message, Beat) or not message.tick:
            self.left.one()
        else:
            self.send_after(0.0, Beat())


class Conductor(actors.Actor[Start]):
    def __init__(self, hearts: list[actors.ActorRef[Start | Beat]]) -> None:
        self.hearts = hearts

    def receive(self, message: Start) -> None:
        for heart in self.hearts:
            heart.try_send(message)


_child_process = threading.Event()  # set in a measuring child: it may freeze its heap


def _settle_garbage() -> None:
    # The set-up's thousands of actors, frozen out of the collector's view before the timed
    # part: else whichever run a full collection falls into (walking all of them) takes up
    # to twice as long, and the medians compare that luck rather than the code. Only in a
    # child of its own: frozen objects are never collected again.
    if _child_process.is_set():
        gc.collect()
        gc.freeze()


async def notices(watcher_class: type[Watcher], watch: bool, spread: bool, count: int) -> float:
    """Seconds per notice (see the module docstring)."""
    left = Left(count)
    async with actors.ActorSystem(workers=1, blocked_threshold=None) as system:
        refs = tuple(
            [
                await system.spawn(Target, placement=0, restart=actors.Restart.TEMPORARY)
                for _ in range(count)
            ]
        )
        # One watcher of every target; or (``spread``) one of each, and one more to stop them.
        trigger = await system.spawn(lambda: watcher_class(left), placement=0)
        await trigger.ask(WatchAll(refs, watch and not spread), timeout=None)
        if spread:
            for ref in refs:
                watcher = await system.spawn(lambda: watcher_class(left), placement=0)
                await watcher.ask(WatchAll((ref,), watch), timeout=None)
        _settle_garbage()
        started = time.perf_counter()
        await trigger.send(Go())
        if watch:
            await anyio.to_thread.run_sync(left.done.wait)
        elapsed = time.perf_counter() - started
        for ref in refs:
            await ref.join()
    return elapsed / count


async def ticks(tick: bool, count: int) -> float:
    """Seconds per traced tick, start included (see the module docstring)."""
    left = Left(count)
    provider = TracerProvider()  # records every span, exports none
    try:
        async with actors.ActorSystem(
            workers=1, blocked_threshold=None, tracing=provider
        ) as system:
            hearts = [await system.spawn(lambda: Heart(left), placement=0) for _ in range(count)]
            conductor = await system.spawn(lambda: Conductor(hearts), placement=0)
            _settle_garbage()
            started = time.perf_counter()
            await conductor.send(Start(tick))
            await anyio.to_thread.run_sync(left.done.wait)
            elapsed = time.perf_counter() - started
    finally:
        provider.shutdown()
    return elapsed / count


def run_case(case: str, count: int) -> float:
    """Run one case in this process, against the ``actors`` on the path: seconds per unit."""
    if case.startswith("notices-"):
        hook, _, spread = case.removeprefix("notices-").partition("-")
        watcher_class = plain_hook() if hook == "plain" else AsyncHook
        return anyio.run(notices, watcher_class, hook != "none", spread == "spread", count)
    if case == "ticks-traced":
        return anyio.run(ticks, True, count)
    if case == "ticks-none":
        return anyio.run(ticks, False, count)
    raise SystemExit(f"unknown case {case!r}")


def _command(case: str, count: int) -> list[str]:
    return [sys.executable, str(HERE), "--child", case, str(count)]


def _environment(tree: Path, *, collector: bool = True) -> dict[str, str]:
    environment = dict(os.environ, PYTHONPATH=str(tree))
    if not collector:
        environment["DRAIN_SIGNALS_GC"] = "off"
    return environment


def run_once(tree: Path, case: str, count: int) -> float:
    """One child run of ``case`` against ``tree``: seconds per unit."""
    done = subprocess.run(
        _command(case, count),
        env=_environment(tree),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(done.stdout.split()[-1])


def instructions(tree: Path, case: str, count: int) -> int:
    """callgrind's instruction total for one child run of ``case`` against ``tree``."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            *_command(case, count),
        ],
        env=_environment(tree, collector=False),
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no callgrind total for {case} on {tree}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def _trees(base: Path | None) -> list[tuple[str, Path]]:
    trees = [("change", TREE)]
    if base is not None:
        trees.insert(0, ("base", base))
    return trees


NOTICES: Final = (
    "notices-async",
    "notices-plain",
    "notices-async-spread",
    "notices-plain-spread",
)


def _against(case: str) -> str:
    """The base's case a case of this checkout is compared with (the base has no plain hook)."""
    return case.replace("plain", "async")


def timed(base: Path | None, reps: int, notices: int, ticks: int) -> None:
    cases = dict.fromkeys(NOTICES, notices) | {"ticks-traced": ticks}
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(reps):
        for case, count in cases.items():
            for label, tree in _trees(base):
                if label == "base" and _against(case) != case:
                    continue  # the base refuses a plain hook
                results.setdefault((case, label), []).append(run_once(tree, case, count))
    print(f"median seconds per unit over {reps} interleaved runs (us), the range in brackets:")
    for (case, label), values in results.items():
        spread = f"{min(values) * 1e6:.2f}-{max(values) * 1e6:.2f}"
        print(f"  {case:20} {label:7} {statistics.median(values) * 1e6:8.2f}  ({spread})")
    if base is not None:
        print("ratio of medians, base / change (above 1: faster):")
        for case in cases:
            ratio = statistics.median(results[(_against(case), "base")]) / statistics.median(
                results[(case, "change")]
            )
            print(f"  {case:20} {ratio:.2f}x")


def counted(base: Path | None, notices: int, ticks: int) -> None:
    print("instructions per unit (callgrind, collector off):")
    for label, tree in _trees(base):
        baselines: dict[str, int] = {}
        for case in NOTICES:
            if label == "base" and _against(case) != case:
                continue
            spread = "-spread" if case.endswith("-spread") else ""
            if spread not in baselines:
                baselines[spread] = instructions(tree, f"notices-none{spread}", notices)
            total = instructions(tree, case, notices)
            per = (total - baselines[spread]) / notices / 1000
            print(f"  {case:20} {label:7} {per:8.1f} k per notice", flush=True)
        total = instructions(tree, "ticks-traced", ticks)
        idle = instructions(tree, "ticks-none", ticks)
        print(f"  {'ticks-traced':20} {label:7} {(total - idle) / ticks / 1000:8.1f} k per tick")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--base", type=Path, help="a checkout of the code to compare against")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--notices", type=int, default=2000)
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--callgrind", action="store_true")
    args: Any = parser.parse_args(argv)
    if args.child is not None:
        if os.environ.get("DRAIN_SIGNALS_GC") == "off":
            gc.disable()
        _child_process.set()
        case, count = args.child
        print(run_case(case, int(count)))
        return
    if args.reps > 0:  # --reps 0: instruction counts only
        timed(args.base, args.reps, args.notices, args.ticks)
    if args.callgrind:
        counted(args.base, args.notices, args.ticks)


if __name__ == "__main__":
    main()
