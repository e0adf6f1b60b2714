"""A cheap checkpoint: yield to the event loop once, whichever loop this is.

`anyio.lowlevel.checkpoint` first asks sniffio which library runs (about 2.4 µs a call
here, three times an asyncio ``sleep(0)``). Sends and publishes yield every
`COOPERATIVE_BUDGET`-th call, so the hot path asks asyncio directly (its running-loop
lookup is a C call) and leaves the sniffing to anyio only on other hosts (trio).
On asyncio, anyio's own checkpoint is exactly ``asyncio.sleep(0)``: cancel scopes see
the same thing.
"""

from __future__ import annotations

import asyncio

import anyio.lowlevel

__all__ = ("checkpoint",)

_running_loop = asyncio._get_running_loop  # pyright: ignore[reportPrivateUsage]


async def checkpoint() -> None:
    """Yield to the event loop once (a cancellation point on asyncio and trio alike)."""
    if _running_loop() is not None:
        await asyncio.sleep(0)
    else:
        await anyio.lowlevel.checkpoint()
