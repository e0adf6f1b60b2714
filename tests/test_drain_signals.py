"""Signals a drain handles in place (``Cell._drain`` in ``actors/_cell.py``): watch notices to a
plain ``def on_terminated``, timer ticks of a tracing system, unstashed items, test-kit calls.

For each, a synchronous actor handles it without a run task (`spawned_tasks` records every
task started for a cell), in the order the run task would (the control lane first), with the
same failures (the actor fails, supervision restarts it), the same counts and the
dead-letter invariant. An ``async def on_terminated`` still runs in a task: the checks that
it may suspend, that the actor carries on after it, and that a kill while it waits ends the
actor.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _support import WAIT, Flag, ThreadGate, wait_until
from test_tracing import Traces

import actors
from actors import Actor, ActorSystem, testing
from actors._ref import cell_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Iterator

pytestmark = pytest.mark.anyio


def in_task() -> bool:
    """Whether the caller runs in a task (a run task) rather than in a drain."""
    return asyncio.current_task() is not None


class Target(Actor[None]):
    def receive(self, message: None) -> None:
        return None


class Watch(actors.Request[None], frozen=True):
    ref: actors.ActorRef[Any]


class Unwatch(msgspec.Struct, frozen=True):
    ref: actors.ActorRef[Any]


class Mark(actors.Request[None], frozen=True):
    n: int


class Log(actors.Request[tuple[tuple[str, bool], ...]], frozen=True):
    """What the instance saw, in order, and whether each ran in a task."""


class Block(msgspec.Struct, frozen=True):
    gate: ThreadGate
    then_unwatch: actors.ActorRef[Any] | None = None


actors.register_sendable(ThreadGate)

WatcherMessage = Watch | Unwatch | Mark | Log | Block


class Watcher(Actor[WatcherMessage]):
    """A synchronous actor with a plain ``on_terminated``; fails on the notice of ``fatal``."""

    def __init__(self, fatal: str = "") -> None:
        self.fatal = fatal
        self.log: list[tuple[str, bool]] = []

    def receive(self, message: WatcherMessage) -> Any:
        match message:
            case Watch(ref):
                self.watch(ref)
            case Unwatch(ref):
                self.unwatch(ref)
            case Mark(n):
                self.log.append((f"mark {n}", in_task()))
            case Log():
                return tuple(self.log)
            case Block(gate, then_unwatch):
                gate.block()
                if then_unwatch is not None:
                    self.unwatch(then_unwatch)
        return None

    def on_terminated(self, event: actors.Terminated) -> Awaitable[None] | None:
        name = event.ref.path.rsplit("/", 1)[-1]
        self.log.append((f"ended {name}", in_task()))
        if name == self.fatal:
            raise ValueError(f"lost {name}")
        return None


class AsyncWatcher(Watcher):
    """An asynchronous actor with the same plain hook: its run task calls it in place."""

    async def receive(self, message: WatcherMessage) -> Any:
        return super().receive(message)


class Waiting(Watcher):
    """A synchronous actor whose ``async def on_terminated`` waits for ``release``."""

    def __init__(self, release: Flag) -> None:
        super().__init__()
        self.release = release

    async def on_terminated(self, event: actors.Terminated) -> None:
        name = event.ref.path.rsplit("/", 1)[-1]
        self.log.append((f"waiting {name}", in_task()))
        await self.release.wait()  # really suspends: set by the test later
        self.log.append((f"ended {name}", in_task()))


async def end_targets(system: ActorSystem, watcher: actors.ActorRef[Any], count: int) -> None:
    """Spawn ``count`` targets ``t<i>``, watch each, stop each, then mark: one at a time."""
    for i in range(count):
        target = await system.spawn(Target, name=f"t{i}", restart=actors.Restart.TEMPORARY)
        await watcher.ask(Watch(target))
        await target.stop()  # its notice is in the watcher's control lane once this returns
        await watcher.ask(Mark(i))  # behind it: the lane goes first


async def test_notices_to_a_plain_hook_are_handled_in_place_in_order(
    spawned_tasks: list[str],
) -> None:
    async with ActorSystem(workers=1) as system:
        watcher = await system.spawn(Watcher, name="watcher")
        with anyio.fail_after(WAIT):
            await end_targets(system, watcher, 5)
            log = await watcher.ask(Log())
            await wait_until(lambda: cell_of(watcher).task is None)
    assert log == tuple(
        entry for i in range(5) for entry in ((f"ended t{i}", False), (f"mark {i}", False))
    )
    assert "/user/watcher" not in spawned_tasks


async def test_an_async_actor_calls_a_plain_hook_in_its_run_task() -> None:
    async with ActorSystem(workers=1) as system:
        watcher = await system.spawn(AsyncWatcher)
        with anyio.fail_after(WAIT):
            await end_targets(system, watcher, 3)
            log = await watcher.ask(Log())
    assert log == tuple(
        entry for i in range(3) for entry in ((f"ended t{i}", True), (f"mark {i}", True))
    )


@pytest.mark.parametrize("kind", [Watcher, AsyncWatcher])
async def test_a_plain_hook_that_raises_fails_the_actor_and_it_is_restarted(
    kind: type[Actor[Any]],
) -> None:
    async with ActorSystem(workers=1) as system:
        watcher = await system.spawn(lambda: kind(fatal="t1"))
        cell = cell_of(watcher)
        with anyio.fail_after(WAIT):
            target = await system.spawn(Target, name="t0", restart=actors.Restart.TEMPORARY)
            await watcher.ask(Watch(target))
            await target.stop()
            fatal = await system.spawn(Target, name="t1", restart=actors.Restart.TEMPORARY)
            await watcher.ask(Watch(fatal))
            await fatal.stop()
            await wait_until(lambda: cell.incarnation == 1)
            # The fresh instance carries on with the messages behind the failure.
            await watcher.ask(Mark(9))
            log = await watcher.ask(Log())
    assert [entry for entry, _ in log] == ["mark 9"]
    assert cell.failed == 1
    assert cell.failed_items == 0  # a notice is not a mailbox item


class Bad(Watcher):
    def on_terminated(self, event: actors.Terminated) -> Any:
        return asyncio.sleep(0)  # an awaitable nobody awaits: refused


async def test_a_plain_hook_returning_an_awaitable_fails_the_actor() -> None:
    async with ActorSystem(workers=1) as system:
        watcher = await system.spawn(Bad, restart=actors.Restart.TEMPORARY)
        with anyio.fail_after(WAIT):
            target = await system.spawn(Target, restart=actors.Restart.TEMPORARY)
            await watcher.ask(Watch(target))
            await target.stop()
            reason = await watcher.join()
    assert isinstance(reason, actors.SyncHandlerError)


async def test_no_notice_after_unwatch_even_if_it_was_queued(spawned_tasks: list[str]) -> None:
    """The notice reaches the watcher's lane while it is busy; the handler then unwatches."""
    gate = ThreadGate()
    async with ActorSystem(workers=2, blocked_threshold=None) as system:
        watcher = await system.spawn(Watcher, name="watcher", placement=0)
        target = await system.spawn(
            Target, name="t0", placement=1, restart=actors.Restart.TEMPORARY
        )
        with anyio.fail_after(WAIT):
            await watcher.ask(Watch(target))
            await watcher.send(Block(gate, then_unwatch=target))
            await gate.entered.wait()
            await target.stop()  # on the other loop: the notice is queued now
            assert cell_of(watcher).mailbox.statistics().depth == 0  # in the control lane
            gate.open()
            await watcher.ask(Mark(1))
            log = await watcher.ask(Log())
    assert log == (("mark 1", False),)
    assert "/user/watcher" not in spawned_tasks


