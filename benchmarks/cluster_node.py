"""The serving node of ``python -m benchmarks.cluster``: a public counter in its own process.

Run by the benchmark (not by hand) as::

    python -m benchmarks.cluster_node nats://127.0.0.1:4222 bench-server [--uvloop]

It spawns the suite's counting actor (`benchmarks.subject.Counter`, the same handler as in
every other case) as the public actor ``bench-counter`` on worker 0, prints ``ready``, and
leaves the cluster when its standard input closes.
"""

from __future__ import annotations

import sys

import anyio
import anyio.to_thread

import actors
from actors.cluster import Nats

from .common import CAPACITY
from .subject import Counter

NAME = "bench-counter"
"""The public name of the counter."""


async def serve(url: str, node: str, use_uvloop: bool) -> None:
    cluster = Nats(url, node=node, prefix="bench")
    async with actors.ActorSystem(
        workers=1, use_uvloop=use_uvloop, name="bench-server", cluster=cluster
    ) as system:
        await system.spawn(Counter, name=NAME, public=True, placement=0, capacity=CAPACITY)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the benchmark closes stdin


if __name__ == "__main__":
    actors.run(serve, sys.argv[1], sys.argv[2], "--uvloop" in sys.argv[3:])
