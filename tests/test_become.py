"""become and stash (issue 17): swapping the handler, setting messages aside and replaying
them, the stash's bound, restarts and stops, and the dead-letter invariant."""

from __future__ import annotations

import logging
import random
from typing import Any

import anyio
import msgspec
import pytest
from _support import WAIT, Countdown, Flag, wait_until

import actors
from actors import Actor, ActorSystem

pytestmark = pytest.mark.anyio


class Login(msgspec.Struct, frozen=True):
    user: str


class Query(actors.Request[str], frozen=True):
    key: str


class Note(msgspec.Struct, frozen=True):
    n: int


class Logout(msgspec.Struct, frozen=True):
    pass


class Crash(msgspec.Struct, frozen=True):
    pass


class Replay(msgspec.Struct, frozen=True):
    pass


class Seen(actors.Request[tuple[int, ...]], frozen=True):
    pass


Msg = Login | Query | Note | Logout | Crash | Replay | Seen


class Session(Actor[Msg]):
    """Stashes queries and notes until logged in; then answers them in order."""

    stash_capacity = 4

    def __init__(self, stashed: Countdown | None = None) -> None:
        self.user = ""
        self.notes: list[int] = []
        self.stashed = stashed

    def receive(self, message: Msg) -> Any:  # the first behaviour: synchronous
        match message:
            case Login(user):
                self.user = user
                self.become(self.active)
                self.unstash_all()
            case Crash():
                raise ValueError("crash")
            case Seen():
                return tuple(self.notes)
            case _:
                self.stash(message)
                if self.stashed is not None:
                    self.stashed.tick()
        return None

    async def active(self, message: Msg) -> Any:  # the second: async
        match message:
            case Query(key):
                return f"{self.user}:{key}"
            case Note(n):
                self.notes.append(n)
            case Logout():
                self.become(self.receive)
            case Crash():
                raise ValueError("crash")
            case Seen():
                return tuple(self.notes)
        return None


async def test_become_switches_for_the_next_message_and_stash_replays_in_order() -> None:
    stashed = Countdown(3)
    answers: list[str] = []
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: Session(stashed))

        async def ask(key: str) -> None:
            answers.append(await ref.ask(Query(key)))

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                await ref.send(Note(1))
                tg.start_soon(ask, "a")
                await ref.send(Note(2))
                await stashed.done.wait()  # all three stashed; the asker still waits
                assert answers == []
                await ref.send(Login("ada"))
                await ref.send(Note(3))
            assert answers == ["ada:a"]  # answered by the new behaviour, once unstashed
            assert await ref.ask(Seen()) == (1, 2, 3)  # replayed before the queued Note(3)
            await ref.send(Logout())
            await ref.send(Note(4))  # stashed again: back to the first behaviour
            assert await ref.ask(Seen()) == (1, 2, 3)


class Overflowing(Actor[Note | Seen]):
    stash_capacity = 2

    def __init__(self) -> None:
        self.refused: list[int] = []

    def receive(self, message: Note | Seen) -> Any:
        if isinstance(message, Seen):
            return tuple(self.refused)
        try:
            self.stash(message)
        except actors.StashFull as full:
            self.refused.append(full.message.n if isinstance(full.message, Note) else -1)
        return None


async def test_stash_overflow_raises_a_clear_error_and_is_counted() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Overflowing)
        with anyio.fail_after(WAIT):
            for n in range(4):
                await ref.send(Note(n))
            assert await ref.ask(Seen()) == (2, 3)
        cell = actors._ref.cell_of(ref)  # pyright: ignore[reportPrivateUsage]
        assert cell.behaviour is not None
        assert cell.behaviour.overflows == 2
        metrics = next(a for a in system.metrics().actors if a.path == ref.path)
        assert metrics.stash_overflows == 2


async def test_an_uncaught_stash_overflow_fails_the_actor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL)
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Session, restart=actors.Restart.TEMPORARY)
        with anyio.fail_after(WAIT):
            for n in range(5):  # capacity 4: the fifth fails the handler
                await ref.send(Note(n))
            reason = await ref.join()
    assert isinstance(reason, actors.StashFull)
    assert "stash of actor" in str(reason)
    assert "(4/4)" in str(reason)


