"""Scoped actors: word counters that live exactly as long as one request
(docs/patterns/scopes.md).

    python3 dev.py run examples/patterns/scopes.py

The output is the same on every run: the lines the actors print (in ``on_stop``) are
printed before the scope's ``async with`` completes, which waits for them.
"""

from __future__ import annotations

import anyio
import msgspec

import actors


# --8<-- [start:actors]
class Done(msgspec.Struct, frozen=True):
    words: int


class Count(actors.Request[int], frozen=True):
    text: str


class Progress(actors.Actor[Done]):
    def __init__(self) -> None:
        self.documents = 0

    async def receive(self, message: Done) -> None:
        self.documents += 1

    async def on_stop(self) -> None:  # runs when the scope stops it, after its drain
        # How many it saw is not printed: after a failure, it depends on which of the
        # other counters' asks were cancelled before they were handled.
        print("  progress: stopped, after every counter")


class WordCounter(actors.Actor[Count]):
    def __init__(self, progress: actors.ActorRef[Done]) -> None:
        self.progress = progress

    async def receive(self, message: Count) -> int:
        if not message.text:
            raise ValueError("empty document")
        words = len(message.text.split())
        await self.progress.send(Done(words))
        return words


# --8<-- [end:actors]


# --8<-- [start:scope]
async def count_words(scope: actors.Scope, documents: list[str]) -> int:
    counts = [0] * len(documents)
    async with scope:
        progress = await scope.spawn(Progress, name="progress")
        counters = [
            await scope.spawn(lambda: WordCounter(progress), name=f"counter-{i}")
            for i in range(len(documents))
        ]

        async def count(i: int) -> None:
            counts[i] = await counters[i].ask(Count(documents[i]))

        async with anyio.create_task_group() as tg:  # the counters work in parallel
            for i in range(len(documents)):
                tg.start_soon(count, i)
    # Here every actor of the scope has stopped: counters first, then progress.
    return sum(counts)


# --8<-- [end:scope]


async def main() -> None:
    async with actors.ActorSystem(workers=2) as system:
        print("counting 3 documents")
        total = await count_words(system.scope(), ["to be", "or not", "to be, that is"])
        print(f"total: {total} words")

        # --8<-- [start:failure]
        print("counting 3 documents, one of them empty")
        scope = system.scope()
        try:
            await count_words(scope, ["to be", "", "or not"])
        except ValueError as error:  # the counter's own exception, out of the scope
            print(f"the scope raised {type(error).__name__}: {error}")
        assert scope.path is not None
        print(f"the scope's actors are gone: {system.lookup(scope.path) is None}")
        # --8<-- [end:failure]

        # --8<-- [start:misuse]
        try:
            await scope.spawn(Progress)  # the block has exited
        except RuntimeError as error:
            print(f"RuntimeError: {error}")
        # --8<-- [end:misuse]


if __name__ == "__main__":
    actors.run(main)
