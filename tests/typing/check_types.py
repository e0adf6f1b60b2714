"""Type-level tests, checked by pyright (tests/test_typing.py runs it): every line must pass.

`assert_type` proves what pyright infers: `ask` takes its reply type from the request class,
and `spawn` returns a ref typed with the actor's message union. Never executed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, assert_type

import msgspec

import actors

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class Greet(msgspec.Struct, frozen=True):
    name: str


class Count(actors.Request[int], frozen=True):
    pass


class Names(actors.Request[tuple[str, ...]], frozen=True):
    pass


class Greeter(actors.Actor[Greet | Count | Names]):
    def __init__(self) -> None:
        self.names: list[str] = []

    async def receive(self, message: Greet | Count | Names) -> int | tuple[str, ...] | None:
        match message:
            case Greet(name):
                self.names.append(name)
            case Count():
                return len(self.names)
            case Names():
                return tuple(self.names)
        return None


class Small(actors.Actor[Greet | Count]):
    async def receive(self, message: Greet | Count) -> int | None:
        return None


async def spawn_and_talk(system: actors.ActorSystem) -> None:
    ref = await system.spawn(Small)
    assert_type(ref, actors.ActorRef[Greet | Count])
    greeter = await system.spawn(Greeter, name="greeter", capacity=8, placement=0)
    assert_type(greeter, actors.ActorRef[Greet | Count | Names])
    made_by_lambda = await system.spawn(lambda: Greeter())
    assert_type(made_by_lambda, actors.ActorRef[Greet | Count | Names])

    assert_type(await ref.ask(Count()), int)
    assert_type(await greeter.ask(Names()), tuple[str, ...])
    assert_type(await ref.send(Greet("ada")), None)
    assert_type(ref.try_send(Count()), None)
    await ref.send(Greet("ada"), timeout=1.0)
    assert_type(await ref.join(), BaseException | None)


async def lookup_by_message_type_or_by_actor_class(system: actors.ActorSystem) -> None:
    by_class = await system.lookup_remote("greeter", Greeter)  # the actor class spawned
    assert_type(by_class, actors.Ref[Greet | Count | Names])
    assert_type(await by_class.ask(Count()), int)
    by_message = await system.lookup_remote("greeter", Greet)
    assert_type(by_message, actors.Ref[Greet])


def from_a_thread(ref: actors.ActorRef[Greet | Count]) -> None:
    assert_type(ref.blocking_ask(Count()), int)
    assert_type(ref.blocking_send(Greet("ada")), None)


def refs_are_contravariant(ref: actors.ActorRef[Greet | Count]) -> actors.ActorRef[Greet]:
    # A ref accepting Greet | Count can stand in wherever a ref accepting Greet is needed.
    return ref


def a_local_ref_is_a_ref(ref: actors.ActorRef[Greet | Count]) -> actors.Ref[Greet]:
    # Wherever the actor may live (a reply_to field, watch), a local ref fits.
    return ref


async def any_ref_can_be_watched_and_joined(actor: Greeter, ref: actors.Ref[Greet]) -> None:
    actor.watch(ref)
    assert_type(await ref.join(), BaseException | None)
    assert_type(await ref.blocking_ask(Greet("ada")), Any)  # not a Request: no typed reply


class Introduce(msgspec.Struct, frozen=True):
    to: actors.ActorRef[Greet]


def refs_travel_in_messages(ref: actors.ActorRef[Greet | Count]) -> Introduce:
    return Introduce(to=ref)


def moved_keeps_its_type(rows: list[int]) -> None:
    moved = actors.Moved(rows)
    assert_type(moved, actors.Moved[list[int]])
    assert_type(moved.value, list[int])


def run_returns_the_result_of_main() -> None:
    async def main(x: int) -> str:
        return str(x)

    assert_type(actors.run(main, 1), str)


def statistics_snapshot(stats: actors.MailboxStatistics) -> None:
    assert_type(stats.depth, int)
    assert_type(stats.closed, bool)


def errors_carry_the_message(error: actors.MailboxFull) -> None:
    assert_type(error.message, object)


class SyncSmall(actors.Actor[Greet | Count]):
    """A synchronous ``receive`` overrides the base as well as an ``async def`` one."""

    def __init__(self) -> None:
        self.seen = 0

    def receive(self, message: Greet | Count) -> int | None:
        if isinstance(message, Count):
            return self.seen
        self.seen += 1
        self.become(self.counting)  # a sync or an async method of the actor
        self.become(self.later)
        return None

    def counting(self, message: Greet | Count) -> int:
        self.stash(message)
        assert_type(self.unstash_all(), int)
        child = self.spawn_soon(Small, name="small")
        assert_type(child, actors.ActorRef[Greet | Count])
        return 0

    async def later(self, message: Greet | Count) -> None:
        return None

    def on_terminated(self, event: actors.Terminated) -> None:  # a plain hook overrides too
        self.seen -= 1


class AsyncHook(actors.Actor[Greet]):
    def receive(self, message: Greet) -> None:
        return None

    async def on_terminated(self, event: actors.Terminated) -> None:  # and so does an async one
        return None


async def sync_actors_are_typed_alike(system: actors.ActorSystem) -> None:
    ref = await system.spawn(SyncSmall)
    assert_type(ref, actors.ActorRef[Greet | Count])
    assert_type(await ref.ask(Count()), int)


class Tokens(actors.StreamRequest[str], frozen=True):
    prompt: str


class Model(actors.Actor[Tokens | Count]):
    async def receive(self, message: Tokens | Count) -> AsyncIterator[str] | int:
        if isinstance(message, Count):
            return 0
        return self.tokens(message.prompt)

    async def tokens(self, prompt: str) -> AsyncIterator[str]:
        for word in prompt.split():
            yield word


async def streams_are_typed_by_their_request(system: actors.ActorSystem) -> None:
    model = await system.spawn(Model)
    stream = model.stream(Tokens("a b"), window=4, timeout=None)
    assert_type(stream, actors.ReplyStream[str])
    async for token in stream:
        assert_type(token, str)
    async with model.stream(Tokens("c")) as tokens:
        assert_type(tokens, actors.ReplyStream[str])
    remote: actors.Ref[Tokens] = model
    assert_type(remote.stream(Tokens("d")), actors.ReplyStream[str])
