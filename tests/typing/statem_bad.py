"""Type-level tests of typed state machines that must fail: each line marked
``# error: <pyright rules>`` is rejected (by pyright; by mypy too unless ``(pyright only)``).

tests/test_statem_typing.py compares the reported errors with the markers both ways.
"""

from __future__ import annotations

import msgspec

import actors
from actors import State, StateMachine, Transition

T = Transition


class Push(msgspec.Struct, frozen=True):
    pass


class Ring(msgspec.Struct, frozen=True):
    pass


class Banana(msgspec.Struct, frozen=True):
    pass


class Closed(State["Door", Push]):
    async def handle(self, machine: Door, message: Push) -> Transition:
        return machine.goto(Opened())


class Opened(State["Door", Push]):
    async def handle(self, machine: Door, message: Push) -> Transition:
        return machine.goto(Banana())  # error: reportArgumentType


class Elsewhere(State["Other", Ring]):
    async def handle(self, machine: Other, message: Ring) -> Transition:
        return machine.stay()


class Door(StateMachine[Closed | Opened, Push]):
    def initial_state(self) -> Closed | Opened:
        return Closed()


class Other(StateMachine[Elsewhere, Ring]):
    def initial_state(self) -> Elsewhere:
        return Elsewhere()


class WrongMessage(State["Door", Push]):
    async def handle(self, m: Door, x: Ring) -> T:  # error: reportIncompatibleMethodOverride
        return m.stay()


class ReturnsAState(State["Door", Push]):
    async def handle(self, machine: Door, message: Push) -> Transition:
        return Closed()  # error: reportReturnType


class BadInitial(StateMachine[Closed | Opened, Push]):
    def initial_state(self) -> Closed | Opened:
        return Elsewhere()  # error: reportReturnType


def transitions(door: Door, other: Other) -> None:
    door.goto(Elsewhere())  # error: reportArgumentType
    door.goto("opened")  # error: reportArgumentType
    other.goto(Closed())  # error: reportArgumentType


async def sends(system: actors.ActorSystem) -> None:
    door = await system.spawn(Door)
    await door.send(Ring())  # error: reportArgumentType


class OverridesReceive(StateMachine[Closed | Opened, Push]):
    async def receive(self, message: Push) -> None:  # error: reportIncompatibleMethodOverride
        return None
