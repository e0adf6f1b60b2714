"""Type-level tests that must fail: pyright must report each line marked ``# error: <rules>``.

tests/test_typing.py runs pyright on this file and compares its errors with the markers both
ways: an error on an unmarked line, or a marked line without (each of) its rules, fails.
"""

from __future__ import annotations

import msgspec

import actors


class Greet(msgspec.Struct, frozen=True):
    name: str


class Count(actors.Request[int], frozen=True):
    pass


class Withdraw(msgspec.Struct, frozen=True):
    amount: int


class Balance(actors.Request[int], frozen=True):
    pass


class Greeter(actors.Actor[Greet | Count]):
    async def receive(self, message: Greet | Count) -> int | None:
        return None


async def wrong_message_types(system: actors.ActorSystem) -> None:
    ref = await system.spawn(Greeter)
    await ref.send(Withdraw(5))  # error: reportArgumentType
    ref.try_send(Withdraw(5))  # error: reportArgumentType
    ref.blocking_send(Withdraw(5))  # error: reportArgumentType
    await ref.ask(Withdraw(5))  # error: reportCallIssue
    await ref.send("hello")  # error: reportArgumentType


async def wrong_reply_type(ref: actors.ActorRef[Greet | Count]) -> None:
    reply: str = await ref.ask(Count())  # error: reportAssignmentType (pyright only)
    del reply


def refs_are_not_covariant(ref: actors.ActorRef[Greet]) -> actors.ActorRef[Greet | Count]:
    return ref  # error: reportReturnType


def moved_is_typed(rows: list[int]) -> None:
    actors.Moved(rows).value.append("x")  # error: reportArgumentType


async def spawn_wants_an_actor_factory(system: actors.ActorSystem) -> None:
    await system.spawn(Greet)  # error: reportArgumentType


async def a_ref_looked_up_by_actor_class_takes_its_messages(system: actors.ActorSystem) -> None:
    ref = await system.lookup_remote("greeter", Greeter)
    await ref.send(Withdraw(5))  # error: reportArgumentType


async def a_looked_up_ref_cannot_stop_or_inspect_the_actor(system: actors.ActorSystem) -> None:
    ref = await system.lookup_remote("greeter", Greeter)
    await ref.stop()  # error: reportAttributeAccessIssue
    ref.statistics()  # error: reportAttributeAccessIssue


def a_ref_is_not_a_local_ref(ref: actors.Ref[Greet]) -> actors.ActorRef[Greet]:
    return ref  # error: reportReturnType


class SyncGreeter(actors.Actor[Greet | Count]):
    def receive(self, message: Greet | Count) -> None:
        self.become(self.wrong)  # error: reportArgumentType
        self.stash(Withdraw(1))  # error: reportArgumentType

    def wrong(self, message: Withdraw) -> None:
        pass


class Rows(actors.StreamRequest[int], frozen=True):
    pass


async def streams_take_stream_requests(ref: actors.ActorRef[Rows | Count]) -> None:
    ref.stream(Count())  # error: reportArgumentType
    async for row in ref.stream(Rows()):
        row.upper()  # error: reportAttributeAccessIssue
