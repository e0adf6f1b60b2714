"""How-to, migrating from pykka: the same counter with actors.

Run it with ``python3 dev.py run examples/howto/pykka_after.py``.
"""

from __future__ import annotations

# --8<-- [start:all]
import msgspec

import actors


class Add(msgspec.Struct, frozen=True):
    n: int


class Get(actors.Request[int], frozen=True):
    pass


class Counter(actors.Actor[Add | Get]):
    def __init__(self, start: int) -> None:
        self.total = start

    async def receive(self, message: Add | Get) -> int | None:
        match message:
            case Add(n=n):
                self.total += n
            case Get():
                return self.total
        return None


async def main() -> None:
    async with actors.ActorSystem() as system:  # one event loop per CPU
        counter = await system.spawn(lambda: Counter(10))
        await counter.send(Add(5))
        print("total:", await counter.ask(Get(), timeout=5))
    # leaving the block stops every actor, like ActorRegistry.stop_all()


if __name__ == "__main__":
    actors.run(main)
# --8<-- [end:all]
