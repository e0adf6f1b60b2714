"""Quickstart: one actor type, two actors, every way to talk to them.

Run it with ``python3 dev.py run examples/quickstart.py``.
"""

from __future__ import annotations

import msgspec

import actors


class Greet(msgspec.Struct, frozen=True):
    """Tell: greet someone. No reply."""

    name: str


class Count(actors.Request[int], frozen=True):
    """Ask: how many greetings so far? The reply is an int."""


class Greeter(actors.Actor[Greet | Count]):
    def __init__(self, greeting: str = "hello") -> None:
        self.greeting = greeting
        self.greeted = 0  # owned by this actor: no lock, no other task touches it

    async def on_start(self) -> None:
        print(f"{self.name}: started")

    async def receive(self, message: Greet | Count) -> int | None:
        match message:
            case Greet(name=name):
                self.greeted += 1
                print(f"{self.name}: {self.greeting}, {name}")
            case Count():
                return self.greeted
        return None

    async def on_stop(self) -> None:
        print(f"{self.name}: stopped after {self.greeted} greeting(s)")


async def main() -> None:
    async with actors.ActorSystem() as system:
        # Spawn by class, with a name and a small mailbox; spawn returns after on_start.
        greeter = await system.spawn(Greeter, name="greeter", capacity=8)
        # Spawn with a factory (any zero-argument callable) to pass constructor arguments.
        french = await system.spawn(lambda: Greeter("bonjour"), name="french")

        await greeter.send(Greet("Ada"))  # waits only while the mailbox is full
        # ask returns what receive returned. Messages from one sender are handled in
        # order, so the count includes the greeting sent just before.
        print("greeter counted", await greeter.ask(Count(), timeout=1.0))

        try:
            french.try_send(Greet("Grace"))  # never waits
        except actors.MailboxFull as full:
            print("french is busy; not sent:", full.message)
        print("french counted", await french.ask(Count(), timeout=1.0))

        await greeter.stop()  # drains the mailbox, runs on_stop, then returns
        try:
            await greeter.send(Greet("Linus"))
        except actors.ActorStopped:
            print("greeter is stopped: send raised ActorStopped")
    # Leaving the block stops the remaining actors (french) and the worker threads.
    print("done")


if __name__ == "__main__":
    actors.run(main)
