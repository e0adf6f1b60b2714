"""Metrics: per-actor counters kept on the hot path, per-loop gauges, and the snapshot.

The counters are the role atomics play in Rust, without a lock per message: each has a
single writer, the actor's own run task, and the message count is updated once per burst
(derived from the fairness budget), so an ordinary message pays nothing for it. (Counting
``received`` in the producers, under the mailbox lock they take anyway, was measured at 4%
of same-loop tell throughput.) ``received`` is derived instead: mailbox items taken, plus
those waiting, plus those evicted. A snapshot reads the counters from another thread
without a lock, so while an actor is busy its numbers may lag by up to one burst
(``throughput`` messages); they never go backwards, and they are exact once it is idle.

Handler latency histograms need two clock reads per message; they are off unless
``ActorSystem(handler_timing=True)`` (docs/benchmarks.md has the measured cost).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import msgspec

from ._placement import PlacementStatistics
from ._runtime import thread_cpu_seconds
from ._statem import current_state

if TYPE_CHECKING:
    from ._cell import Cell
    from ._runtime import Home

__all__ = ("ActorMetrics", "HandlerTimes", "LoopMetrics", "SystemMetrics", "collect")

# Histogram buckets: upper bounds in seconds, powers of 4 from 1 µs to ~4.4 min.
BUCKETS: Final[tuple[float, ...]] = tuple(1e-6 * 4**k for k in range(15))


class HandlerTimes:
    """A latency histogram of one actor's handlers; written by its run task only."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last bucket: above the largest bound
        self.total = 0.0

    def record(self, seconds: float) -> None:
        self.total += seconds
        micros = int(seconds * 1e6)
        # Bucket k holds durations up to 4**k µs: two bits of the integer per bucket.
        index = (micros.bit_length() + 1) // 2 if micros > 0 else 0
        self.counts[min(index, len(BUCKETS))] += 1


class ActorMetrics(msgspec.Struct, frozen=True):
    """One actor's numbers in a `SystemMetrics` snapshot.

    Attributes:
        path: the actor's path.
        status: starting, running, restarting, stopping, stopped or failed.
        loop: the worker index it lives on, or "host".
        received: messages its mailbox accepted (tells and asks).
        processed: mailbox messages handled without an exception (timer ticks are
            control signals, not counted), updated once per burst.
        failed: handler failures.
        restarts: times it was restarted.
        mailbox_depth: messages waiting now.
        mailbox_high_water: the largest depth seen.
        mailbox_capacity: the mailbox's bound.
        handler_seconds: wall time its run task spent handling messages (awaits inside
            handlers included).
        handler_histogram: with ``handler_timing=True``: ``(upper bound in seconds, count)``
            per bucket, the last bound being infinity; else empty.
        stashed: messages set aside with `Actor.stash` now.
        stash_overflows: stashes refused with `StashFull` (its stash was at capacity).
        state: for a `StateMachine`, its current state's class name (a bounded label);
            "" for other actors and before the machine started.
        asks_expired: asks skipped unhandled because their asker's timeout had run out
            while they were queued (not counted as processed).
        asks_cancelled: asks skipped unhandled because their asker was cancelled while
            they were queued (not counted as processed).
        handlers_cancelled: handlers cancelled midway because their asker gave up (only
            for a class with `Actor.cancel_abandoned`; not counted as processed).

    Example:
        ```python
        busiest = max(system.metrics().actors, key=lambda a: a.handler_seconds)
        ```
    """

    path: str
    status: str
    loop: str
    received: int
    processed: int
    failed: int
    restarts: int
    mailbox_depth: int
    mailbox_high_water: int
    mailbox_capacity: int
    handler_seconds: float
    handler_histogram: tuple[tuple[float, int], ...] = ()
    stashed: int = 0
    stash_overflows: int = 0
    asks_expired: int = 0
    asks_cancelled: int = 0
    handlers_cancelled: int = 0
    state: str = ""


