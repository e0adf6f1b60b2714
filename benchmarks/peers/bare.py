"""The bare cross-thread round trip: the floor under any cross-loop ask.

No actor, no queue: the asker on loop 1 creates a future, hands ``(message, future)`` to
loop 0 with ``call_soon_threadsafe``, and loop 0 hands the reply back to loop 1 the same
way. Two thread wake-ups, the least a cross-loop request/reply can do.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .queue_actor import LoopThread, probe

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ..common import Echo, Setup

__all__ = ("BareDriver",)


def _resolve(future: asyncio.Future[Any], value: object) -> None:
    if not future.done():
        future.set_result(value)


def _answer(future: asyncio.Future[Any], message: Echo) -> None:
    future.get_loop().call_soon_threadsafe(_resolve, future, message.n)


class BareDriver:
    """Two loop threads (uvloop or asyncio); only ``ask_latencies`` from loop 1 to loop 0."""

    def __init__(self, *, use_uvloop: bool) -> None:
        self._use_uvloop = use_uvloop
        self._loops: list[LoopThread] = []

    async def start(self, setup: Setup) -> None:
        for i in range(2):
            loop = LoopThread(f"bench-bare-{i}", use_uvloop=self._use_uvloop)
            loop.start()
            self._loops.append(loop)

    async def close(self) -> None:
        for loop in self._loops:
            loop.stop()

    async def ask_latencies(self, k: int) -> list[int]:
        target = self._loops[0].loop
        assert target is not None

        def ask(message: object) -> Awaitable[Any]:
            future = asyncio.get_running_loop().create_future()
            target.call_soon_threadsafe(_answer, future, message)
            return future

        return await self._loops[1].run(probe(ask, k))
