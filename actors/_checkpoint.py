"""A cheap checkpoint: yield to the event loop once, whichever loop this is.

`anyio.lowlevel.checkpoint` first asks sniffio which library runs (about 2.4 µs a call
here, three times an asyncio ``sleep(0)``). Sends and publishes yield every
`COOPERATIVE_BUDGET`-th call, so the hot path asks for the running asyncio loop directly
(`running_loop`) and leaves the sniffing to anyio only on other hosts (trio).
On asyncio, anyio's own checkpoint is exactly ``asyncio.sleep(0)``: cancel scopes see
the same thing.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

import anyio.lowlevel

from ._oneshot import running_loop

if TYPE_CHECKING:
    from collections.abc import Generator

__all__ = ("checkpoint", "yield_now")


@types.coroutine
def yield_now() -> Generator[None]:
    """Let the asyncio loop run its other callbacks once: ``asyncio.sleep(0)`` minus a call.

    A bare yield is how ``asyncio.sleep(0)`` hands control back (the task is rescheduled
    at once); the run tasks' hot loop yields this way at every linger and fairness turn.
    Asyncio tasks only (actors' run tasks always are).
    """
    yield


async def checkpoint() -> None:
    """Yield to the event loop once (a cancellation point on asyncio and trio alike)."""
    if running_loop() is not None:
        await yield_now()
    else:
        await anyio.lowlevel.checkpoint()
