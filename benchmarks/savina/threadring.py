"""ThreadRing: a token passed n times around a ring of 100 actors."""

from __future__ import annotations

from typing import Any

import msgspec

from ..portable import EXIT, Behaviour, Exit, Ref, Start
from .program import Program

RING = 100


class Link(msgspec.Struct, frozen=True):
    next: Ref


class Token(msgspec.Struct, frozen=True):
    hops: int


class Landed(msgspec.Struct, frozen=True):
    node: int


class Ring(Behaviour):
    def __init__(self, n: int) -> None:
        self.n = n
        self.nodes: list[Any] = []

    async def receive(self, message: Any) -> None:
        if type(message) is Start:
            me = self.ctx.self_ref
            self.nodes = [await self.ctx.spawn(Node, i, me) for i in range(RING)]
            for i, node in enumerate(self.nodes):
                await node.send(Link(self.nodes[(i + 1) % RING]))
            await self.nodes[0].send(Token(self.n))
        elif type(message) is Landed:
            for node in self.nodes:
                await node.send(EXIT)
            self.ctx.finish(message.node)
            self.ctx.stop()


class Node(Behaviour):
    def __init__(self, index: int, ring: Any) -> None:
        self.index = index
        self.ring = ring
        self.next: Any = None

    async def receive(self, message: Any) -> None:
        if type(message) is Token:
            if message.hops:
                await self.next.send(Token(message.hops - 1))
            else:
                await self.ring.send(Landed(self.index))
        elif type(message) is Link:
            self.next = message.next
        elif type(message) is Exit:
            self.ctx.stop()


PROGRAM = Program(
    "threadring",
    f"ThreadRing: a token passed n times around {RING} actors",
    Ring,
    size=200_000,
    ops=lambda n: n + 1,
    expected=lambda n: n % RING,
    minimum=RING,
)
