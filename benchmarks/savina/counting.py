"""Counting: a producer sends n numbers to a counter, then asks for the total."""

from __future__ import annotations

from typing import Any

import msgspec

from ..portable import EXIT, Behaviour, Exit, Ref, Start
from .program import Program


class Add(msgspec.Struct, frozen=True):
    n: int


class Get(msgspec.Struct, frozen=True):
    reply_to: Ref


class Total(msgspec.Struct, frozen=True):
    count: int
    total: int


class Producer(Behaviour):
    def __init__(self, n: int) -> None:
        self.n = n
        self.counter: Any = None

    async def receive(self, message: Any) -> None:
        if type(message) is Start:
            self.counter = counter = await self.ctx.spawn(Counter)
            send = counter.send
            for i in range(self.n):
                await send(Add(i))
            await send(Get(self.ctx.self_ref))
        elif type(message) is Total:
            await self.counter.send(EXIT)
            self.ctx.finish((message.count, message.total))
            self.ctx.stop()


class Counter(Behaviour):
    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    async def receive(self, message: Any) -> None:
        if type(message) is Add:
            self.count += 1
            self.total += message.n
        elif type(message) is Get:
            await message.reply_to.send(Total(self.count, self.total))
        elif type(message) is Exit:
            self.ctx.stop()


PROGRAM = Program(
    "counting",
    "Counting: n messages from one producer to one counter",
    Producer,
    size=300_000,
    ops=lambda n: n + 2,
    expected=lambda n: (n, n * (n - 1) // 2),
)
