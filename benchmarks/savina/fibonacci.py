"""Fibonacci: fib(n) with an actor per call (each spawns two children and sums their replies)."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from ..portable import Behaviour, Start
from .program import Program, log_scaled


class Compute(msgspec.Struct, frozen=True):
    n: int


class Value(msgspec.Struct, frozen=True):
    value: int


class FibMain(Behaviour):
    def __init__(self, n: int) -> None:
        self.n = n

    async def receive(self, message: Any) -> None:
        if type(message) is Value:
            self.ctx.finish(message.value)
            self.ctx.stop()
        elif type(message) is Start:
            root = await self.ctx.spawn(Fib, self.ctx.self_ref)
            await root.send(Compute(self.n))


class Fib(Behaviour):
    def __init__(self, boss: Any) -> None:
        self.boss = boss
        self.pending = 0
        self.sum = 0

    async def receive(self, message: Any) -> None:
        if type(message) is Compute:
            n = message.n
            if n < 2:
                await self.boss.send(Value(n))
                self.ctx.stop()
                return
            self.pending = 2
            me = self.ctx.self_ref
            left = await self.ctx.spawn(Fib, me)
            await left.send(Compute(n - 1))
            right = await self.ctx.spawn(Fib, me)
            await right.send(Compute(n - 2))
        elif type(message) is Value:
            self.sum += message.value
            self.pending -= 1
            if not self.pending:
                await self.boss.send(Value(self.sum))
                self.ctx.stop()


@functools.cache
def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def calls(n: int) -> int:
    """Actors created for fib(n): one per call."""
    return 2 * fib(n + 1) - 1


PROGRAM = Program(
    "fibonacci",
    "Fibonacci: fib(n), one actor per call",
    FibMain,
    size=19,
    ops=calls,
    expected=fib,
    unit="actors/s",
    scale_size=lambda size, scale: log_scaled(size, scale, 1.618),
)