async def test_an_async_hook_may_suspend_and_the_actor_carries_on_after_it() -> None:
    release = Flag()
    async with ActorSystem(workers=1) as system:
        watcher = await system.spawn(lambda: Waiting(release))
        with anyio.fail_after(WAIT):
            target = await system.spawn(Target, name="t0", restart=actors.Restart.TEMPORARY)
            await watcher.ask(Watch(target))
            await target.stop()
            await watcher.send(Mark(1))  # waits behind the suspended hook
            await wait_until(lambda: cell_of(watcher).handling is not Mark)
            release.set()
            await watcher.ask(Mark(2))
            log = await watcher.ask(Log())
    # The hook ran in a run task, which then went on with the marks queued meanwhile.
    assert [entry for entry, _ in log] == ["waiting t0", "ended t0", "mark 1", "mark 2"]
    assert log[0][1]
    assert log[1][1]


async def test_a_kill_while_an_async_hook_waits_ends_the_actor() -> None:
    never = Flag()
    async with ActorSystem(workers=1) as system:
        watcher = await system.spawn(lambda: Waiting(never), restart=actors.Restart.TEMPORARY)
        cell = cell_of(watcher)
        with anyio.fail_after(WAIT):
            target = await system.spawn(Target, name="t0", restart=actors.Restart.TEMPORARY)
            await watcher.ask(Watch(target))
            await target.stop()
            await wait_until(lambda: isinstance(cell.task, asyncio.Task))
            await watcher.send(Mark(1))  # left behind: a dead letter
            before = system.dead_letters.count
            cell.kill()
            assert await watcher.join() is None
    assert cell.status == "stopped"
    assert system.dead_letters.count - before == 1


