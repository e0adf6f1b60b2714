"""A node that serves the public actor ``owner``, an endless stream of numbers, until killed
or its standard input closes (for test_cluster_stream.py's node-death test).

    python tests/cluster/stream_owner.py nats://127.0.0.1:4222 <prefix>
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

import actors
from actors.cluster import Nats, register_message

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@register_message(name="stream.Numbers")
class Numbers(actors.StreamRequest[int], frozen=True):
    count: int = -1
    fail_at: int = -1
    size: int = 0


class Owner(actors.Actor[Numbers]):
    async def receive(self, message: Numbers) -> AsyncIterator[int]:
        return self.numbers()

    async def numbers(self) -> AsyncIterator[int]:
        i = 0
        while True:
            yield i
            i += 1


async def main(url: str, prefix: str) -> None:
    cluster = Nats(url, node="owner", prefix=prefix, heartbeat_interval=0.1, heartbeat_timeout=1.0)
    async with actors.ActorSystem(workers=1, cluster=cluster) as system:
        await system.spawn(Owner, name="owner", public=True)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