async def test_a_restart_drops_the_stash_into_dead_letters_and_resets_the_behaviour(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL)
    stashed = Countdown(3)
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: Session(stashed))
        outcome: list[BaseException] = []

        async def ask() -> None:
            try:
                await ref.ask(Query("q"))
            except actors.ActorStopped as error:
                outcome.append(error)

        with anyio.fail_after(WAIT):
            before = system.dead_letters.count
            async with anyio.create_task_group() as tg:
                await ref.send(Note(1))
                await ref.send(Note(2))
                tg.start_soon(ask)
                await stashed.done.wait()
                await ref.send(Crash())  # fails with two notes and an ask stashed
            assert len(outcome) == 1  # the stashed ask: its asker learns the actor stopped
            await ref.send(Login("bob"))  # a fresh instance, with the first behaviour
            assert await ref.ask(Query("k")) == "bob:k"
            assert await ref.ask(Seen()) == ()  # the stashed notes were not replayed
            assert system.dead_letters.count - before == 2


async def test_become_and_stash_refuse_callers_outside_the_actor() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Session)
        cell = actors._ref.cell_of(ref)  # pyright: ignore[reportPrivateUsage]
        instance = cell.instance
        assert isinstance(instance, Session)
        with pytest.raises(RuntimeError, match=r"become\(\) of actor .* own handlers"):
            instance.become(instance.active)
        with pytest.raises(RuntimeError, match=r"stash\(\) of actor"):
            instance.stash(Note(1))
        with pytest.raises(RuntimeError, match=r"unstash_all\(\) of actor"):
            instance.unstash_all()


class Quit(msgspec.Struct, frozen=True):
    release: bool


class Draining(Actor[Note | Quit]):
    """Stashes notes; a Quit stops it, releasing (or not) the stash first."""

    def __init__(self, handled: list[int], done: Flag) -> None:
        self.handled = handled
        self.done = done
        self.replaying = False

    def receive(self, message: Note | Quit) -> None:
        if isinstance(message, Quit):
            self.stop()
            if message.release:
                self.replaying = True
                self.unstash_all()
        elif self.replaying:
            self.handled.append(message.n)
        else:
            self.stash(message)

    async def on_stop(self) -> None:
        self.done.set()


@pytest.mark.parametrize("release", [True, False])
async def test_unstash_during_stop(release: bool) -> None:
    """Unstashed during a stop, the messages are handled before the actor ends (they were
    accepted); still stashed when it ends, they become dead letters."""
    handled: list[int] = []
    done = Flag()
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: Draining(handled, done), restart=actors.Restart.TEMPORARY)
        with anyio.fail_after(WAIT):
            before = system.dead_letters.count
            for n in range(3):
                await ref.send(Note(n))
            await ref.send(Quit(release))
            assert await ref.join() is None
            await done.wait()
        if release:
            assert handled == [0, 1, 2]
            assert system.dead_letters.count == before
        else:
            assert handled == []
            assert system.dead_letters.count - before == 3


class Stress(Actor[Note | Login | Crash | Logout]):
    """Stashes odd notes while "away", replays them on Login, fails on Crash."""

    stash_capacity = 10_000

    def __init__(self, processed: list[int]) -> None:
        self.processed = processed  # one cell: handled without being stashed
        self.away = False

    def receive(self, message: Note | Login | Crash | Logout) -> None:
        if isinstance(message, Note) and self.away and message.n % 2:
            self.stash(message)
            return
        self.processed[0] += 1
        match message:
            case Logout():
                self.away = True
            case Login():
                self.away = False
                self.unstash_all()
            case Crash():
                raise ValueError("crash")
            case _:
                pass


async def test_dead_letter_invariant_under_restarts_mid_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """processed + dead-lettered + refused == sent, with stashes dropped by restarts."""
    caplog.set_level(logging.CRITICAL)
    rng = random.Random(17)
    sent = 3000
    processed = [0]
    supervision = actors.OneForOne(max_restarts=10_000, within=60.0)
    async with ActorSystem(workers=2, capacity=64, supervision=supervision) as system:
        ref = await system.spawn(lambda: Stress(processed))
        refused = 0
        before = system.dead_letters.count
        with anyio.fail_after(WAIT * 3):
            for i in range(sent - 1):
                roll = rng.random()
                message: Note | Login | Crash | Logout
                if roll < 0.01:
                    message = Crash()
                elif roll < 0.06:
                    message = Logout()
                elif roll < 0.08:
                    message = Login("x")
                else:
                    message = Note(i)
                try:
                    if rng.random() < 0.5:
                        ref.try_send(message)
                    else:
                        await ref.send(message)
                except actors.MailboxFull:
                    refused += 1
            await ref.send(Logout())  # the last message: what is stashed now is dropped
            await ref.stop()
        dead = system.dead_letters.count - before
        restarts = ref.statistics().restarts
    assert restarts > 5  # restarts happened mid-stream
    assert dead > 0  # and dropped stashes
    assert processed[0] + dead + refused == sent, (processed, dead, refused)


