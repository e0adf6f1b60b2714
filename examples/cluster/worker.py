"""A worker node: serves the public actor ``account-7`` until its standard input closes.

Run a NATS server first (``nats-server -a 127.0.0.1 -p 4222``), then::

    python examples/cluster/worker.py nats://127.0.0.1:4222 worker-1

It prints ``ready`` once the account is reachable from every node, and leaves the cluster
(gracefully) when its standard input closes or on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import anyio
import anyio.to_thread

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `protocol` next to this file

import actors
from actors.cluster import Nats

from protocol import AccountMsg, Balance, Deposit, Withdraw  # isort: skip


# --8<-- [start:worker]
class Account(actors.Actor[AccountMsg]):
    def __init__(self) -> None:
        self.balance = 0

    async def receive(self, message: AccountMsg) -> int | None:
        match message:
            case Deposit(amount):
                self.balance += amount
            case Withdraw(amount):
                if amount > self.balance:
                    raise ValueError(f"cannot withdraw {amount}, the balance is {self.balance}")
                self.balance -= amount
                return self.balance
            case Balance():
                return self.balance
        return None


async def main(url: str, node: str, heartbeat: float) -> None:
    cluster = Nats(url, node=node, heartbeat_interval=heartbeat, heartbeat_timeout=5 * heartbeat)
    async with actors.ActorSystem(workers=1, cluster=cluster) as system:
        await system.spawn(Account, name="account-7", public=True)
        print("ready", flush=True)  # reachable from every node from here on
        await anyio.to_thread.run_sync(sys.stdin.read)  # until stdin closes


# --8<-- [end:worker]


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"
    node = sys.argv[2] if len(sys.argv) > 2 else "worker-1"
    heartbeat = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, url, node, heartbeat)
