"""A node that serves the public actor ``account`` (`cluster_support.Account`) until killed or
its standard input closes (for test_cluster_lanes.py's node-death test).

    python tests/cluster/lane_owner.py nats://127.0.0.1:4222 <prefix>
"""

from __future__ import annotations

import contextlib
import sys

import anyio
import anyio.to_thread
from cluster_support import Account

import actors
from actors.cluster import Nats


async def main(url: str, prefix: str) -> None:
    cluster = Nats(url, node="owner", prefix=prefix, heartbeat_interval=0.1, heartbeat_timeout=1.0)
    async with actors.ActorSystem(workers=1, cluster=cluster) as system:
        await system.spawn(Account, name="account", public=True)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until stdin closes


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, sys.argv[1], sys.argv[2])
    sys.exit(0)
