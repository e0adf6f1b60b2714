"""What every implementation shares: the messages, the counting state, the driver interface.

Every implementation handles exactly the same messages with exactly the same code
(`CounterState.handle`), wrapped in whatever its framework needs (an ``async def receive``,
a pykka ``on_receive``), so that the numbers compare message transport, not handlers.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol

import msgspec

import actors

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .savina import Program

__all__ = (
    "CAPACITY",
    "REP_TIMEOUT",
    "CheckFailed",
    "Collect",
    "CounterState",
    "Driver",
    "Echo",
    "HostSpawnDriver",
    "Inc",
    "LifeDriver",
    "PairDriver",
    "Place",
    "RssSampler",
    "Setup",
    "SlowCounterState",
    "Tally",
    "UnitsDriver",
    "check_echo",
    "check_tally",
    "expected_total",
    "median",
    "new_event_loop",
    "percentile",
    "rss_bytes",
)

CAPACITY: Final = actors.DEFAULT_CAPACITY
"""Mailbox bound of the counting actor: actors' default (1000), the same for bounded peers."""

REP_TIMEOUT: Final = 120.0
"""Seconds one repetition may take before it counts as hung."""

Place = Literal["same", "cross"]
"""Where the producers (or the asker) run: the counter's own loop, or another loop/thread."""


class Inc(msgspec.Struct, frozen=True):
    """A tell: the counter counts it and adds ``n`` to its total."""

    n: int


class Tally(msgspec.Struct, frozen=True):
    """What the counter saw since the last `Collect`."""

    count: int
    total: int


class Collect(actors.Request[Tally], frozen=True):
    """Ask for the tally and reset it."""


class Echo(actors.Request[int], frozen=True):
    """Ask for ``n`` back (the ask round trip)."""

    n: int


class CheckFailed(Exception):
    """A workload saw a wrong result: lost, duplicated or corrupted messages."""


class CounterState:
    """The counting actor's state and handler, shared by every implementation."""

    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def handle(self, message: Inc | Collect | Echo) -> Tally | int | None:
        if type(message) is Inc:
            self.count += 1
            self.total += message.n
            return None
        if type(message) is Echo:
            return message.n
        tally = Tally(self.count, self.total)
        self.count = self.total = 0
        return tally


class SlowCounterState(CounterState):
    """The overload case's consumer: the same handler plus a few microseconds of work."""

    __slots__ = ()

    def handle(self, message: Inc | Collect | Echo) -> Tally | int | None:
        if type(message) is Inc:
            x = 0
            for k in range(SLOW_WORK):
                x += k
        return super().handle(message)


SLOW_WORK: Final = 150
"""Loop iterations per message in `SlowCounterState` (a few µs: far slower than a send)."""


