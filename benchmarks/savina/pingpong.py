"""PingPong: two actors pass a message back and forth n times (2n messages)."""

from __future__ import annotations

from typing import Any

import msgspec

from ..portable import EXIT, Behaviour, Exit, Ref, Start
from .program import Program


class Serve(msgspec.Struct, frozen=True):
    reply_to: Ref


class Return(msgspec.Struct, frozen=True):
    pass


RETURN = Return()


class Pinger(Behaviour):
    def __init__(self, n: int) -> None:
        self.left = n
        self.returned = 0
        self.pong: Any = None

    async def receive(self, message: Any) -> None:
        if type(message) is Return:
            self.returned += 1
            if self.left:
                self.left -= 1
                await self.pong.send(Serve(self.ctx.self_ref))
                return
            await self.pong.send(EXIT)
            self.ctx.finish(self.returned)
            self.ctx.stop()
        elif type(message) is Start:
            self.pong = await self.ctx.spawn(Ponger)
            self.left -= 1
            await self.pong.send(Serve(self.ctx.self_ref))


class Ponger(Behaviour):
    async def receive(self, message: Any) -> None:
        if type(message) is Serve:
            await message.reply_to.send(RETURN)
        elif type(message) is Exit:
            self.ctx.stop()


PROGRAM = Program(
    "pingpong",
    "PingPong: n round trips between two actors",
    Pinger,
    size=100_000,
    ops=lambda n: 2 * n,
    expected=lambda n: n,
)
