"""What every implementation shares: the messages, the counting state, the driver interface.

Every implementation handles exactly the same messages with exactly the same code
(`CounterState.handle`), wrapped in whatever its framework needs (an ``async def receive``,
a pykka ``on_receive``), so that the numbers compare message transport, not handlers.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Final, Literal, Protocol

import msgspec

import actors

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = (
    "CAPACITY",
    "REP_TIMEOUT",
    "CheckFailed",
    "Collect",
    "CounterState",
    "Driver",
    "Echo",
    "Inc",
    "Place",
    "Tally",
    "check_echo",
    "check_tally",
    "expected_total",
    "median",
    "new_event_loop",
    "percentile",
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


class Driver(Protocol):
    """One implementation, set up for one workload; a workload runs it several times.

    ``start`` builds the world (loops, threads, actors) for the given placement, ``close``
    tears it down. Between them:

    * ``tell(counts)``: producer ``i`` sends ``Inc(0) .. Inc(counts[i] - 1)`` to the counter,
      then the counter's tally is collected (and reset) with an ask that is ordered after
      every one of those messages. Returns that tally.
    * ``ask_latencies(k)``: ``k`` sequential ``Echo`` asks; returns each round trip in ns.
    """

    async def start(self, place: Place, producers: int) -> None: ...

    async def close(self) -> None: ...

    async def tell(self, counts: Sequence[int]) -> Tally: ...

    async def ask_latencies(self, k: int) -> list[int]: ...


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
