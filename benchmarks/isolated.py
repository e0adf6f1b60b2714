"""Cases that need a fresh process each: memory per idle actor, spawn rates, and scale.

Memory is measured in a process of its own per implementation, so that what other cases
allocated (and the allocator kept) does not blur it:

* RSS: the resident set size after spawning k idle actors minus before, over k (what the
  operating system sees, allocator slack included; Linux only);
* tracemalloc: the Python allocations still live after spawning another k idle actors,
  over k (exact, but blind to memory allocated outside Python's allocator, such as thread
  stacks and uvloop's C structures).

Spawn rate is measured in a process of its own per implementation too: spawning allocates
many objects, so the garbage collector's full passes, which walk every object in the
process, make it depend on the heap that earlier cases and the other implementations left
(in the suite's process `actors` spawned 128-141 k/s where a fresh process gives 190-220
k/s). Every implementation gets the same clean start: the warm-up spawn, then the
repetitions back to back. The spawn-host case (spawns made by the application's own task,
not from inside an actor) runs the same way.

Scale runs `ScaleMain` (a portable program: A sink actors, n messages spread round-robin
over them, each sink reporting when it has its share) for a growing A, each A in a process
of its own, and reports the message rate after the spawning and the RSS per actor.

``python -m benchmarks.isolated memory IMPL K``, ``... spawn IMPL K REPS`` (or
``spawn-host``) and ``... scale IMPL A N`` print one JSON object; `run_isolated` runs them
for the suite.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import msgspec

import actors

from .common import CAPACITY, CheckFailed, Setup, rss_bytes
from .portable import START, Behaviour, Ref, Start
from .savina.program import Program

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .cases import CaseResult, Implementation, Settings, Workload
    from .common import HostSpawnDriver

__all__ = ("ScaleMain", "run_isolated")


class Hit(msgspec.Struct, frozen=True):
    pass


class Full(msgspec.Struct, frozen=True):
    pass


class Done(msgspec.Struct, frozen=True):
    pass


HIT, FULL, DONE = Hit(), Full(), Done()


class ScaleMain(Behaviour):
    """Spawns ``ACTORS`` sinks and a feeder, times the feeder's hits until every sink is full.

    The feeder sends, so that this actor is free to take the sinks' reports as they come
    (were it sending itself, the reports would pile up behind its own handler and measure
    its mailbox's backpressure). The sinks stay alive until every one has reported, so the
    timed part is steady message handling by ``ACTORS`` busy actors, not their stopping.
    """

    ACTORS = 1

    def __init__(self, n: int) -> None:
        self.n = n
        self.full = 0
        self.began = 0.0
        self.rss = 0
        self.sinks: list[Ref] = []

    async def receive(self, message: Any) -> None:
        if type(message) is Full:
            self.full += 1
            if self.full == self.ACTORS:
                seconds = time.perf_counter() - self.began
                for sink in self.sinks:
                    await sink.send(DONE)
                self.ctx.finish((self.n, seconds, self.rss))
                self.ctx.stop()
        elif type(message) is Start:
            a, me = self.ACTORS, self.ctx.self_ref
            gc.collect()
            before = rss_bytes()
            shares = [self.n // a + (i < self.n % a) for i in range(a)]
            self.sinks = [await self.ctx.spawn(Sink, share, me) for share in shares]
            feeder = await self.ctx.spawn(Feeder, self.sinks, self.n)
            gc.collect()
            self.rss = rss_bytes() - before
            self.began = time.perf_counter()
            await feeder.send(START)


class Feeder(Behaviour):
    """Sends ``n`` hits round-robin over the sinks, then stops."""

    def __init__(self, sinks: list[Ref], n: int) -> None:
        self.sends = [sink.send for sink in sinks]
        self.n = n

    async def receive(self, message: Any) -> None:
        sends, a = self.sends, len(self.sends)
        for i in range(self.n):
            await sends[i % a](HIT)
        self.sends = []
        self.ctx.stop()


class Sink(Behaviour):
    """Counts its hits down, reports once it has its share, stops when told."""

    def __init__(self, quota: int, main: Ref) -> None:
        self.left = quota
        self.main = main

    async def receive(self, message: Any) -> None:
        if type(message) is Done:
            self.ctx.stop()
            return
        self.left -= 1
        if not self.left:
            await self.main.send(FULL)


# -- in the child process ------------------------------------------------------------------


def _implementation(name: str) -> Implementation:
    from .cases import IMPLEMENTATIONS

    for impl in IMPLEMENTATIONS:
        if impl.name == name:
            return impl
    raise SystemExit(f"unknown implementation {name}")


async def _spawner(impl: Implementation) -> tuple[Callable[[int], Awaitable[Any]], Any]:
    """A function spawning k idle actors of ``impl`` (kept alive by what it returns)."""
    name = impl.name
    if name.startswith("actors"):
        from .subject import Idle

        system = actors.ActorSystem(workers=1, use_uvloop=impl.host_uvloop)
        await system.start()

        async def spawn_actors(k: int) -> Any:
            return [await system.spawn(Idle, placement="host") for _ in range(k)]

        return spawn_actors, system
    if name.startswith("queue"):
        from .peers.queue_actor import QueueActor

        async def ignore(message: Any) -> None:
            return None

        async def spawn_queues(k: int) -> Any:
            made = [QueueActor(ignore, CAPACITY) for _ in range(k)]
            await asyncio.sleep(0)  # let every task start and park in queue.get()
            return made

        return spawn_queues, None
    if name == "callback":
        from .peers.callback_actor import CallbackActor

        async def spawn_callbacks(k: int) -> Any:
            return [CallbackActor(print) for _ in range(k)]

        return spawn_callbacks, None
    if name == "pykka":
        import pykka

        class PykkaIdle(pykka.ThreadingActor):
            pass

        async def spawn_pykka(k: int) -> Any:
            return [PykkaIdle.start() for _ in range(k)]

        return spawn_pykka, None
    if name == "thespian":
        from thespian.actors import ActorSystem

        from .peers.thespian_peer import _actor_classes  # pyright: ignore[reportPrivateUsage]

        system = ActorSystem("simpleSystemBase")
        idle = _actor_classes()["Idle"]

        async def spawn_thespian(k: int) -> Any:
            return [system.createActor(idle) for _ in range(k)]

        return spawn_thespian, system
    if name == "xoscar":
        import xoscar

        from .peers.xoscar_peer import _actor_classes  # pyright: ignore[reportPrivateUsage]

        pool = await xoscar.create_actor_pool("127.0.0.1:0", n_process=0)
        idle, address = _actor_classes()["Idle"], pool.external_address

        async def spawn_xoscar(k: int) -> Any:
            return [await xoscar.create_actor(idle, address=address) for _ in range(k)]

        return spawn_xoscar, pool
    raise SystemExit(f"no memory measurement for {name}")


async def _memory(impl: Implementation, k: int) -> dict[str, float]:
    spawn, keep = await _spawner(impl)
    held: list[Any] = [keep, await spawn(min(100, k))]  # warm-up: imports, first-use caches
    gc.collect()
    before = rss_bytes()
    held.append(await spawn(k))
    gc.collect()
    rss = (rss_bytes() - before) / k
    tracemalloc.start()
    gc.collect()
    start = tracemalloc.get_traced_memory()[0]
    held.append(await spawn(k))
    gc.collect()
    traced = (tracemalloc.get_traced_memory()[0] - start) / k
    tracemalloc.stop()
    return {"rss_b": rss, "tracemalloc_b": traced, "k": float(k)}


SCALE_PROGRAM_TIMEOUT = 300.0
SCALE_SHARE = 20  # hits per sink (at least): the same per-actor activations at every size


async def _scale(impl: Implementation, a: int, n: int) -> dict[str, float]:
    main = type("ScaleMain", (ScaleMain,), {"ACTORS": a})
    program = Program("scale", "scale", main, n, lambda n: n, lambda n: n)
    driver = impl.make()
    await driver.start(Setup())
    try:
        result = await driver.run_program(program, n, SCALE_PROGRAM_TIMEOUT)
    finally:
        await driver.close()
    got, seconds, rss = result  # type: ignore[misc]
    if got != n:
        raise CheckFailed(f"scale: {got} of {n} messages")
    return {"msgs_per_s": n / seconds, "rss_b_per_actor": rss / a, "actors": float(a)}


async def _spawn_rates(
    impl: Implementation, k: int, reps: int, *, from_host: bool = False
) -> dict[str, float]:
    """``reps`` spawn rates (actors/s) of ``k`` idle actors each, after a warm-up spawn.

    ``from_host``: the spawn-host workload (`HostSpawnDriver.spawn_from_host`).
    """
    driver = impl.make()
    await driver.start(Setup())
    spawn = cast("HostSpawnDriver", driver).spawn_from_host if from_host else driver.spawn_many
    try:
        await spawn(max(50, k // 10))  # warm-up: imports, first-use caches
        rates: dict[str, float] = {}
        for rep in range(reps):
            gc.collect()
            rates[f"rep{rep}"] = k / await spawn(k)
        return rates
    finally:
        await driver.close()


def _child(argv: list[str]) -> None:
    what, name, *sizes = argv
    impl = _implementation(name)
    numbers = [int(s) for s in sizes]

    async def main() -> dict[str, float]:
        if what == "memory":
            return await _memory(impl, *numbers)
        if what in ("spawn", "spawn-host"):
            return await _spawn_rates(impl, *numbers, from_host=what == "spawn-host")
        return await _scale(impl, *numbers)

    result = actors.run(main, use_uvloop=impl.host_uvloop)
    print(json.dumps(result), flush=True)
    sys.stdout.flush()
    os._exit(0)  # skip the peers' slow interpreter teardown (thread joins, pools)


# -- in the suite's process -----------------------------------------------------------------


def _child_env() -> dict[str, str]:
    """PYTHONPATH such that the child imports the same `actors` and `benchmarks`."""
    here = Path(__file__).parent.parent
    roots = [str(here), str(Path(actors.__file__).parent.parent)]
    old = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*roots, *([old] if old else [])])}


def _run_child(args: list[str], timeout: float) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.isolated", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_child_env(),
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"child {' '.join(args)} exited {done.returncode}: {tail}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def scale_sizes(settings: Settings) -> list[int]:
    sizes, a = [], 1
    while a <= settings.scale_max:
        sizes.append(a)
        a *= 10
    return sizes


def run_isolated(
    result: CaseResult, settings: Settings, progress: Callable[[CaseResult], None]
) -> None:
    """Fill ``result`` for a memory, spawn or scale case (failures recorded, not raised)."""
    from .cases import Rep, fixed_size

    workload: Workload = result.workload
    impl = result.implementation
    result.skipped = impl.missing()
    if result.skipped is not None:
        return
    try:
        if workload.kind == "memory":
            k = max(50, round(settings.memory_k * min(1.0, impl.scale * 2)))
            result.n = k
            metrics = _run_child(["memory", impl.name, str(k)], timeout=300)
            result.reps.append(Rep(k, 0.0, metrics))
            progress(result)
            return
        if workload.kind in ("spawn", "spawn-host"):
            k = fixed_size(workload, impl, settings) or settings.spawn_k
            result.n = k
            args = [workload.kind, impl.name, str(k), str(settings.reps)]
            rates = _run_child(args, timeout=600)
            for rate in rates.values():
                result.reps.append(Rep(k, k / rate, {"actors_per_s": rate}))
            progress(result)
            return
        series: list[dict[str, float]] = []
        for a in scale_sizes(settings):
            n = max(settings.overload_n, SCALE_SHARE * a)
            began = time.perf_counter()
            metrics = _run_child(["scale", impl.name, str(a), str(n)], timeout=600)
            series.append(metrics)
            result.reps.append(Rep(n, time.perf_counter() - began, metrics))
            progress(result)
        result.n = len(series)
        result.extra["series"] = series
    except Exception as error:
        result.error = f"{type(error).__name__}: {error}"


if __name__ == "__main__":
    _child(sys.argv[1:])
