"""A front-end node: finds ``account-7`` on whichever node serves it and uses it.

Start ``worker.py`` first (see there), then::

    python examples/cluster/frontend.py nats://127.0.0.1:4222
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `protocol` next to this file

import actors
from actors.cluster import Nats, RemoteRef

from protocol import AccountMsg, Balance, Deposit, Withdraw  # isort: skip


# --8<-- [start:frontend]
async def main(url: str) -> None:
    async with actors.ActorSystem(workers=1, cluster=Nats(url, node="frontend")) as system:
        account = await system.lookup_remote("account-7", AccountMsg, timeout=5.0)
        assert isinstance(account, RemoteRef)
        print(f"found {account.path} on {account.node}")
        await account.send(Deposit(100))  # acknowledged once in the remote mailbox
        print("balance:", await account.ask(Balance(), timeout=2.0))
        print("after withdrawing 30:", await account.ask(Withdraw(30)))
        try:
            await account.ask(Withdraw(1000))
        except ValueError as error:  # a builtin exception arrives as itself
            print("refused:", str(error).split(" (raised by")[0])
        try:
            await system.lookup_remote("account-8", AccountMsg, timeout=0.2)
        except actors.ActorNotFound:
            print("account-8: not found")


# --8<-- [end:frontend]


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222")
