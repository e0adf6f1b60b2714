"""Synchronous handlers (issue 17): ``def receive`` is called in place, with every guarantee
of an ``async def`` one: replies, failures and supervision, timers, watch, the fairness
budget, metrics, and senders on every kind of thread and loop."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import threading
import types
import warnings
from typing import Any

import anyio
import anyio.to_thread
import msgspec
import pytest
from _support import WAIT, Countdown, Flag, ThreadGate

import actors
from actors import Actor, ActorSystem, ManualClock

pytestmark = pytest.mark.anyio


class Add(msgspec.Struct, frozen=True):
    n: int = 1


class Total(actors.Request[int], frozen=True):
    pass


class Boom(msgspec.Struct, frozen=True):
    pass


class Quit(msgspec.Struct, frozen=True):
    pass


class Forward(msgspec.Struct, frozen=True):
    to: actors.ActorRef[Add]


class SpawnChild(actors.Request[actors.ActorRef[Add | Total]], frozen=True):
    name: str


class SpawnAwaiting(msgspec.Struct, frozen=True):
    pass


class After(msgspec.Struct, frozen=True):
    delay: float


class Where(actors.Request[tuple[bool, bool]], frozen=True):
    """Ask whether the handler runs in a task, and whether it counts as the actor's own run."""


Msg = Add | Total | Boom | Quit | Forward | SpawnChild | SpawnAwaiting | After | Where


class Counter(Actor[Msg]):
    """Every handler here is synchronous."""

    def __init__(self, seen: Countdown | None = None) -> None:
        self.total = 0
        self.seen = seen

    def receive(self, message: Msg) -> Any:
        match message:
            case Add(n):
                self.total += n
                if self.seen is not None:
                    self.seen.tick()
            case Total():
                return self.total
            case Boom():
                raise ValueError("boom")
            case Quit():
                self.stop()
            case Forward(to):
                to.try_send(Add(self.total))
            case SpawnChild(name):
                return self.spawn_soon(Counter, name=name)
            case SpawnAwaiting():
                return self.spawn(Counter)  # not awaited: refused, and closed
            case After(delay):
                self.send_after(delay, Add(100))
            case Where():
                task = asyncio.current_task()
                return task is not None, self._actors_cell.in_handler()
        return None


def test_a_sync_receive_is_detected_once_per_class() -> None:
    class Async(Actor[Add]):
        async def receive(self, message: Add) -> None:
            pass

    class Inherits(Counter):
        pass

    assert Counter.__actors_sync__
    assert Inherits.__actors_sync__
    assert not Async.__actors_sync__


def _actor_class(**namespace: object) -> type[Actor[Any]]:
    return types.new_class("Defined", (Actor[Any],), exec_body=lambda ns: ns.update(namespace))


@pytest.mark.parametrize("value", [5, "receive", None])
def test_a_receive_that_is_not_callable_is_refused_at_class_creation(value: object) -> None:
    with pytest.raises(TypeError, match=r"Defined\.receive is .*not a handler.*def receive"):
        _actor_class(receive=value)


def test_callable_objects_are_sync_or_async_by_their_call() -> None:
    class Sync:
        def __call__(self, actor: object, message: object) -> None:
            pass

    class Async:
        async def __call__(self, actor: object, message: object) -> None:
            pass

    async def handler(self: object, message: object) -> None:
        pass

    assert _actor_class(receive=Sync()).__actors_sync__
    assert not _actor_class(receive=Async()).__actors_sync__


async def test_tells_asks_and_try_send_onward() -> None:
    async with ActorSystem(workers=2) as system:
        a = await system.spawn(Counter)
        b = await system.spawn(Counter)
        with anyio.fail_after(WAIT):
            for _ in range(10):
                await a.send(Add(2))
            assert await a.ask(Total()) == 20
            await a.send(Forward(b))
            await a.ask(Total())  # a has forwarded by now: b's Add is queued before this ask
            assert await b.ask(Total()) == 20
            # Called in place by a drain, a loop callback: in no task, yet "in the handler".
            assert await a.ask(Where()) == (False, True)


async def test_senders_on_every_thread_and_loop() -> None:
    seen = Countdown(4 * 50)
    async with ActorSystem(workers=2) as system:
        ref = await system.spawn(lambda: Counter(seen), placement=0)
        other = await system.spawn(Counter, placement=1)

        def from_thread() -> None:
            for _ in range(50):
                ref.blocking_send(Add())

        with anyio.fail_after(WAIT):
            for _ in range(50):
                await ref.send(Add())  # the test's own loop
            for _ in range(50):
                ref.try_send(Add())
            await anyio.to_thread.run_sync(from_thread)
            for _ in range(50):
                await other.send(Forward(ref))  # another worker loop, adding its total (0)
            await seen.done.wait()
            assert await ref.ask(Total()) == 150
            assert await anyio.to_thread.run_sync(ref.blocking_ask, Total()) == 150


