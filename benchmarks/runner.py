"""Running a workload for several implementations, with their repetitions interleaved.

Each implementation gets a `World`: a host thread running ``actors.run`` (uvloop or plain
asyncio, as the implementation says) in which its driver builds its actors, loops and threads
once for the whole workload. Every world stays up while the workload runs; an idle world
sleeps in its selectors and costs next to no CPU (an `actors` world's watchdog still probes
each of its loops every 50 ms: a few ms of CPU per second). The main thread first
calibrates each world's size N (the probe runs are the warm-up), then runs the repetitions
round-robin over the worlds, rotating the order each round. Slow phases of a shared machine
(another tenant, a CPU that stays parked for a few seconds) therefore hit every
implementation alike, instead of whichever happened to run then, and the ratios between
implementations stay meaningful.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Any, TypeVar

import actors

from .cases import CaseResult, calibrate, fixed_size, measure_once, size_limits
from .common import REP_TIMEOUT, CheckFailed

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence

    from .cases import Implementation, Rep, Settings, Workload
    from .common import Driver

__all__ = ("World", "run_workload")

T = TypeVar("T")


class World:
    """One implementation set up for one workload, in its own host thread."""

    def __init__(self, workload: Workload, impl: Implementation) -> None:
        self.workload = workload
        self.impl = impl
        self._driver: Driver = impl.make()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"bench-{impl.name}", daemon=True)

    def open(self) -> None:
        """Start the host thread and build the world; raise what went wrong."""
        self._thread.start()
        if not self._ready.wait(REP_TIMEOUT):
            raise TimeoutError(f"{self.impl.name} did not start within {REP_TIMEOUT} s")
        if self._error is not None:
            raise self._error

    def call(self, job: Callable[[Driver], Coroutine[Any, Any, T]]) -> T:
        """Run ``job(driver)`` on the host loop; block until it is done."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._bounded(job), self._loop)
        return future.result()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(REP_TIMEOUT)

    async def _bounded(self, job: Callable[[Driver], Coroutine[Any, Any, T]]) -> T:
        async with asyncio.timeout(REP_TIMEOUT):
            return await job(self._driver)

    def _main(self) -> None:
        try:
            actors.run(self._serve, use_uvloop=self.impl.host_uvloop)
        except BaseException as error:
            self._error = error
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self._driver.start(self.workload.setup())
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self._stop.wait()
        finally:
            await self._driver.close()


def run_workload(
    workload: Workload,
    impls: Sequence[Implementation],
    settings: Settings,
    progress: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Every implementation's result for ``workload``; failures are recorded, not raised.

    ``progress`` is called after each step of a case (opened, sized, each repetition).
    """
    results = [CaseResult(workload, impl) for impl in impls]
    tick = progress or (lambda result: None)
    worlds: dict[str, World] = {}
    reps = settings.program_reps if workload.kind == "program" else settings.reps
    try:
        for result in results:
            _open(result, worlds)
            tick(result)
        for result in results:
            _calibrate(result, worlds, settings)
            tick(result)
        for round_ in range(reps):
            live = [r for r in results if r.implementation.name in worlds]
            shift = round_ % len(live) if live else 0
            for result in live[shift:] + live[:shift]:
                _repeat(result, worlds, settings)
                tick(result)
    finally:
        for world in worlds.values():
            world.close()
    return results


def _open(result: CaseResult, worlds: dict[str, World]) -> None:
    impl = result.implementation
    result.skipped = impl.missing()
    if result.skipped is not None:
        return
    world = World(result.workload, impl)
    try:
        world.open()
    except Exception as error:
        _fail(result, error, worlds)
        world.close()
        return
    worlds[impl.name] = world


def _calibrate(result: CaseResult, worlds: dict[str, World], settings: Settings) -> None:
    world = worlds.get(result.implementation.name)
    if world is None:
        return
    workload = result.workload
    once = measure_once(workload, settings)
    fixed = fixed_size(workload, result.implementation, settings)

    async def job(driver: Driver) -> int:
        async def probe(n: int) -> Rep:
            return await once(driver, n)

        if fixed is not None:  # one warm-up run at a tenth of the size
            warm = fixed // 10
            if workload.program is not None:
                warm = workload.program.size_for(result.implementation.scale * 0.005)
            await probe(max(1, warm))
            return fixed
        smallest, largest = size_limits(workload.kind, settings)
        return await calibrate(probe, smallest, settings.seconds, largest)

    try:
        result.n = world.call(job)
    except Exception as error:
        _fail(result, error, worlds)


def _repeat(result: CaseResult, worlds: dict[str, World], settings: Settings) -> None:
    world = worlds[result.implementation.name]
    once = measure_once(result.workload, settings)
    n = result.n

    async def job(driver: Driver) -> Rep:
        return await once(driver, n)

    try:
        result.reps.append(world.call(job))
    except Exception as error:
        _fail(result, error, worlds)


def _fail(result: CaseResult, error: Exception, worlds: dict[str, World]) -> None:
    """Record the failure and drop the world from the remaining rounds."""
    if not isinstance(error, CheckFailed):  # a wrong result explains itself; a crash does not
        traceback.print_exception(error, file=sys.stderr)
    result.error = f"{type(error).__name__}: {error}"
    world = worlds.pop(result.implementation.name, None)
    if world is not None:
        world.close()