_PAGE: Final = os.sysconf("SC_PAGESIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        return 0


class RssSampler:
    """Samples the RSS (and an optional depth probe) every ``interval`` s in a thread."""

    def __init__(self, depth: Callable[[], int] | None = None, interval: float = 0.002) -> None:
        self._depth = depth
        self._interval = interval
        self._stop = threading.Event()
        self.base = rss_bytes()
        self.peak = self.base
        self.max_depth = 0
        self._thread = threading.Thread(target=self._main, name="bench-rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        self.peak = max(self.peak, rss_bytes())
        if self._depth is not None:
            self.max_depth = max(self.max_depth, self._depth())

    def _main(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()


@dataclass(frozen=True)
class Setup:
    """What a driver builds its world for: where the producers are, how many, which consumer."""

    place: Place = "same"
    producers: int = 1
    slow: bool = False  # the overload case's slow consumer (`SlowCounterState`)
    units: int = 0  # multiloop: independent producer->counter pairs, spread over the loops
    pair: bool = False  # pingpong-app: a ping and a pong actor, spawned by the host task


class Driver(Protocol):
    """One implementation, set up for one workload; a workload runs it several times.

    ``start`` builds the world (loops, threads, actors) for a `Setup`, ``close`` tears it
    down. Between them, whichever of these the workload uses (an implementation declares
    the workloads it supports):

    * ``tell(counts)``: producer ``i`` sends ``Inc(0) .. Inc(counts[i] - 1)`` to the counter,
      then the counter's tally is collected (and reset) with an ask that is ordered after
      every one of those messages. Returns that tally.
    * ``ask_latencies(k)``: ``k`` sequential ``Echo`` asks; returns each round trip in ns.
    * ``run_program(program, n, timeout)``: one run of a Savina program; returns its result.
    * ``spawn_many(k)``: spawn ``k`` idle actors; returns the seconds that took (the
      clean-up afterwards is not timed).
    * ``depth()``: messages waiting in the counter's mailbox now (any thread; racy).

    The multiloop workload needs a `UnitsDriver` as well, spawn-host a `HostSpawnDriver`,
    pingpong-app a `PairDriver`.
    """

    async def start(self, setup: Setup) -> None: ...

    async def close(self) -> None: ...

    async def tell(self, counts: Sequence[int]) -> Tally: ...

    async def ask_latencies(self, k: int) -> list[int]: ...

    async def run_program(self, program: Program, n: int, timeout: float) -> object: ...

    async def spawn_many(self, k: int) -> float: ...

    def depth(self) -> int: ...


class UnitsDriver(Driver, Protocol):
    """A driver that runs the multiloop workload (independent work on its loops).

    * ``independent(counts)``: with ``Setup.units`` pairs built, unit ``i`` (a producer and
      its own counter, both on loop ``i % loops``) does what ``tell([counts[i]])`` does,
      all units at once; returns each unit's tally, in unit order.
    """

    async def independent(self, counts: Sequence[int]) -> list[Tally]: ...


class StreamDriver(Driver, Protocol):
    """A driver that runs the stream workloads (one producer streaming to one reader).

    * ``stream_items(n, window)``: a producer yields ``0 .. n - 1`` with at most ``window``
      items in flight, to a reader on its own loop (``Setup.place`` "same") or on another
      (``"cross"``); returns how many items the reader got, in order.
    """

    async def stream_items(self, n: int, window: int) -> int: ...


class HostSpawnDriver(Driver, Protocol):
    """A driver that runs the spawn-host workload (spawning from the application's task).

    * ``spawn_from_host(k)``: the host task itself (the loop `actors.run` started, as a web
      application's startup would) creates ``k`` idle actors one after another; returns the
      seconds that took. For `actors`, ``await system.spawn(...)`` onto a worker loop; for
      the naive actor, ``asyncio.create_task`` on the host loop.
    """

    async def spawn_from_host(self, k: int) -> float: ...


class LifeDriver(Driver, Protocol):
    """A driver for the life workload."""

    async def life_many(self, k: int) -> float:
        """``k`` actors' whole lives one after another on one loop (spawn, one message, the
        actor stops itself, wait for its end); returns the seconds they took."""
        ...


class PairDriver(Driver, Protocol):
    """A driver that runs the pingpong-app workload (two actors the application spawned).

    * ``rally(n)``: with ``Setup.pair`` built (a ping and a pong actor, spawned once by the
      host task), ping sends pong ``n`` balls one after another, each answered before the
      next; returns the number of answers ping counted.
    """

    async def rally(self, n: int) -> object: ...


def expected_total(counts: Sequence[int]) -> int:
    """Sum of ``n`` over every `Inc` the producers of ``counts`` send."""
    return sum(c * (c - 1) // 2 for c in counts)


def check_tally(tally: Tally, counts: Sequence[int]) -> None:
    """Raise `CheckFailed` unless the counter saw exactly the messages that were sent."""
    want = Tally(sum(counts), expected_total(counts))
    if tally != want:
        raise CheckFailed(f"counter saw {tally}, expected {want}")


def check_echo(reply: object, n: int) -> None:
    if reply != n:
        raise CheckFailed(f"Echo({n}) answered {reply!r}")


def new_event_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    """A fresh uvloop or plain asyncio loop."""
    if use_uvloop:
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def median(values: Sequence[float]) -> float:
    """The median; for an even count, the mean of the two middle values."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of already sorted ``ordered``."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]
