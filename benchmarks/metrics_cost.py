"""The cost of metrics: same-loop tell with handler timing off and on, interleaved.

Run: python -m benchmarks.metrics_cost [--reps N] [--messages N]

Counters are always on (maintained per burst, see actors/_metrics.py); this measures what
``ActorSystem(handler_timing=True)`` adds (two clock reads and a histogram update per
message). Run it on two checkouts to price the counters themselves.
"""

from __future__ import annotations

import argparse
import statistics
import time

import msgspec

import actors


class Inc(msgspec.Struct, frozen=True):
    pass


class Done(actors.Request[int], frozen=True):
    pass


class Go(actors.Request[None], frozen=True):
    target: actors.ActorRef[Inc | Done]
    count: int


class Counter(actors.Actor[Inc | Done]):
    def __init__(self) -> None:
        self.seen = 0

    async def receive(self, message: Inc | Done) -> int | None:
        if isinstance(message, Inc):
            self.seen += 1
            return None
        return self.seen


class Producer(actors.Actor[Go]):
    async def receive(self, message: Go) -> None:
        send = message.target.send
        inc = Inc()
        for _ in range(message.count):
            await send(inc)
        await message.target.ask(Done())


async def rate(timing: bool, messages: int) -> float:
    async with actors.ActorSystem(workers=1, handler_timing=timing) as system:
        counter = await system.spawn(Counter, placement=0)
        producer = await system.spawn(Producer, placement=0)
        await producer.ask(Go(counter, 10_000))  # warm up
        started = time.perf_counter()
        await producer.ask(Go(counter, messages), timeout=120)
        return messages / (time.perf_counter() - started)


async def main(reps: int, messages: int) -> None:
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(reps):
        for timing in (False, True):
            results[timing].append(await rate(timing, messages))
    off, on = (statistics.median(results[t]) for t in (False, True))
    print(
        f"same-loop tell, median of {reps}: timing off {off / 1e6:.2f} M msgs/s, "
        f"on {on / 1e6:.2f} M msgs/s, on/off = {on / off:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--messages", type=int, default=300_000)
    opts = parser.parse_args()
    actors.run(main, opts.reps, opts.messages)