class LoopMetrics(msgspec.Struct, frozen=True):
    """One worker loop's numbers in a `SystemMetrics` snapshot.

    Attributes:
        loop: the worker index, or "host".
        actors: actors living on it.
        busy_seconds: CPU time its thread has used (None where the OS cannot tell).
        lag_seconds: how long the watchdog's last probe waited to run on it (scheduling
            lag); 0.0 while the loop is idle (idle loops are not probed), None before the
            watchdog first looked or with the watchdog off.
        max_lag_seconds: the largest lag seen.

    Example:
        ```python
        for loop in system.metrics().loops:
            print(loop.loop, loop.actors, loop.lag_seconds)
        ```
    """

    loop: str
    actors: int
    busy_seconds: float | None
    lag_seconds: float | None
    max_lag_seconds: float


class SystemMetrics(msgspec.Struct, frozen=True):
    """A snapshot from `ActorSystem.metrics`: immutable, JSON-encodable with msgspec.

    Attributes:
        actors: one record per live actor (the root guardian excluded), in path order.
        loops: one record per worker loop (and the host loop, if actors live there).
        dead_letters: dead letters so far.
        placement: actors moved between loops to follow their traffic, and moves refused.

    Example:
        ```python
        snapshot = system.metrics()
        print(msgspec.json.encode(snapshot).decode())
        ```
    """

    actors: tuple[ActorMetrics, ...]
    loops: tuple[LoopMetrics, ...]
    dead_letters: int
    placement: PlacementStatistics = PlacementStatistics()


def actor_metrics(cell: Cell) -> ActorMetrics:
    # Read the consumer's count before the depth: an item popped in between is then missed
    # (counted later), never counted twice. The floor keeps the counter monotonic.
    dequeued = cell.dequeued
    box = cell.mailbox.statistics()
    received = max(cell.received_seen, dequeued + box.depth + cell.mailbox.evicted)
    cell.received_seen = received
    times = cell.times
    behaviour = cell.behaviour
    flow = cell.flow
    histogram: tuple[tuple[float, int], ...] = ()
    if times is not None:
        bounds = (*BUCKETS, float("inf"))
        histogram = tuple(zip(bounds, list(times.counts), strict=True))
    return ActorMetrics(
        path=cell.path,
        status=cell.status,
        loop=cell.home.label,
        received=received,
        processed=cell.processed(dequeued),
        failed=cell.failed,
        restarts=cell.incarnation,
        mailbox_depth=box.depth,
        mailbox_high_water=box.high_water,
        mailbox_capacity=box.capacity,
        handler_seconds=cell.handler_seconds,
        handler_histogram=histogram,
        # Racy reads of the home thread's counters, as the others: a snapshot, not a lock.
        stashed=len(behaviour.stash) if behaviour is not None else 0,
        stash_overflows=behaviour.overflows if behaviour is not None else 0,
        asks_expired=flow.expired if flow is not None else 0,
        asks_cancelled=flow.cancelled if flow is not None else 0,
        handlers_cancelled=flow.handlers_cancelled if flow is not None else 0,
        state=current_state(cell.instance),
    )


def loop_metrics(home: Home, actors: int) -> LoopMetrics:
    return LoopMetrics(
        loop=home.label,
        actors=actors,
        busy_seconds=thread_cpu_seconds(home.thread_id),
        lag_seconds=home.lag,
        max_lag_seconds=home.max_lag,
    )


def collect(
    cells: list[Cell],
    homes: list[Home],
    dead_letters: int,
    placement: PlacementStatistics | None = None,
) -> SystemMetrics:
    """The snapshot of ``cells`` (the guardian excluded by the caller) and ``homes``."""
    per_home = {id(home): 0 for home in homes}
    for cell in cells:
        per_home[id(cell.home)] = per_home.get(id(cell.home), 0) + 1
    return SystemMetrics(
        actors=tuple(actor_metrics(cell) for cell in sorted(cells, key=lambda c: c.path)),
        loops=tuple(loop_metrics(home, per_home[id(home)]) for home in homes),
        dead_letters=dead_letters,
        placement=placement if placement is not None else PlacementStatistics(),
    )
