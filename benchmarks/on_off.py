"""The harness of the feature-cost benchmarks (`metrics_cost`, `tracing_cost`): a counter
and a producer on one loop, and the rate of tells or asks between them in a system built
with the options under test.

Both benchmarks run the same workload with a feature off and on, interleaved, and compare
medians; keeping the workload here keeps the two comparable with each other.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

import actors


class Inc(msgspec.Struct, frozen=True):
    pass


class Done(actors.Request[int], frozen=True):
    pass


class Go(actors.Request[None], frozen=True):
    target: actors.ActorRef[Inc | Done]
    count: int
    ask: bool


class Counter(actors.Actor[Inc | Done]):
    def __init__(self) -> None:
        self.seen = 0

    async def receive(self, message: Inc | Done) -> int | None:
        if isinstance(message, Inc):
            self.seen += 1
            return None
        return self.seen


class Producer(actors.Actor[Go]):
    """Tells ``count`` Inc (then asks Done, so that all were handled), or asks ``count`` Done."""

    async def receive(self, message: Go) -> None:
        target = message.target
        if message.ask:
            done = Done()
            for _ in range(message.count):
                await target.ask(done)
            return
        send = target.send
        inc = Inc()
        for _ in range(message.count):
            await send(inc)
        await target.ask(Done())


async def same_loop_rate(
    count: int, *, ask: bool = False, warm_up: int = 2_000, **options: Any
) -> float:
    """Tells (or asks) per second from a producer to a counter on the same worker loop, in
    ``ActorSystem(workers=1, **options)``, after ``warm_up`` of them."""
    async with actors.ActorSystem(workers=1, **options) as system:
        counter = await system.spawn(Counter, placement=0)
        producer = await system.spawn(Producer, placement=0)
        await producer.ask(Go(counter, warm_up, ask))
        started = time.perf_counter()
        await producer.ask(Go(counter, count, ask), timeout=300)
        return count / (time.perf_counter() - started)