def test_the_howto_example_runs() -> None:
    from test_examples import run_example

    assert run_example("howto/sync_become.py").splitlines() == [
        "total: 10",
        "dispatched: 10",
        "crew: 1",
        "answers: ada/drafts, ada/inbox",
    ]


class AsyncStasher(Actor[Query | Login]):
    """Stashes asks from an async handler, several calls deep, and answers them later."""

    def __init__(self, stashed: Flag) -> None:
        self.ready = False
        self.stashed = stashed

    async def receive(self, message: Query | Login) -> str | None:
        if isinstance(message, Login):
            self.ready = True
            self.unstash_all()
            return None
        if not self.ready:
            await self._set_aside(message, depth=80)  # deeper than any fixed frame limit
            return "dropped: the reply comes from the handler that takes it later"
        return f"later:{message.key}"

    async def _set_aside(self, message: Query, depth: int) -> None:
        if depth:
            await self._set_aside(message, depth - 1)
        else:
            self.stash(message)
            with pytest.raises(RuntimeError, match="set aside already"):
                self.stash(message)
            self.stashed.set()


async def test_an_async_handler_stashes_an_ask_and_its_asker_waits() -> None:
    async with ActorSystem(workers=1) as system:
        stashed = Flag()
        ref = await system.spawn(lambda: AsyncStasher(stashed))
        answers: list[str] = []

        async def ask(key: str) -> None:
            answers.append(await ref.ask(Query(key)))

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, "x")
                await stashed.wait()
                assert answers == []  # the asker still waits
                await ref.send(Login("a"))
        assert answers == ["later:x"]


class Keeper(Actor[Note | Seen]):
    """Stashes every note; goes idle with them stashed."""

    def receive(self, message: Note | Seen) -> tuple[int, ...] | None:
        if isinstance(message, Seen):
            return ()
        self.stash(message)
        return None


class Parent(Actor[Seen]):
    def __init__(self) -> None:
        self.child: actors.ActorRef[Note | Seen] | None = None

    def receive(self, message: Seen) -> actors.ActorRef[Note | Seen]:
        if self.child is None:
            self.child = self.spawn_soon(Keeper, name="keeper")
        return self.child


async def test_an_idle_child_with_a_stash_is_not_ended_in_place() -> None:
    """A parent ends an idle child of its own loop in place (no task, no drain); one with
    stashed messages takes the normal path, which dead-letters them."""
    async with ActorSystem(workers=1) as system:
        parent = await system.spawn(Parent)
        with anyio.fail_after(WAIT):
            child = await parent.ask(Seen())
            await child.send(Note(1))
            await child.send(Note(2))
            assert await child.ask(Seen()) == ()  # both stashed
            cell = actors._ref.cell_of(child)  # pyright: ignore[reportPrivateUsage]
            await wait_until(lambda: cell.task is None)  # its parked run task retired: idle
            before = system.dead_letters.count
            await parent.stop()
            assert await child.join() is None
            assert system.dead_letters.count - before == 2


class UnstashThenCrash(Actor[Note | Crash | Seen]):
    """Stashes notes until a Crash, which unstashes them and fails: the fresh instance,
    which stashes nothing, handles them."""

    def __init__(self, generation: list[int]) -> None:
        generation[0] += 1
        self.first = generation[0] == 1
        self.notes: list[int] = []

    def receive(self, message: Note | Crash | Seen) -> tuple[int, ...] | None:
        match message:
            case Note(n) if self.first:
                self.stash(message)
            case Note(n):
                self.notes.append(n)
            case Crash():
                self.unstash_all()
                raise ValueError("crash after unstashing")
            case Seen():
                return tuple(self.notes)
        return None


async def test_unstashed_messages_are_back_in_the_mailbox_and_survive_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL)
    generation = [0]
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: UnstashThenCrash(generation))
        with anyio.fail_after(WAIT):
            before = system.dead_letters.count
            for n in range(3):
                await ref.send(Note(n))
            await ref.send(Crash())
            assert await ref.ask(Seen()) == (0, 1, 2)  # handled by the second instance
            assert generation[0] == 2
            assert system.dead_letters.count == before
