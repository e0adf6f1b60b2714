"""How-to: synchronous handlers, become and stash, batch sends.

Run it with ``python3 dev.py run examples/howto/sync_become.py``.
"""

from __future__ import annotations

from typing import Any

import anyio
import msgspec

import actors


# --8<-- [start:sync]
class Add(msgspec.Struct, frozen=True):
    n: int


class Total(actors.Request[int], frozen=True):
    pass


class Counter(actors.Actor[Add | Total]):
    def __init__(self) -> None:
        self.total = 0

    # No `async`: the runtime calls it in place, without a coroutine per message.
    def receive(self, message: Add | Total) -> int | None:
        match message:
            case Add(n):
                self.total += n
            case Total():
                return self.total  # the reply to an ask, as from an async handler
        return None


# --8<-- [end:sync]


# --8<-- [start:spawn-soon]
class Job(msgspec.Struct, frozen=True):
    n: int


class Dispatcher(actors.Actor[Job | Total]):
    def __init__(self) -> None:
        self.counter: actors.ActorRef[Add | Total] | None = None

    def receive(self, message: Job | Total) -> int | None:
        if self.counter is None:
            self.counter = self.spawn_soon(Counter, name="counter")  # a ref, at once
        match message:
            case Job(n):
                self.counter.try_send(Add(n))  # never waits: raises MailboxFull when full
            case Total():
                return -1  # a synchronous handler cannot await an ask; see below
        return None


# --8<-- [end:spawn-soon]


# --8<-- [start:terminated]
class Hire(msgspec.Struct, frozen=True):
    count: int


class Crew(actors.Actor[Hire | Total]):
    def __init__(self) -> None:
        self.workers: set[actors.Ref[Any]] = set()

    def receive(self, message: Hire | Total) -> int | None:
        match message:
            case Hire(count):
                for n in range(count):
                    worker = self.spawn_soon(Counter, name=f"worker-{n}")
                    self.watch(worker)
                    self.workers.add(worker)
            case Total():
                return len(self.workers)
        return None

    def on_terminated(self, event: actors.Terminated) -> None:  # in place: no task
        self.workers.discard(event.ref)


# --8<-- [end:terminated]


# --8<-- [start:become]
class Connect(msgspec.Struct, frozen=True):
    user: str


class Query(actors.Request[str], frozen=True):
    key: str


class Session(actors.Actor[Connect | Query]):
    stash_capacity = 100  # at most this many queries wait for the connection

    def __init__(self) -> None:
        self.user = ""

    def receive(self, message: Connect | Query) -> str | None:  # the first behaviour
        match message:
            case Connect(user):
                self.user = user
                self.become(self.connected)  # from the next message on
                self.unstash_all()  # the stashed queries go first, in order
            case Query():
                self.stash(message)  # its asker keeps waiting for the reply
        return None

    async def connected(self, message: Connect | Query) -> str | None:  # async works too
        match message:
            case Query(key):
                return f"{self.user}/{key}"
            case Connect():
                return None
        return None


# --8<-- [end:become]


async def main() -> None:
    async with actors.ActorSystem(workers=1) as system:
        counter = await system.spawn(Counter)
        # --8<-- [start:send-many]
        await counter.send(Add(1))
        await counter.send_many([Add(2), Add(3), Add(4)])  # one lock and one wake-up
        # --8<-- [end:send-many]
        print("total:", await counter.ask(Total()))

        dispatcher = await system.spawn(Dispatcher, name="dispatcher")
        for n in range(5):
            await dispatcher.send(Job(n))
        await dispatcher.ask(Total())  # the jobs before it have been dispatched
        child = system.lookup("/user/dispatcher/counter")
        assert child is not None
        print("dispatched:", await child.ask(Total()))

        crew = await system.spawn(Crew, name="crew")
        await crew.send(Hire(3))
        assert await crew.ask(Total()) == 3  # hired: the workers are registered
        for n in range(2):
            worker = system.lookup(f"/user/crew/worker-{n}")
            assert worker is not None
            await worker.stop()  # its notice reaches the crew before the ask below
        print("crew:", await crew.ask(Total()))

        session = await system.spawn(Session)
        answers: list[str] = []

        async def ask(key: str) -> None:
            answers.append(await session.ask(Query(key)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, "inbox")  # stashed until connected
            tg.start_soon(ask, "drafts")
            await anyio.sleep(0.01)  # let both queries arrive first (only for the demo)
            await session.send(Connect("ada"))
        print("answers:", ", ".join(sorted(answers)))


if __name__ == "__main__":
    actors.run(main)
