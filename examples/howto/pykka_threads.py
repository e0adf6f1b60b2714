"""How-to, migrating from pykka: keep synchronous code, move the actors.

Run it with ``python3 dev.py run examples/howto/pykka_threads.py``.
"""

from __future__ import annotations

import anyio.to_thread
import msgspec

import actors


class Add(msgspec.Struct, frozen=True):
    n: int


class Get(actors.Request[int], frozen=True):
    pass


class Counter(actors.Actor[Add | Get]):
    def __init__(self) -> None:
        self.total = 0

    async def receive(self, message: Add | Get) -> int | None:
        match message:
            case Add(n=n):
                self.total += n
            case Get():
                return self.total
        return None


# --8<-- [start:sync]
def legacy_code(counter: actors.ActorRef[Add | Get]) -> None:
    """Synchronous code, unchanged but for the calls: tell -> blocking_send, ask -> blocking_ask."""
    for n in range(1, 5):
        counter.blocking_send(Add(n))
    print("total:", counter.blocking_ask(Get()))


async def main() -> None:
    async with actors.ActorSystem(workers=2) as system:
        counter = await system.spawn(Counter)
        # The synchronous part runs in a thread of its own; the host loop waits for it.
        await anyio.to_thread.run_sync(legacy_code, counter)


# --8<-- [end:sync]


if __name__ == "__main__":
    actors.run(main)
