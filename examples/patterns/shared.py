"""Shared read-mostly state: a configuration that every gateway reads on every request and
an operator replaces now and then (docs/patterns/shared.md).

    python3 dev.py run examples/patterns/shared.py

The output is the same on every run: every line is ordered by an ``ask`` or a join.
"""

from __future__ import annotations

import threading
from typing import Any

import msgspec

import actors


# --8<-- [start:config]
class Config(msgspec.Struct, frozen=True):
    limit: int  # requests each client may make
    banned: frozenset[str] = frozenset()


config = actors.Shared(Config(limit=10))  # a frozen Struct: sendable, so accepted
# --8<-- [end:config]


# --8<-- [start:gateway]
class Handle(actors.Request[bool], frozen=True):
    client: str
    n: int  # the client's n-th request


class Gateway(actors.Actor[Handle]):
    def __init__(self, config: actors.Shared[Config]) -> None:
        self.config = config  # the same Shared for every gateway, on every loop

    async def receive(self, message: Handle) -> bool:
        current = self.config.get()  # no lock, no ask: one consistent snapshot
        return message.client not in current.banned and message.n < current.limit


# --8<-- [end:gateway]


async def serve(gateways: list[actors.ActorRef[Handle]], requests: int) -> str:
    allowed = 0
    for n in range(requests):
        gateway = gateways[n % len(gateways)]
        allowed += await gateway.ask(Handle("ada", n))
    return f"gateways let {allowed} requests through, refused {requests - allowed}"


def as_dict(current: Config) -> Any:
    return msgspec.structs.asdict(current)  # a dict: mutable


async def main() -> None:
    print(f"limit {config.get().limit}, version {config.version}")
    try:
        actors.Shared(["a", "list"])
    except TypeError as error:
        print(f"a mutable value is refused: {type(error).__name__}")

    async with actors.ActorSystem(workers=2) as system:
        gateways = [await system.spawn(lambda: Gateway(config)) for _ in range(3)]
        print(await serve(gateways, 15))

        # --8<-- [start:update]
        before = config.get()
        config.update(lambda current: msgspec.structs.replace(current, limit=20))
        print(
            f"limit {config.get().limit}, version {config.version}; "
            f"the old snapshot still says {before.limit}"
        )
        # --8<-- [end:update]
        print(await serve(gateways, 20))

        # --8<-- [start:refused]
        try:
            config.update(as_dict)  # returns a dict
        except TypeError:  # NotSendableError: the old value is kept
            current = config.get()
            print(
                f"a mutable update is refused, the value kept: "
                f"limit {current.limit}, version {config.version}"
            )
        # --8<-- [end:refused]

    # --8<-- [start:threads]
    counter = actors.Shared(0)

    def bump() -> None:
        for _ in range(1000):
            counter.update(lambda n: n + 1)  # writers take turns: no update is lost

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"4 threads x 1000 increments: counter {counter.get()}, version {counter.version}")
    # --8<-- [end:threads]


if __name__ == "__main__":
    actors.run(main)
