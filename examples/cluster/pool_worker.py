"""A pool node: serves the public name ``resize`` with a local pool, until stdin closes.

Run a NATS server first (``nats-server -a 127.0.0.1 -p 4222``), then start it on as many
nodes as you like; they share the load, message by message (a NATS queue group)::

    python examples/cluster/pool_worker.py nats://127.0.0.1:4222 resizer-1
    python examples/cluster/pool_worker.py nats://127.0.0.1:4222 resizer-2

It prints ``ready`` once the pool is reachable from every node, and, when its standard
input closes (or on Ctrl-C), leaves the cluster and prints how many images it resized.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import anyio
import anyio.to_thread

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `protocol` next to this file

import actors
from actors.cluster import Nats, serve_pool

from protocol import Resize  # isort: skip


# --8<-- [start:pool]
class Resizer(actors.Actor[Resize]):
    def __init__(self, node: str, done: list[int]) -> None:
        self.node = node
        self.done = done  # shared by the node's workers (list.append is atomic)

    async def receive(self, message: Resize) -> str:
        self.done.append(message.image)
        return f"{self.node}: image {message.image} at {message.width} px"


async def main(url: str, node: str) -> None:
    done: list[int] = []
    cluster = Nats(url, node=node, heartbeat_interval=0.2, heartbeat_timeout=1.0)
    async with actors.ActorSystem(workers=2, cluster=cluster) as system:
        pool = await system.spawn_pool(lambda: Resizer(node, done), size=2)
        await serve_pool(system, pool, name="resize")  # joins the queue group "resize"
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until stdin closes
    print(f"resized {len(done)} images", flush=True)


# --8<-- [end:pool]


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"
    node = sys.argv[2] if len(sys.argv) > 2 else "resizer-1"
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, url, node)
