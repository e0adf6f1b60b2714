"""Big: 100 actors each ping random others n times; every ping is answered with a pong."""

from __future__ import annotations

import random
from typing import Any

import msgspec

from ..portable import EXIT, Behaviour, Ref, Start
from .program import Program

ACTORS = 100


class Neighbours(msgspec.Struct, frozen=True):
    refs: tuple[Ref, ...]


class Ping(msgspec.Struct, frozen=True):
    sender: Ref


class Pong(msgspec.Struct, frozen=True):
    pass


class Go(msgspec.Struct, frozen=True):
    pass


class Finished(msgspec.Struct, frozen=True):
    pass


class Report(msgspec.Struct, frozen=True):
    reply_to: Ref


class Pinged(msgspec.Struct, frozen=True):
    count: int


PONG, GO, FINISHED = Pong(), Go(), Finished()


class BigMain(Behaviour):
    def __init__(self, n: int) -> None:
        self.n = n
        self.workers: list[Any] = []
        self.finished = 0
        self.reported = 0
        self.pinged = 0

    async def receive(self, message: Any) -> None:
        if type(message) is Finished:
            self.finished += 1
            if self.finished == ACTORS:  # every ping was answered, so every ping was handled
                me = self.ctx.self_ref
                for worker in self.workers:
                    await worker.send(Report(me))
        elif type(message) is Pinged:
            self.pinged += message.count
            self.reported += 1
            if self.reported == ACTORS:
                for worker in self.workers:
                    await worker.send(EXIT)
                self.ctx.finish(self.pinged)
                self.ctx.stop()
        elif type(message) is Start:
            me = self.ctx.self_ref
            self.workers = [await self.ctx.spawn(Worker, i, self.n, me) for i in range(ACTORS)]
            everyone = Neighbours(tuple(self.workers))
            for worker in self.workers:
                await worker.send(everyone)
            for worker in self.workers:
                await worker.send(GO)


class Worker(Behaviour):
    def __init__(self, index: int, n: int, main: Any) -> None:
        self.index = index
        self.left = n
        self.main = main
        self.pinged = 0
        self.others: tuple[Any, ...] = ()
        self.random = random.Random(index)

    async def _ping(self) -> None:
        j = self.random.randrange(ACTORS - 1)
        await self.others[j + (j >= self.index)].send(Ping(self.ctx.self_ref))

    async def receive(self, message: Any) -> None:
        if type(message) is Ping:
            self.pinged += 1
            await message.sender.send(PONG)
        elif type(message) is Pong:
            self.left -= 1
            if self.left:
                await self._ping()
            else:
                await self.main.send(FINISHED)
        elif type(message) is Neighbours:
            self.others = message.refs
        elif type(message) is Go:
            await self._ping()
        elif type(message) is Report:
            await message.reply_to.send(Pinged(self.pinged))
        else:
            self.ctx.stop()


PROGRAM = Program(
    "big",
    f"Big: {ACTORS} actors, n pings each to random others, each answered",
    BigMain,
    size=1_000,
    ops=lambda n: 2 * ACTORS * n + 5 * ACTORS,
    expected=lambda n: ACTORS * n,
    minimum=2,
)
