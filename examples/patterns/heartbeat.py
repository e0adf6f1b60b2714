"""Timers and metrics: a session that expires unless it hears a heartbeat, and a sampler.

Run: python examples/patterns/heartbeat.py

Time is driven by a ManualClock so that the story is the same on every run; with the
default real clock the actors are unchanged.
"""

from __future__ import annotations

import msgspec

import actors
from actors import Actor, ActorSystem


# --8<-- [start:session]
class Beat(msgspec.Struct, frozen=True):
    pass


class Expire(msgspec.Struct, frozen=True):
    pass


class Alive(actors.Request[bool], frozen=True):
    pass


class Session(Actor[Beat | Expire | Alive]):
    """Expires 3 s after the last heartbeat: each Beat re-arms a one-shot timer."""

    TIMEOUT = 3.0

    async def on_start(self) -> None:
        self.alive = True
        self.deadline = self.send_after(self.TIMEOUT, Expire())

    async def receive(self, message: Beat | Expire | Alive) -> bool | None:
        match message:
            case Beat():
                self.deadline.cancel()  # no Expire of the old deadline runs after this
                self.deadline = self.send_after(self.TIMEOUT, Expire())
            case Expire():
                self.alive = False
            case Alive():
                return self.alive
        return None


# --8<-- [end:session]


# --8<-- [start:sampler]
class Sample(msgspec.Struct, frozen=True):
    pass


class Samples(actors.Request[int], frozen=True):
    pass


class Sampler(Actor[Sample | Samples]):
    """Samples once a second; a slow sample makes the next ticks skip, never bunch."""

    async def on_start(self) -> None:
        self.taken = 0
        self.every = self.send_every(1.0, Sample())

    async def receive(self, message: Sample | Samples) -> int | None:
        if isinstance(message, Sample):
            self.taken += 1
            return None
        return self.taken


# --8<-- [end:sampler]


async def tick(
    clock: actors.ManualClock, *refs: actors.ActorRef[Alive] | actors.ActorRef[Samples]
) -> None:
    """One second passes; an ask to each actor then returns after the ticks that fell due
    (ticks travel in the control lane, ahead of the ask)."""
    clock.advance(1.0)
    for ref in refs:
        await ref.ask(Alive() if ref.name == "session" else Samples())  # type: ignore[arg-type]


async def main() -> None:
    # --8<-- [start:drive]
    clock = actors.ManualClock()
    async with ActorSystem(workers=2, clock=clock, handler_timing=True) as system:
        session = await system.spawn(Session, name="session")
        sampler = await system.spawn(Sampler, name="sampler")
        for _ in range(2):
            await tick(clock, session, sampler)
        await session.send(Beat())  # at t=2: the session now expires at t=5
        await session.ask(Alive())  # (handled: the deadline is re-armed from t=2)
        for second in (3, 4, 5):
            await tick(clock, session, sampler)
            print(f"t={second} alive:", await session.ask(Alive()))
        print("samples by t=5:", await sampler.ask(Samples()))
        # --8<-- [end:drive]
        # --8<-- [start:metrics]
        snapshot = system.metrics()
        for actor in snapshot.actors:
            handled = sum(count for _, count in actor.handler_histogram)
            print(
                f"{actor.path}: received={actor.received} processed={actor.processed} "
                f"failed={actor.failed} timed={handled}"
            )
        print("loops:", [loop.actors for loop in snapshot.loops])
        print("json bytes:", len(msgspec.json.encode(snapshot)) > 0)
        # --8<-- [end:metrics]


if __name__ == "__main__":
    actors.run(main)