async def test_a_raising_sync_handler_fails_the_actor_and_is_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL)
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Counter)
        with anyio.fail_after(WAIT):
            await ref.send(Add(5))
            with pytest.raises(ValueError, match="boom"):
                await ref.ask(Boom())
            assert await ref.ask(Total()) == 0  # a fresh instance
            metrics = next(a for a in system.metrics().actors if a.path == ref.path)
            assert metrics.failed == 1
            assert metrics.restarts == 1


async def test_a_raising_sync_tell_fails_the_actor() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Counter, restart=actors.Restart.TEMPORARY)
        with anyio.fail_after(WAIT):
            await ref.send(Boom())
            reason = await ref.join()
        assert isinstance(reason, ValueError)


async def test_a_sync_handler_stops_itself_after_the_queue() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Counter, restart=actors.Restart.TRANSIENT)
        with anyio.fail_after(WAIT):
            await ref.send(Quit())
            assert await ref.join() is None


async def test_spawn_soon_returns_a_ref_at_once() -> None:
    async with ActorSystem(workers=2) as system:
        parent = await system.spawn(Counter, name="parent")
        with anyio.fail_after(WAIT):
            child = await parent.ask(SpawnChild("kid"))
            assert child.path == "/user/parent/kid"
            await child.send(Add(3))
            assert await child.ask(Total()) == 3
            with pytest.raises(actors.DuplicateName):
                await parent.ask(SpawnChild("kid"))


class Starting(Actor[Add | Total]):
    """A child with an on_start: spawn_soon returns before it has run."""

    def __init__(self, release: Flag) -> None:
        self.release = release
        self.total = 0

    async def on_start(self) -> None:
        await self.release.wait()
        self.total = 10

    def receive(self, message: Add | Total) -> int | None:
        if isinstance(message, Add):
            self.total += message.n
            return None
        return self.total


class FailingStart(Actor[Add]):
    async def on_start(self) -> None:
        raise LookupError("no database")

    def receive(self, message: Add) -> None:
        pass


class Nursery(Actor[SpawnChild | Quit]):
    def __init__(self, release: Flag) -> None:
        self.release = release

    def receive(self, message: SpawnChild | Quit) -> Any:
        if isinstance(message, Quit):
            return self.spawn_soon(FailingStart, name="failing")
        return self.spawn_soon(lambda: Starting(self.release), name=message.name)


async def test_spawn_soon_does_not_wait_for_on_start(caplog: pytest.LogCaptureFixture) -> None:
    release = Flag()
    async with ActorSystem(workers=1) as system:
        nursery = await system.spawn(lambda: Nursery(release))
        with anyio.fail_after(WAIT):
            child = await nursery.ask(SpawnChild("slow"))  # on_start still waits
            await child.send(Add(1))  # queued behind the start-up
            release.set()
            assert await child.ask(Total()) == 11
            failing: actors.ActorRef[Any] = await nursery.ask(Quit())
            reason = await failing.join()
    assert isinstance(reason, LookupError)
    assert any(r.getMessage() == f"actor {failing.path} failed to start" for r in caplog.records)


async def test_a_sync_handler_returning_a_coroutine_is_refused_and_closed() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Counter, restart=actors.Restart.TEMPORARY)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "coroutine ... was never awaited" would fail
            with anyio.fail_after(WAIT):
                await ref.send(SpawnAwaiting())
                reason = await ref.join()
            gc.collect()
        assert [cell.path for cell in system.cells()] == ["/user"]  # no child was spawned
    assert isinstance(reason, actors.SyncHandlerError)
    assert isinstance(reason, actors.ActorError)
    assert "spawn_soon instead of spawn" in str(reason)


class SecretlyAsync(Actor[Total]):
    def receive(self, message: Total) -> Any:
        return self._reply()

    async def _reply(self) -> int:
        return 1


async def test_an_asked_sync_handler_returning_an_awaitable_fails_the_asker_too() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(SecretlyAsync)
        with anyio.fail_after(WAIT), pytest.raises(actors.SyncHandlerError, match="async def"):
            await ref.ask(Total())


def test_spawn_soon_and_become_refuse_callers_outside_the_actor() -> None:
    async def main() -> None:
        async with ActorSystem(workers=1) as system:
            ref = await system.spawn(Counter)
            cell = actors._ref.cell_of(ref)  # pyright: ignore[reportPrivateUsage]
            instance = cell.instance
            assert instance is not None
            with pytest.raises(RuntimeError, match=r"spawn_soon\(\) of actor .* own handlers"):
                instance.spawn_soon(Counter)
            with pytest.raises(RuntimeError, match=r"become\(\) of actor"):
                instance.become(instance.receive)

    asyncio.run(main())


