"""One Savina message in instructions: `actors` with synchronous handlers against the queue actor.

Run as ``python -m benchmarks.savina_instructions`` (``--python``, ``--programs``). The wall
clock reads pingpong and ThreadRing within its own noise (0.9-1.3x the queue actor from run
to run), so these rows count instructions instead, as `benchmarks.tell_instructions` does
for the same-loop tell: each row runs one program in a fresh process under ``valgrind
--tool=callgrind`` at two sizes, and prints (difference) / (messages more): what one more
message of the program costs, the actors' spawns and the system's start and shutdown
cancelled out. The sizes differ by `EXTRA` operations (round trips for pingpong, hops for
ThreadRing), and the program ran once, small, before the counted run (every path warm).
``PYTHONHASHSEED=0`` is set and each run turns the collector off. The `actors` system runs
without its blocked-loop watchdog: that thread wakes by the wall clock, which callgrind
slows about 50-fold, so its count is noise (about +-100 per message here), not a message's.

The two implementations are the `python -m actors bench` rows:

* ``actors``: ``actors-uvloop-sync``: an `ActorSystem` with one uvloop worker, the
  program's behaviours as ``def receive`` handlers that ``try_send`` (`synchronous`);
* ``queue``: ``queue-uvloop``: the naive ``asyncio.Queue`` actor, every actor a task on one
  uvloop loop (here the main thread's).

``python -m benchmarks.savina_instructions --variant PROGRAM IMPL N`` runs one without
valgrind. ``docs/benchmarks.md`` ("Savina in instructions") reads the rows.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import sys
from typing import Final

from .common import Setup
from .peers.queue_actor import run_program_here
from .savina import PROGRAMS, Program
from .subject import ActorsDriver
from .tell_instructions import count

BASE: Final = 2_000  # operations in the smaller run (and the warm-up's)
EXTRA: Final = 10_000  # operations more in the larger run
TIMEOUT: Final = 600.0  # seconds: callgrind runs Python about 50 times slower
IMPLEMENTATIONS: Final = ("actors", "queue")
DEFAULT_PROGRAMS: Final = ("pingpong", "threadring")


def _program(name: str) -> Program:
    for program in PROGRAMS:
        if program.name == name:
            return program
    raise SystemExit(f"unknown program {name!r}; one of {', '.join(p.name for p in PROGRAMS)}")


async def _actors(program: Program, n: int) -> None:
    driver = ActorsDriver(use_uvloop=True, sync=True, watchdog=False)
    await driver.start(Setup())
    try:
        _check(program, BASE, await driver.run_program(program, BASE, TIMEOUT))  # warm up
        _check(program, n, await driver.run_program(program, n, TIMEOUT))
    finally:
        await driver.close()


async def _queue(program: Program, n: int) -> None:
    _check(program, BASE, await run_program_here(program, BASE, TIMEOUT))
    _check(program, n, await run_program_here(program, n, TIMEOUT))


def _check(program: Program, n: int, result: object) -> None:
    wrong = program.check(n, result)
    if wrong is not None:
        raise SystemExit(wrong)


def run_variant(name: str, implementation: str, n: int) -> None:
    """Run program ``name`` of size ``n`` (after a warm-up) on ``implementation`` here."""
    gc.disable()  # instructions of the messages, not of collections
    program = _program(name)
    if implementation == "actors":
        asyncio.run(_actors(program, n))
    elif implementation == "queue":
        import uvloop  # the peer's loop; only here: there is no uvloop on Windows

        uvloop.run(_queue(program, n))
    else:
        raise SystemExit(f"unknown implementation {implementation!r}; one of {IMPLEMENTATIONS}")


def per_message(python: str, name: str, implementation: str) -> float:
    """Instructions one more message of program ``name`` costs on ``implementation``."""
    program = _program(name)
    module = "benchmarks.savina_instructions"
    small = count(python, [name, implementation, str(BASE)], module=module)
    large = count(python, [name, implementation, str(BASE + EXTRA)], module=module)
    return (large - small) / (program.ops(BASE + EXTRA) - program.ops(BASE))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One Savina message in instructions.")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--programs", nargs="+", default=list(DEFAULT_PROGRAMS))
    parser.add_argument(
        "--variant", nargs=3, metavar=("PROGRAM", "IMPL", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.variant is not None:
        run_variant(args.variant[0], args.variant[1], int(args.variant[2]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: this benchmark counts with callgrind")
    for name in args.programs:
        rows = {impl: per_message(args.python, name, impl) for impl in IMPLEMENTATIONS}
        ratio = rows["queue"] / rows["actors"]  # a rate is the inverse of a message's cost
        print(
            f"{name:<12} actors {rows['actors']:>7,.0f}  queue actor {rows['queue']:>7,.0f}"
            f"  instructions per message; actors / queue actor, as rates: {ratio:.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
