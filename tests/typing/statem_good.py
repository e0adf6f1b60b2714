"""Type-level tests of typed state machines that must pass: pyright and mypy accept every
line, and ``assert_type`` pins what the API infers. Never executed.

tests/test_statem_typing.py checks this file and statem_bad.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_type

import msgspec

import actors
from actors import State, StateMachine, StateMachineStatistics, Transition


class Push(msgspec.Struct, frozen=True):
    pass


class Where(actors.Request[str], frozen=True):
    pass


class Closed(State["Door", Push | Where]):
    async def handle(self, machine: Door, message: Push | Where) -> Transition:
        match message:
            case Push():
                return machine.goto(Opened(width=3))
            case Where():
                return machine.stay(reply="closed")


@dataclass(frozen=True)
class Opened(State["Door", Push | Where]):
    width: int
    timeout: float | None = 5.0

    async def on_enter(self, machine: Door) -> None:
        machine.openings += 1

    async def handle(self, machine: Door, message: Push | Where) -> Transition:
        if isinstance(message, Where):
            return machine.stay(reply=f"open {self.width}")
        return machine.postpone()

    async def on_timeout(self, machine: Door) -> Transition:
        return machine.goto(Closed())


class Door(StateMachine[Closed | Opened, Push | Where]):
    postpone_capacity = 10

    def __init__(self) -> None:
        self.openings = 0

    def initial_state(self) -> Closed | Opened:
        return Closed()


async def refs_and_state(system: actors.ActorSystem) -> None:
    door = await system.spawn(Door)
    assert_type(door, actors.ActorRef[Push | Where])
    await door.send(Push())
    assert_type(await door.ask(Where()), str)


def inside(door: Door) -> None:
    assert_type(door.state, Closed | Opened)
    assert_type(door.goto(Closed()), Transition)
    assert_type(door.stay(), Transition)
    assert_type(door.postpone(), Transition)
    assert_type(door.machine_statistics(), StateMachineStatistics)
    assert_type(door.machine_statistics().timeout_due, float | None)
