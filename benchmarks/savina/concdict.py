"""Concurrent dictionary: 20 workers run n operations in all (10% writes) on one dictionary.

Each worker waits for the reply to one operation before it sends the next, and checks every
read against its own record of what it wrote (its keys are its own).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..portable import EXIT, Behaviour, Ref, Start
from .program import Program

WORKERS = 20
KEYS = 64  # distinct keys per worker


class Write(msgspec.Struct, frozen=True):
    key: int
    value: int
    reply_to: Ref


class Read(msgspec.Struct, frozen=True):
    key: int
    reply_to: Ref


class Written(msgspec.Struct, frozen=True):
    pass


class Value(msgspec.Struct, frozen=True):
    value: int | None


class Go(msgspec.Struct, frozen=True):
    pass


class Done(msgspec.Struct, frozen=True):
    operations: int
    wrong: int


class Size(msgspec.Struct, frozen=True):
    reply_to: Ref


class Sized(msgspec.Struct, frozen=True):
    size: int


WRITTEN, GO = Written(), Go()


class DictMain(Behaviour):
    def __init__(self, n: int) -> None:
        self.n = n
        self.done = 0
        self.operations = 0
        self.wrong = 0
        self.dictionary: Any = None

    async def receive(self, message: Any) -> None:
        if type(message) is Done:
            self.done += 1
            self.operations += message.operations
            self.wrong += message.wrong
            if self.done == WORKERS:
                await self.dictionary.send(Size(self.ctx.self_ref))
        elif type(message) is Sized:
            await self.dictionary.send(EXIT)
            self.ctx.finish((self.operations, self.wrong, message.size))
            self.ctx.stop()
        elif type(message) is Start:
            me = self.ctx.self_ref
            self.dictionary = await self.ctx.spawn(Dictionary)
            for w in range(WORKERS):
                share = self.n // WORKERS + (w < self.n % WORKERS)
                worker = await self.ctx.spawn(Worker, w, share, self.dictionary, me)
                await worker.send(GO)


class Dictionary(Behaviour):
    def __init__(self) -> None:
        self.data: dict[int, int] = {}

    async def receive(self, message: Any) -> None:
        if type(message) is Read:
            await message.reply_to.send(Value(self.data.get(message.key)))
        elif type(message) is Write:
            self.data[message.key] = message.value
            await message.reply_to.send(WRITTEN)
        elif type(message) is Size:
            await message.reply_to.send(Sized(len(self.data)))
        else:
            self.ctx.stop()


class Worker(Behaviour):
    def __init__(self, index: int, n: int, dictionary: Any, main: Any) -> None:
        self.base = index * 1_000_000
        self.n = n
        self.i = 0
        self.dictionary = dictionary
        self.main = main
        self.mine: dict[int, int] = {}
        self.expect: int | None = None
        self.wrong = 0

    async def _next(self) -> None:
        i = self.i
        if i == self.n:
            await self.main.send(Done(i, self.wrong))
            self.ctx.stop()
            return
        self.i = i + 1
        if i % 10 == 0:
            key = self.base + (i // 10) % KEYS
            self.mine[key] = i
            await self.dictionary.send(Write(key, i, self.ctx.self_ref))
        else:
            key = self.base + i % KEYS
            self.expect = self.mine.get(key)
            await self.dictionary.send(Read(key, self.ctx.self_ref))

    async def receive(self, message: Any) -> None:
        if type(message) is Value and message.value != self.expect:
            self.wrong += 1
        await self._next()


def _writes(share: int) -> int:
    return (share + 9) // 10


def expected(n: int) -> tuple[int, int, int]:
    size = sum(min(KEYS, _writes(n // WORKERS + (w < n % WORKERS))) for w in range(WORKERS))
    return (n, 0, size)


PROGRAM = Program(
    "concdict",
    f"Concurrent dictionary: {WORKERS} workers, n operations (10% writes), one dictionary",
    DictMain,
    size=150_000,
    ops=lambda n: 2 * n + 3 * WORKERS,
    expected=expected,
    minimum=WORKERS,
)