# -- test-kit calls --------------------------------------------------------------------------


class Note(msgspec.Struct, frozen=True):
    n: int


class Fail(msgspec.Struct, frozen=True):
    pass


class Open(msgspec.Struct, frozen=True):
    pass


class Total(actors.Request[tuple[int, ...]], frozen=True):
    pass


Message = Note | Fail | Open | Total


class Keeper(Actor[Message]):
    """Stashes notes and totals until `Open`, then replays them; fails on a replayed `Fail`."""

    stash_capacity = 100

    def __init__(self) -> None:
        self.open = False
        self.seen: list[int] = []
        self.tasks: list[bool] = []

    def receive(self, message: Message) -> Any:
        self.tasks.append(in_task())
        match message:
            case Open():
                self.open = True
                self.unstash_all()
            case _ if not self.open:
                self.stash(message)
            case Note(n):
                self.seen.append(n)
            case Fail():
                raise ValueError("replayed a failure")
            case Total():
                return tuple(self.seen)
        return None


async def test_a_call_is_handled_in_place_between_messages(spawned_tasks: list[str]) -> None:
    async with ActorSystem(workers=1) as system:
        keeper = await system.spawn(Keeper, name="keeper")
        await keeper.send(Open())
        with anyio.fail_after(WAIT):
            for n in range(3):
                keeper.try_send(Note(n))
                assert await testing.inspect(keeper, lambda k: in_task()) is False
            # A call goes before the messages still queued: the ask, behind the Notes, makes
            # sure all three were handled before the next call looks.
            assert await keeper.ask(Total()) == (0, 1, 2)
            seen = await testing.inspect(keeper, lambda k: tuple(k.seen), kind=Keeper)
            with pytest.raises(ZeroDivisionError):  # the caller's mistake: the actor lives on
                await testing.inspect(keeper, lambda k: 1 // 0)
            assert await keeper.ask(Total()) == (0, 1, 2)
    assert seen == (0, 1, 2)
    assert "/user/keeper" not in spawned_tasks


async def test_a_call_goes_before_queued_messages() -> None:
    gate = ThreadGate()
    seen: list[tuple[int, ...]] = []
    async with ActorSystem(workers=2, blocked_threshold=None) as system:
        blocker = await system.spawn(Watcher, placement=0)
        keeper = await system.spawn(Keeper, placement=0)
        await keeper.send(Open())
        with anyio.fail_after(WAIT):
            await blocker.send(Block(gate))
            await gate.entered.wait()  # loop 0 is blocked: what follows queues up
            for n in range(3):
                await keeper.send(Note(n))
            async with anyio.create_task_group() as group:

                async def look() -> None:
                    seen.append(await testing.inspect(keeper, lambda k: tuple(k.seen)))

                group.start_soon(look)
                await wait_until(lambda: len(cell_of(keeper).mailbox.consumer_view()[1]) == 1)
                gate.open()
            assert await keeper.ask(Total()) == (0, 1, 2)
    assert seen == [()]  # the control lane went first


# -- unstashed items -------------------------------------------------------------------------


async def test_unstashed_items_are_replayed_in_place_and_counted_once(
    spawned_tasks: list[str],
) -> None:
    async with ActorSystem(workers=1) as system:
        keeper = await system.spawn(Keeper, name="keeper")
        cell = cell_of(keeper)
        with anyio.fail_after(WAIT):
            for n in range(5):
                await keeper.send(Note(n))
            await keeper.send(Open())
            assert await keeper.ask(Total()) == (0, 1, 2, 3, 4)
            tasks = await testing.inspect(keeper, lambda k: tuple(k.tasks), kind=Keeper)
            await wait_until(lambda: cell.task is None)
    assert not any(tasks)
    assert "/user/keeper" not in spawned_tasks
    # Five notes (each taken once, replayed once), Open and the ask: seven items.
    assert cell.dequeued == 7
    assert cell.processed() == 7


async def test_an_unstashed_ask_is_answered_in_place(spawned_tasks: list[str]) -> None:
    answers: list[tuple[int, ...]] = []
    async with ActorSystem(workers=1) as system:
        keeper = await system.spawn(Keeper, name="keeper")
        with anyio.fail_after(WAIT):
            await keeper.send(Note(1))
            async with anyio.create_task_group() as group:

                async def ask() -> None:
                    answers.append(await keeper.ask(Total()))

                group.start_soon(ask)
                await wait_until(
                    lambda: (b := cell_of(keeper).behaviour) is not None and len(b.stash) == 2
                )
                await keeper.send(Open())
    assert answers == [(1,)]
    assert "/user/keeper" not in spawned_tasks


async def test_a_failing_replay_fails_the_actor_and_the_rest_become_dead_letters() -> None:
    """processed + dead letters == sent: the stash's remainder is accounted for once."""
    async with ActorSystem(workers=1) as system:
        keeper = await system.spawn(Keeper, restart=actors.Restart.TEMPORARY)
        cell = cell_of(keeper)
        before = system.dead_letters.count
        with anyio.fail_after(WAIT):
            for n in range(3):
                await keeper.send(Note(n))
            await keeper.send(Fail())
            for n in range(3, 6):
                await keeper.send(Note(n))
            await keeper.send(Open())
            reason = await keeper.join()
    assert isinstance(reason, ValueError)
    dead = system.dead_letters.count - before
    handled = 3 + 1  # the notes before the failure, and Open
    assert handled + 1 + dead == 8  # + the failure itself
    assert dead == 3
    assert cell.failed == 1
    assert cell.failed_items == 1
    # Eight items taken, each counted once when first taken (a stash returns normally);
    # the replay that failed is not processed: the counts a run task's replay gives too.
    assert cell.dequeued == 8
    assert cell.processed() == 7


# -- traced timer ticks ----------------------------------------------------------------------


@pytest.fixture
def traces() -> Iterator[Traces]:
    found = Traces()
    yield found
    found.provider.shutdown()


class Beat(msgspec.Struct, frozen=True):
    pass


class StartBeats(msgspec.Struct, frozen=True):
    fail_at: int = 0


class Beats(actors.Request[tuple[bool, ...]], frozen=True):
    pass


class Heart(Actor[Beat | StartBeats | Beats]):
    def __init__(self) -> None:
        self.beats: list[bool] = []
        self.fail_at = 0

    def receive(self, message: Beat | StartBeats | Beats) -> Any:
        match message:
            case StartBeats(fail_at):
                self.fail_at = fail_at
                self.send_every(1.0, Beat())
            case Beat():
                self.beats.append(in_task())
                if len(self.beats) == self.fail_at:
                    raise ValueError("a bad beat")
            case Beats():
                return tuple(self.beats)
        return None


async def test_traced_ticks_are_handled_in_place_with_their_spans(
    traces: Traces, spawned_tasks: list[str]
) -> None:
    clock = actors.ManualClock()
    async with ActorSystem(workers=1, clock=clock, tracing=traces.provider) as system:
        heart = await system.spawn(Heart, name="heart")
        with anyio.fail_after(WAIT):
            with traces.tracer.start_as_current_span("request"):
                await heart.send(StartBeats())
            await heart.ask(Beats())
            for _ in range(3):
                await testing.advance(system, 1.0)
            beats = await heart.ask(Beats())
            await wait_until(lambda: len(traces.named("Beat")) == 3)
    assert beats == (False, False, False)
    assert "/user/heart" not in spawned_tasks
    (start,) = traces.named("StartBeats")
    assert start.context is not None
    for beat in traces.named("Beat"):
        assert beat.parent is None  # a trace root of its own...
        assert [link.context.span_id for link in beat.links] == [start.context.span_id]
        assert dict(beat.attributes or {})["actors.outcome"] == "handled"


async def test_a_traced_tick_that_fails_fails_the_actor_and_marks_its_span(
    traces: Traces,
) -> None:
    clock = actors.ManualClock()
    async with ActorSystem(workers=1, clock=clock, tracing=traces.provider) as system:
        heart = await system.spawn(Heart)
        cell = cell_of(heart)
        with anyio.fail_after(WAIT):
            await heart.send(StartBeats(fail_at=2))
            await heart.ask(Beats())
            await testing.advance(system, 1.0)
            await testing.advance(system, 1.0)  # the failing beat: restarted, no timer now
            await wait_until(lambda: cell.incarnation == 1)
            assert await heart.ask(Beats()) == ()
    outcomes = [dict(span.attributes or {})["actors.outcome"] for span in traces.named("Beat")]
    assert sorted(map(str, outcomes)) == ["failed", "handled"]
    assert cell.failed == cell.failed_items == 1