async def test_timers_reach_a_sync_handler() -> None:
    clock = ManualClock()
    async with ActorSystem(workers=1, clock=clock) as system:
        ref = await system.spawn(Counter)
        with anyio.fail_after(WAIT):
            await ref.ask(Total())
            await ref.send(After(1.0))
            assert await ref.ask(Total()) == 0
            clock.advance(1.0)
            while await ref.ask(Total()) != 100:  # noqa: ASYNC110  # the tick has no event
                await anyio.sleep(0.001)


class Watcher(Actor[Forward | Total]):
    def __init__(self, ended: Flag) -> None:
        self.ended = ended

    def receive(self, message: Forward | Total) -> None:
        if isinstance(message, Forward):
            self.watch(message.to)

    async def on_terminated(self, event: actors.Terminated) -> None:
        self.ended.set()


async def test_a_sync_handler_can_watch() -> None:
    ended = Flag()
    async with ActorSystem(workers=1) as system:
        watcher = await system.spawn(lambda: Watcher(ended))
        target = await system.spawn(Counter)
        with anyio.fail_after(WAIT):
            await watcher.ask(Forward(target))
            await target.stop()
            await ended.wait()


class Block(msgspec.Struct, frozen=True):
    gate: ThreadGate


class Note(msgspec.Struct, frozen=True):
    n: int


class Noter(Actor[Note | Block]):
    def __init__(self, log: list[int]) -> None:
        self.log = log

    def receive(self, message: Note | Block) -> None:
        if isinstance(message, Block):
            message.gate.block()
        else:
            self.log.append(message.n)


actors.register_sendable(ThreadGate)


async def test_the_fairness_budget_holds_for_sync_handlers() -> None:
    """Two actors on one loop with full queues take turns of ``throughput`` messages."""
    log: list[int] = []
    async with ActorSystem(workers=1, throughput=4, blocked_threshold=None) as system:
        first = await system.spawn(lambda: Noter(log), placement=0)
        second = await system.spawn(lambda: Noter(log), placement=0)
        gate = ThreadGate()
        with anyio.fail_after(WAIT):
            await first.send(Block(gate))
            await gate.entered.wait()  # the loop is held: both queues fill up meanwhile
            for _ in range(12):
                await first.send(Note(1))
                await second.send(Note(2))
            gate.open()
            while len(log) < 24:  # noqa: ASYNC110  # no event for "both drained"
                await anyio.sleep(0.001)
    # Never more than a budget's worth of one actor in a row (after the first, blocked turn).
    runs: list[int] = []
    for n in log:
        if runs and runs[-1] == n:
            continue
        runs.append(n)
    assert len(runs) >= 5, log


async def test_the_watchdog_names_a_blocking_sync_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="actors")
    async with ActorSystem(workers=1, blocked_threshold=0.05) as system:
        ref = await system.spawn(lambda: Noter([]), name="blocker")
        gate = ThreadGate()
        with anyio.fail_after(WAIT):
            await ref.send(Block(gate))
            await gate.entered.wait()
            while "blocker" not in caplog.text:  # noqa: ASYNC110  # the log has no event
                await anyio.sleep(0.01)
            gate.open()
    assert "Block" in caplog.text


def test_inspect_sees_the_base_receive_as_sync() -> None:
    assert not inspect.iscoroutinefunction(Actor.receive)
    assert threading.current_thread() is threading.main_thread()


class SpawnsInInit(Actor[Add]):
    def __init__(self) -> None:
        self.child = self.spawn_soon(Counter)  # the parent is not built yet: refused

    def receive(self, message: Add) -> None:
        pass


class BecomesInInit(Actor[Add | Total]):
    def __init__(self) -> None:
        self.total = 0
        self.become(self.doubling)  # allowed: the first message already goes there

    def receive(self, message: Add | Total) -> int:
        raise AssertionError("replaced in __init__")

    def doubling(self, message: Add | Total) -> int | None:
        if isinstance(message, Total):
            return self.total
        self.total += 2 * message.n
        return None


async def test_spawn_soon_is_refused_in_init_and_become_is_not() -> None:
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            with pytest.raises(RuntimeError, match=r"spawn_soon\(\) of actor"):
                await system.spawn(SpawnsInInit)
            ref = await system.spawn(BecomesInInit)
            await ref.send(Add(3))
            assert await ref.ask(Total()) == 6
