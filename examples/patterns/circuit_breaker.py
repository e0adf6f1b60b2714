"""The circuit breaker pattern as a typed state machine: closed, open, half-open.

Run: python examples/patterns/circuit_breaker.py

A `Breaker` actor stands in front of a flaky downstream actor. Closed, it passes calls
through and counts failures; after three in a row it opens and answers at once, without
bothering the downstream, until its state timeout moves it to half-open; there one trial
call decides: success closes it, failure opens it again, for twice as long. Time is a
ManualClock, so the run is the same every time.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

import actors
from actors import State, StateMachine, Transition, testing


# --8<-- [start:downstream]
class Ok(msgspec.Struct, frozen=True):
    value: str


class Failed(msgspec.Struct, frozen=True):
    reason: str


class Rejected(msgspec.Struct, frozen=True):
    retry_after: float


class Fetch(actors.Request[Ok | Failed], frozen=True):
    key: str


class SetHealthy(msgspec.Struct, frozen=True):
    healthy: bool


class Calls(actors.Request[int], frozen=True):
    pass


class Downstream(actors.Actor[Fetch | SetHealthy | Calls]):
    """A service that fails while it is unhealthy; counts the calls it gets."""

    def __init__(self) -> None:
        self.healthy = True
        self.calls = 0

    async def receive(self, message: Fetch | SetHealthy | Calls) -> Ok | Failed | int | None:
        match message:
            case Fetch(key):
                self.calls += 1
                return Ok(key.upper()) if self.healthy else Failed("503 unavailable")
            case SetHealthy(healthy):
                self.healthy = healthy
            case Calls():
                return self.calls
        return None


# --8<-- [end:downstream]


# --8<-- [start:breaker]
class Get(actors.Request[Ok | Failed | Rejected], frozen=True):
    key: str


class Closed(State["Breaker", Get]):
    async def on_enter(self, machine: Breaker) -> None:
        machine.failures = 0

    async def handle(self, machine: Breaker, message: Get) -> Transition:
        outcome = await machine.call(message.key)
        if isinstance(outcome, Ok):
            machine.failures = 0
            return machine.stay(reply=outcome)
        machine.failures += 1
        if machine.failures >= machine.threshold:
            return machine.goto(Open(timeout=machine.cooldown), reply=outcome)
        return machine.stay(reply=outcome)


@dataclass(frozen=True)
class Open(State["Breaker", Get]):
    timeout: float | None  # the cool-down: then one trial call

    async def handle(self, machine: Breaker, message: Get) -> Transition:
        return machine.stay(reply=Rejected(retry_after=machine.remaining()))

    async def on_timeout(self, machine: Breaker) -> Transition:
        return machine.goto(HalfOpen())


class HalfOpen(State["Breaker", Get]):
    async def handle(self, machine: Breaker, message: Get) -> Transition:
        outcome = await machine.call(message.key)  # the trial call
        if isinstance(outcome, Ok):
            machine.cooldown = machine.base_cooldown
            return machine.goto(Closed(), reply=outcome)
        machine.cooldown *= 2  # still failing: back off
        return machine.goto(Open(timeout=machine.cooldown), reply=outcome)


class Breaker(StateMachine[Closed | Open | HalfOpen, Get]):
    def __init__(self, downstream: actors.ActorRef[Fetch], threshold: int = 3) -> None:
        self.downstream = downstream
        self.threshold = threshold
        self.failures = 0
        self.base_cooldown = self.cooldown = 5.0

    def initial_state(self) -> Closed | Open | HalfOpen:
        return Closed()

    async def call(self, key: str) -> Ok | Failed:
        try:
            return await self.downstream.ask(Fetch(key), timeout=1.0)
        except (actors.ActorError, TimeoutError) as error:  # stopped, timed out, ...
            return Failed(type(error).__name__)

    def remaining(self) -> float:
        due = self.machine_statistics().timeout_due
        return 0.0 if due is None else due - self.system.clock.now()


# --8<-- [end:breaker]


async def main() -> None:
    async with testing.deterministic_system() as system:
        downstream = await system.spawn(Downstream, name="downstream")
        breaker = await system.spawn(lambda: Breaker(downstream), name="breaker")

        async def get(key: str) -> None:
            state = await testing.inspect(breaker, lambda m: type(m.state).__name__)
            reply = await breaker.ask(Get(key))
            print(f"t={system.clock.now():>2.0f} {state:>8}: get {key} -> {reply}")

        # --8<-- [start:drive]
        await get("a")
        await downstream.send(SetHealthy(False))
        for key in "bcd":
            await get(key)  # the third failure in a row opens the circuit
        await get("e")  # rejected at once: the downstream is not called
        await testing.advance(system, 5.0)  # the cool-down: half-open
        await get("f")  # the trial call fails: open again, for 10 s
        await downstream.send(SetHealthy(True))
        await testing.advance(system, 10.0)
        await get("g")  # the trial call succeeds: closed
        await get("h")
        print("downstream calls:", await downstream.ask(Calls()))
        stats = await testing.inspect(breaker, lambda m: m.machine_statistics())
        print(f"breaker: {stats.state}, {stats.transitions} transitions, {stats.handled} handled")
        # --8<-- [end:drive]


if __name__ == "__main__":
    actors.run(main)
