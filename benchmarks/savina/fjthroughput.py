"""Fork-join throughput: n messages spread over 60 workers, each doing a little work."""

from __future__ import annotations

import math
from typing import Any

import msgspec

from ..portable import Behaviour, Ref, Start
from .program import Program

WORKERS = 60


class Work(msgspec.Struct, frozen=True):
    x: int


class Report(msgspec.Struct, frozen=True):
    reply_to: Ref


class Handled(msgspec.Struct, frozen=True):
    count: int


class Fork(Behaviour):
    def __init__(self, n: int) -> None:
        self.n = n
        self.reported = 0
        self.handled = 0

    async def receive(self, message: Any) -> None:
        if type(message) is Handled:
            self.handled += message.count
            self.reported += 1
            if self.reported == WORKERS:
                self.ctx.finish(self.handled)
                self.ctx.stop()
        elif type(message) is Start:
            me = self.ctx.self_ref
            workers = [await self.ctx.spawn(Worker) for _ in range(WORKERS)]
            sends = [w.send for w in workers]
            for i in range(self.n):
                await sends[i % WORKERS](Work(i))
            for worker in workers:
                await worker.send(Report(me))


class Worker(Behaviour):
    def __init__(self) -> None:
        self.count = 0
        self.acc = 0.0

    async def receive(self, message: Any) -> None:
        if type(message) is Work:
            self.count += 1
            self.acc += math.sin(message.x)  # Savina's "performComputation", kept tiny
        elif type(message) is Report:
            await message.reply_to.send(Handled(self.count))
            self.ctx.stop()


PROGRAM = Program(
    "fj-throughput",
    f"Fork-join throughput: n messages over {WORKERS} workers",
    Fork,
    size=300_000,
    ops=lambda n: n + 2 * WORKERS,
    expected=lambda n: n,
    minimum=WORKERS,
)
