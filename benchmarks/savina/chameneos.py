"""Chameneos: 10 creatures meet pairwise in a mall n times, changing colour at each meeting."""

from __future__ import annotations

from typing import Any

import msgspec

from ..portable import Behaviour, Ref, Start
from .program import Program

CREATURES = 10


def complement(a: int, b: int) -> int:
    """The colour two creatures of colours a and b take after meeting (three colours)."""
    return a if a == b else 3 - a - b


class MeetMe(msgspec.Struct, frozen=True):
    creature: Ref
    colour: int


class Meet(msgspec.Struct, frozen=True):
    partner: Ref
    colour: int


class Change(msgspec.Struct, frozen=True):
    colour: int


class Go(msgspec.Struct, frozen=True):
    pass


class Fade(msgspec.Struct, frozen=True):
    pass


class Faded(msgspec.Struct, frozen=True):
    meetings: int


GO, FADE = Go(), Fade()


class Mall(Behaviour):
    def __init__(self, n: int) -> None:
        self.left = n
        self.waiting: MeetMe | None = None
        self.faded = 0
        self.meetings = 0

    async def receive(self, message: Any) -> None:
        if type(message) is MeetMe:
            if not self.left:
                await message.creature.send(FADE)
            elif self.waiting is None:
                self.waiting = message
            else:
                self.left -= 1
                first, self.waiting = self.waiting, None
                await message.creature.send(Meet(first.creature, first.colour))
        elif type(message) is Faded:
            self.faded += 1
            self.meetings += message.meetings
            if self.faded == CREATURES:
                self.ctx.finish(self.meetings)
                self.ctx.stop()
        elif type(message) is Start:
            me = self.ctx.self_ref
            for i in range(CREATURES):
                creature = await self.ctx.spawn(Creature, me, i % 3)
                await creature.send(GO)


class Creature(Behaviour):
    def __init__(self, mall: Any, colour: int) -> None:
        self.mall = mall
        self.colour = colour
        self.meetings = 0

    async def receive(self, message: Any) -> None:
        if type(message) is Meet:
            self.colour = complement(self.colour, message.colour)
            self.meetings += 1
            await message.partner.send(Change(self.colour))
            await self.mall.send(MeetMe(self.ctx.self_ref, self.colour))
        elif type(message) is Change:
            self.colour = message.colour
            self.meetings += 1
            await self.mall.send(MeetMe(self.ctx.self_ref, self.colour))
        elif type(message) is Go:
            await self.mall.send(MeetMe(self.ctx.self_ref, self.colour))
        elif type(message) is Fade:
            await self.mall.send(Faded(self.meetings))
            self.ctx.stop()


PROGRAM = Program(
    "chameneos",
    f"Chameneos: n meetings of {CREATURES} creatures in a mall",
    Mall,
    size=60_000,
    ops=lambda n: 4 * n + 4 * CREATURES,
    expected=lambda n: 2 * n,
)
