"""Fork-join creation: n actors created, each sent one message, each replying and stopping."""

from __future__ import annotations

from typing import Any

import msgspec

from ..portable import Behaviour, Start
from .program import Program


class Job(msgspec.Struct, frozen=True):
    x: int


class Result(msgspec.Struct, frozen=True):
    x: int


class Forker(Behaviour):
    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.total = 0

    async def receive(self, message: Any) -> None:
        if type(message) is Result:
            self.count += 1
            self.total += message.x
            if self.count == self.n:
                self.ctx.finish(self.total)
                self.ctx.stop()
        elif type(message) is Start:
            me = self.ctx.self_ref
            for i in range(self.n):
                child = await self.ctx.spawn(Child, me)
                await child.send(Job(i))


class Child(Behaviour):
    def __init__(self, boss: Any) -> None:
        self.boss = boss

    async def receive(self, message: Any) -> None:
        await self.boss.send(Result(message.x))
        self.ctx.stop()


PROGRAM = Program(
    "fj-creation",
    "Fork-join creation: n actors, one message each",
    Forker,
    size=20_000,
    ops=lambda n: n,
    expected=lambda n: n * (n - 1) // 2,
    unit="actors/s",
)
