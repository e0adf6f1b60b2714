"""How-to: use actors from a trio program.

Run it with ``python3 dev.py run examples/howto/trio_app.py``.
"""

from __future__ import annotations

import threading

import anyio
import trio

import actors


# --8<-- [start:actor]
class Lookup(actors.Request[str], frozen=True):
    key: str


class Slow(actors.Request[str], frozen=True):
    seconds: float


class Store(actors.Actor[Lookup | Slow]):
    async def receive(self, message: Lookup | Slow) -> str:
        match message:
            case Lookup(key=key):
                return key.upper()
            case Slow(seconds=seconds):
                # Handlers run on the system's asyncio worker loops, whatever the host is;
                # anyio calls work here, trio calls do not.
                await anyio.sleep(seconds)
                return "finally"


# --8<-- [end:actor]


# --8<-- [start:main]
async def client(store: actors.ActorRef[Lookup], key: str, results: list[str]) -> None:
    results.append(await store.ask(Lookup(key)))


def from_a_thread(store: actors.ActorRef[Lookup]) -> str:
    return store.blocking_ask(Lookup("thread"))  # plain threads use the blocking_* calls


async def main() -> None:
    async with actors.ActorSystem(workers=2) as system:  # started from trio's loop
        store = await system.spawn(Store, name="store")

        results: list[str] = []
        async with trio.open_nursery() as nursery:  # structured concurrency as usual
            for key in ("a", "b", "c"):
                nursery.start_soon(client, store, key, results)
        print("asked from three trio tasks:", sorted(results))

        # trio's cancellation reaches a waiting ask: the reply, when it comes, is dropped.
        with trio.move_on_after(0.05) as scope:
            await store.ask(Slow(0.5))
        print("slow ask cancelled by trio:", scope.cancelled_caught)

        reply = await trio.to_thread.run_sync(from_a_thread, store)
        print("blocking_ask from a worker thread:", reply)
        print("host thread:", threading.current_thread().name)
    # Leaving the block drained the store's mailbox (the slow message included) and
    # stopped the worker threads.
    print("done")


if __name__ == "__main__":
    trio.run(main)  # or: actors.run(main, backend="trio")
# --8<-- [end:main]
