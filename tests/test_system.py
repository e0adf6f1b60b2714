"""`ActorSystem`: worker threads, placement, embedding, shutdown, and scheduling on the loops.

Catalogue IDs (RELIABILITY.md) appear in test names where a test implements one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from _support import (
    WAIT,
    Count,
    Countdown,
    Flag,
    Hold,
    Recorder,
    Seen,
    ThreadGate,
    Tick,
    park,
    wait_until,
)

import actors
import actors._runtime
from actors import Actor, ActorRef, ActorSystem
from actors._parking import PARK_IDLE

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio


def actor_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("actors-")}


def names(threads: set[threading.Thread]) -> set[str]:
    return {t.name for t in threads}


class Where(actors.Request[tuple[str, int]], frozen=True):
    """Ask an actor for the name and id of the thread its handler runs on."""


class Locator(Actor[Where]):
    async def receive(self, message: Where) -> tuple[str, int]:
        thread = threading.current_thread()
        return (thread.name, threading.get_ident())


class Block(msgspec.Struct, frozen=True):
    """Park the receiving `Blocker`'s whole thread on its gate."""


class Blocker(Actor[Block]):
    def __init__(self, gate: ThreadGate) -> None:
        self.gate = gate

    async def receive(self, message: Block) -> None:
        self.gate.block()  # a synchronous wait: nothing else runs on this loop meanwhile


class Journal(Actor[Tick | Hold]):
    """Appends each Tick's n, then "stop:<name>" from on_stop, to a list the test owns."""

    def __init__(self, log: list[object]) -> None:
        self.log = log

    async def receive(self, message: Tick | Hold) -> None:
        match message:
            case Tick(n):
                self.log.append(n)
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()

    async def on_stop(self) -> None:
        self.log.append(f"stop:{self.name}")


class SetOnStop(Actor[Tick]):
    """Sets a flag from on_stop: a way to act at a known point of the shutdown sequence."""

    def __init__(self, flag: Flag) -> None:
        self.flag = flag

    async def receive(self, message: Tick) -> None:
        pass

    async def on_stop(self) -> None:
        self.flag.set()


# -- worker threads and placement --------------------------------------------------------------


async def test_workers_are_threads_named_after_the_system() -> None:
    before = actor_threads()
    async with ActorSystem(workers=3) as system:
        assert system.workers == 3
        workers = {f"actors-worker-{i}" for i in range(3)}
        assert names(actor_threads() - before) == {*workers, "actors-watchdog"}
        async with ActorSystem(workers=1, name="billing"):
            assert "actors-billing-worker-0" in names(actor_threads() - before)
            assert "actors-billing-watchdog" in names(actor_threads() - before)
    assert actor_threads() == before


async def test_round_robin_placement_uses_every_worker() -> None:
    async with ActorSystem(workers=2) as system:
        refs = [await system.spawn(Locator) for _ in range(4)]
        names = [(await ref.ask(Where()))[0] for ref in refs]
        assert sorted(names) == ["actors-worker-0"] * 2 + ["actors-worker-1"] * 2
        assert names[0] != names[1]


async def test_placement_index_pins_the_actor_to_a_worker() -> None:
    async with ActorSystem(workers=3) as system:
        for _ in range(3):
            ref = await system.spawn(Locator, placement=2)
            assert (await ref.ask(Where()))[0] == "actors-worker-2"


async def test_host_placement_runs_on_the_host_thread(anyio_backend_name: str) -> None:
    async with ActorSystem(workers=1) as system:
        if anyio_backend_name == "trio":
            with pytest.raises(ValueError, match="host"):
                await system.spawn(Locator, placement="host")
            return
        ref = await system.spawn(Locator, placement="host")
        assert await ref.ask(Where()) == (threading.current_thread().name, threading.get_ident())


@pytest.mark.parametrize("placement", [-1, 2, 99, "elsewhere", "HOST", True, 1.0])
async def test_bad_placement_raises_value_error(placement: Any) -> None:
    async with ActorSystem(workers=2) as system:
        with pytest.raises(ValueError, match="placement"):
            await system.spawn(Locator, placement=placement)
        # Nothing was registered: the same name is still free.
        await system.spawn(Locator, name="Locator-free")


async def test_actors_on_different_workers_really_run_in_parallel_threads() -> None:
    """Worker 0's thread is blocked outright, yet the actor on worker 1 keeps answering."""
    gate = ThreadGate()
    async with ActorSystem(workers=2) as system:
        blocker = await system.spawn(lambda: Blocker(gate), placement=0)
        other = await system.spawn(Locator, placement=1)
        try:
            with anyio.fail_after(WAIT):
                await blocker.send(Block())
                await gate.entered.wait()
                name, ident = await other.ask(Where())
                assert name == "actors-worker-1"
                assert ident not in (threading.get_ident(), 0)
        finally:
            gate.open()


# -- embedding ---------------------------------------------------------------------------------


async def test_embedded_refs_are_used_from_many_host_tasks() -> None:
    async with ActorSystem(workers=2) as system:
        refs = [await system.spawn(Recorder, capacity=4) for _ in range(3)]

        async def client(ref: ActorRef[Tick | Count | Seen | Hold], base: int) -> None:
            for n in range(base, base + 50):
                await ref.send(Tick(n))
            await ref.ask(Count())

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for i in range(12):
                    tg.start_soon(client, refs[i % 3], i * 1000)
            for i, ref in enumerate(refs):
                seen = await ref.ask(Seen())
                assert len(seen) == 4 * 50
                for client_id in range(i, 12, 3):  # each client's ticks arrived in order
                    mine = [n for n in seen if n // 1000 == client_id]
                    assert mine == list(range(client_id * 1000, client_id * 1000 + 50))


# -- shutdown ----------------------------------------------------------------------------------


async def test_F14_shutdown_drains_accepted_messages_then_runs_on_stop_once() -> None:
    log: list[object] = []
    release = Flag()
    count = 50
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=2) as system:
            ref = await system.spawn(lambda: Journal(log), name="drained", capacity=count)
            entered = Flag()
            await ref.send(Hold(release, entered))
            await entered.wait()
            for n in range(count):
                ref.try_send(Tick(n))
            # Spawned last, stopped during shutdown: it releases the parked handler then.
            await system.spawn(lambda: SetOnStop(release))
        assert not ref.is_alive
    assert log == [*range(count), "stop:drained"]


async def test_shutdown_stops_actors_in_reverse_spawn_order() -> None:
    log: list[object] = []
    async with ActorSystem(workers=2) as system:
        for name in ("a", "b", "c"):
            await system.spawn(lambda: Journal(log), name=name)
    assert log == ["stop:c", "stop:b", "stop:a"]


class Stuck(Actor[Hold | Count]):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def receive(self, message: Hold | Count) -> int:
        if isinstance(message, Hold):
            if message.entered is not None:
                message.entered.set()
            try:
                await message.release.wait()
            except asyncio.CancelledError:
                self.log.append("cancelled")
                raise
        return 0

    async def on_stop(self) -> None:
        self.log.append("stop")


async def test_F7_drain_timeout_cancels_a_stuck_handler_and_shutdown_completes() -> None:
    log: list[str] = []
    never = Flag()
    outcomes: list[str] = []
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            async with ActorSystem(workers=1, drain_timeout=0.05) as system:
                ref = await system.spawn(lambda: Stuck(log))
                entered = Flag()
                await ref.send(Hold(never, entered))
                await entered.wait()

                async def queued_ask() -> None:
                    try:
                        await ref.ask(Count(), timeout=None)
                    except actors.ActorStopped:
                        outcomes.append("stopped")

                tg.start_soon(queued_ask)  # accepted, but behind a handler that never ends
            assert log == ["cancelled", "stop"]
            assert not ref.is_alive
    assert outcomes == ["stopped"]


async def test_ask_in_flight_when_the_drain_timeout_kills_the_actor_fails_with_actor_stopped() -> (
    None
):
    """Regression: the asker of the killed handler was never answered; it hung until timeout."""
    never, entered = Flag(), Flag()
    outcomes: list[str] = []
    with anyio.fail_after(2):
        async with (
            anyio.create_task_group() as tg,
            ActorSystem(workers=1, drain_timeout=0.05) as system,
        ):
            ref = await system.spawn(lambda: Stuck([]))

            async def asker() -> None:
                try:
                    await ref.ask(Hold(never, entered), timeout=None)
                except actors.ActorStopped:
                    outcomes.append("stopped")

            tg.start_soon(asker)
            await entered.wait()
    assert outcomes == ["stopped"]


class Litterbug(Actor[Count]):
    """Leaves a task of its own running on its loop."""

    def __init__(self, cancelled: Flag) -> None:
        self.cancelled = cancelled

    async def on_start(self) -> None:
        self.stray = asyncio.get_running_loop().create_task(self.forever())

    async def forever(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()

    async def receive(self, message: Count) -> int:
        return 0


async def test_no_tasks_are_left_behind(anyio_backend_name: str) -> None:
    cancelled = Flag()
    host_tasks_before = set() if anyio_backend_name == "trio" else asyncio.all_tasks()
    async with ActorSystem(workers=2) as system:
        refs: list[ActorRef[Any]] = [await system.spawn(Recorder) for _ in range(3)]
        refs.append(await system.spawn(lambda: Litterbug(cancelled)))
        if anyio_backend_name != "trio":
            refs.append(await system.spawn(Recorder, placement="host"))
        for ref in refs:
            await ref.ask(Count())
    # The actors' own tasks are gone, and so is the task an actor left on a worker loop.
    assert all(ref._cell.task is None for ref in refs)  # pyright: ignore[reportPrivateUsage]
    assert cancelled.is_set()
    # ... and the worker loops are closed, not merely stopped.
    workers = system._workers  # pyright: ignore[reportPrivateUsage]
    assert all(worker.loop.is_closed() for worker in workers)
    if anyio_backend_name != "trio":
        assert asyncio.all_tasks() == host_tasks_before


async def test_ref_stop_is_graceful_and_final() -> None:
    log: list[object] = []
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: Journal(log), name="finite", capacity=3)
        with anyio.fail_after(WAIT):
            release = await park(ref)
            for n in range(3):
                ref.try_send(Tick(n))  # now full
            async with anyio.create_task_group() as tg:
                tg.start_soon(ref.stop)
                # Refused at once while it drains: the mailbox is closed to new messages.
                while True:
                    try:
                        ref.try_send(Tick(99))
                    except actors.MailboxFull:  # the stop request has not landed yet
                        await anyio.lowlevel.checkpoint()
                    except actors.ActorStopped:
                        break
                assert ref.is_alive  # still draining, parked
                release.set()
            assert log == [0, 1, 2, "stop:finite"]
            assert not ref.is_alive
            await ref.stop()  # stopping again returns at once
            assert await ref.join() is None
            with pytest.raises(actors.ActorStopped, match="/user/finite"):
                await ref.send(Tick(4))
    assert log == [0, 1, 2, "stop:finite"]  # on_stop ran once, not again at shutdown


async def test_spawn_requires_a_running_system() -> None:
    system = ActorSystem(workers=1)
    with pytest.raises(actors.SystemNotRunning):
        await system.spawn(Recorder)
    async with system:
        await system.spawn(Recorder)
    with pytest.raises(actors.SystemNotRunning, match="actors"):
        await system.spawn(Recorder)
    with pytest.raises(actors.SystemNotRunning):
        await system.start()
    await system.shutdown()  # idempotent


async def test_duplicate_name_is_refused_until_the_actor_stops() -> None:
    async with ActorSystem(workers=1) as system:
        first = await system.spawn(Recorder, name="unique")
        with pytest.raises(actors.DuplicateName, match="unique") as caught:
            await system.spawn(Recorder, name="unique")
        assert isinstance(caught.value, ValueError)
        await first.stop()
        second = await system.spawn(Recorder, name="unique")
        assert second != first
        assert second.path == "/user/unique"


@pytest.mark.parametrize("name", ["", "a/b"])
async def test_bad_names_are_refused(name: str) -> None:
    async with ActorSystem(workers=1) as system:
        with pytest.raises(ValueError, match="name"):
            await system.spawn(Recorder, name=name)


@pytest.mark.parametrize(
    "options", [{"workers": 0}, {"capacity": 0}, {"throughput": 0}], ids=lambda o: str(o)
)
async def test_bad_system_options_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least"):
        ActorSystem(**options)


async def test_spawn_capacity_below_one_is_refused() -> None:
    async with ActorSystem(workers=1) as system:
        with pytest.raises(ValueError, match="capacity"):
            await system.spawn(Recorder, capacity=0)


# -- a cancelled host --------------------------------------------------------------------------


async def test_cancelled_host_still_shuts_down_cleanly() -> None:
    log: list[object] = []
    release = Flag()
    before = actor_threads()
    with anyio.fail_after(WAIT):
        with anyio.CancelScope() as scope:
            async with ActorSystem(workers=2) as system:
                ref = await system.spawn(lambda: Journal(log), name="busy", capacity=8)
                entered = Flag()
                await ref.send(Hold(release, entered))
                await entered.wait()
                for n in range(8):
                    ref.try_send(Tick(n))
                await system.spawn(lambda: SetOnStop(release))
                scope.cancel()
                await anyio.sleep_forever()
        assert scope.cancelled_caught
    assert log == [*range(8), "stop:busy"]
    assert actor_threads() == before


async def test_fail_after_expiring_inside_the_system_block_still_shuts_down_cleanly() -> None:
    log: list[object] = []
    before = actor_threads()
    with pytest.raises(TimeoutError):  # noqa: PT012
        with anyio.fail_after(WAIT) as scope:
            async with ActorSystem(workers=2) as system:
                await system.spawn(lambda: Journal(log), name="timed")
                scope.deadline = anyio.current_time()  # expire now
                await anyio.sleep_forever()
    assert log == ["stop:timed"]
    assert actor_threads() == before


async def test_cancelled_while_starting_leaves_no_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: a worker whose start was cancelled kept running (a leaked thread).

    The worker threads are held back at loop creation so that the cancellation lands while
    `start` waits for them.
    """
    real_new_event_loop = actors._runtime.new_event_loop

    def slow_new_event_loop(use_uvloop: bool | None) -> asyncio.AbstractEventLoop:
        time.sleep(0.2)  # long enough for the cancellation to land while start() waits
        return real_new_event_loop(use_uvloop)

    monkeypatch.setattr(actors._runtime, "new_event_loop", slow_new_event_loop)
    before = actor_threads()
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with ActorSystem(workers=2):
            pytest.fail("the body of a cancelled start must not run")
    assert scope.cancelled_caught
    for thread in actor_threads() - before:
        thread.join(1.0)  # a worker told to stop is gone well within this
    assert actor_threads() == before, "a worker started by the cancelled start is still running"


# -- scheduling on a loop ----------------------------------------------------------------------


class Inspect(actors.Request[bool], frozen=True):
    """Ask, from the target's own loop, whether the target has a run task right now."""

    target: ActorRef[Any]


class Inspector(Actor[Inspect]):
    async def receive(self, message: Inspect) -> bool:
        return message.target._cell.task is not None  # pyright: ignore[reportPrivateUsage]


class TaskOf(actors.Request[int], frozen=True):
    """Ask, from the target's own loop, for the id of the target's run task (0: none)."""

    target: ActorRef[Any]


class TaskInspector(Actor[TaskOf]):
    async def receive(self, message: TaskOf) -> int:
        task = message.target._cell.task  # pyright: ignore[reportPrivateUsage]
        return 0 if task is None else id(task)


async def test_an_idle_actor_parks_its_task_then_has_none() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder)
        inspector = await system.spawn(TaskInspector)  # same loop: runs between ref's turns
        assert await inspector.ask(TaskOf(ref)) == 0  # never sent anything: no task at all
        with anyio.fail_after(WAIT):
            release = await park(ref)
            busy = await inspector.ask(TaskOf(ref))
            assert busy != 0  # busy: a task exists
            for n in range(100):
                ref.try_send(Tick(n))
            release.set()
            assert await ref.ask(Count()) == 100
            # Run dry, the task parks: the next message resumes the same task.
            assert await inspector.ask(TaskOf(ref)) == busy
            assert await ref.ask(Count()) == 100
            assert await inspector.ask(TaskOf(ref)) == busy
            # Idle through a sweep or two of its loop, it is retired: no task any more.
            began = time.monotonic()
            while await inspector.ask(TaskOf(ref)) != 0:  # noqa: ASYNC110  # time-driven
                await anyio.sleep(PARK_IDLE / 10)
            assert time.monotonic() - began < 3 * PARK_IDLE + 1.0
            assert await ref.ask(Count()) == 100  # and a new one starts when needed


@contextlib.contextmanager
def posts_to(loop: asyncio.AbstractEventLoop) -> Iterator[list[object]]:
    """Record every callback posted to ``loop`` from other threads while the block runs."""
    real = loop.call_soon_threadsafe
    calls: list[object] = []

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(callback)
        return real(callback, *args, **kwargs)

    setattr(loop, "call_soon_threadsafe", counting)  # noqa: B010
    try:
        yield calls
    finally:
        delattr(loop, "call_soon_threadsafe")


async def test_a_burst_of_cross_loop_sends_to_an_idle_actor_wakes_it_once() -> None:
    gate = ThreadGate()
    async with ActorSystem(workers=1, use_uvloop=False) as system:
        sink = await system.spawn(Recorder, capacity=100)
        blocker = await system.spawn(lambda: Blocker(gate))
        loop = sink._cell.home.loop  # pyright: ignore[reportPrivateUsage]
        try:
            with anyio.fail_after(WAIT):
                await blocker.send(Block())
                await gate.entered.wait()  # the loop is stuck: sink stays idle, untouched
                with posts_to(loop) as calls:
                    for n in range(100):
                        sink.try_send(Tick(n))
        finally:
            gate.open()
        assert len(calls) == 1
        with anyio.fail_after(WAIT):
            assert await sink.ask(Seen()) == tuple(range(100))


class Observe(msgspec.Struct, frozen=True):
    pass


class Observed(actors.Request[int], frozen=True):
    pass


class Hot(Actor[Tick | Block]):
    def __init__(self, gate: ThreadGate, handled: list[int]) -> None:
        self.gate = gate
        self.handled = handled

    async def receive(self, message: Tick | Block) -> None:
        if isinstance(message, Block):
            self.gate.block()
        else:
            self.handled.append(message.n)  # no await: only the runtime can yield the loop


class Cold(Actor[Observe | Observed]):
    def __init__(self, hot_handled: list[int]) -> None:
        self.hot_handled = hot_handled  # same loop as Hot: read between Hot's turns
        self.observed = -1

    async def receive(self, message: Observe | Observed) -> int:
        if isinstance(message, Observe):
            self.observed = len(self.hot_handled)
        return self.observed


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio-workers", "uvloop-workers"])
async def test_L5_a_hot_actor_does_not_starve_a_cold_one_on_the_same_loop(
    use_uvloop: bool,
) -> None:
    """With throughput=4 the hot actor yields its loop every 4 messages.

    The cold actor's wake-up is queued while the loop is blocked, behind nothing but the
    hot actor's first turn, so it must run long before the hot mailbox is drained.
    """
    if use_uvloop:
        pytest.importorskip("uvloop")
    depth, throughput = 2000, 4
    handled: list[int] = []
    gate = ThreadGate()
    async with ActorSystem(workers=1, throughput=throughput, use_uvloop=use_uvloop) as system:
        hot = await system.spawn(lambda: Hot(gate, handled), capacity=depth)
        cold = await system.spawn(lambda: Cold(handled))
        try:
            with anyio.fail_after(WAIT):
                await hot.send(Block())
                await gate.entered.wait()
                for n in range(depth):
                    hot.try_send(Tick(n))
                cold.try_send(Observe())
        finally:
            gate.open()
        with anyio.fail_after(WAIT):
            observed = await cold.ask(Observed())
    assert 0 <= observed <= 10 * throughput < depth
    assert handled == list(range(depth))  # and the hot actor did get through all of it


async def test_an_ended_actor_nobody_refers_to_is_freed_without_the_garbage_collector() -> None:
    # No reference cycle survives an actor's end (its ref, its mailbox's wake-up and its
    # termination latch are not cycles once it ended): reference counting frees it, so
    # creation-heavy programs do not feed the cycle collector a cell per actor.
    import gc

    from actors._cell import Cell

    def cells_named(prefix: str) -> int:
        return sum(1 for o in gc.get_objects() if type(o) is Cell and o.name.startswith(prefix))

    async with ActorSystem(workers=1) as system:
        gc.collect()
        gc.disable()
        try:
            with anyio.fail_after(WAIT):
                refs = [
                    await system.spawn(
                        Recorder, name=f"short-lived-{i}", restart=actors.Restart.TEMPORARY
                    )
                    for i in range(50)
                ]
                for ref in refs:
                    await ref.send(Tick(1))
                for ref in refs:
                    await ref.stop()
                assert cells_named("short-lived-") == 50  # the refs keep them
                del refs, ref
                await anyio.lowlevel.checkpoint()
            assert cells_named("short-lived-") == 0
        finally:
            gc.enable()


# -- spawning from the host (issue 13, item 9) -----------------------------------------------


class InitSends(Recorder):
    """Sends itself Tick(-1) from __init__: its spawn has something to hand to its loop."""

    def __init__(self) -> None:
        super().__init__()
        self.ref.try_send(Tick(-1))


class Threads(actors.Request[tuple[int, int]], frozen=True):
    """Ask for the thread that ran __init__ and the one running this handler."""


class WhereBuilt(Actor[Threads]):
    def __init__(self) -> None:
        self.built_on = threading.get_ident()

    async def receive(self, message: Threads) -> tuple[int, int]:
        return (self.built_on, threading.get_ident())


async def test_a_host_spawn_runs_the_factory_on_the_host_and_handlers_on_the_worker() -> None:
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            ref = await system.spawn(WhereBuilt)
            built_on, handled_on = await ref.ask(Threads())
    assert built_on == threading.get_ident()  # the spawner's thread: no round trip
    assert handled_on != built_on  # the worker's


async def test_many_host_spawns_then_sends_reach_every_actor_in_order() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            refs = [await system.spawn(InitSends if i % 2 else Recorder) for i in range(600)]
            for n in range(5):
                for ref in refs:
                    await ref.send(Tick(n))
            for i, ref in enumerate(refs):
                first = (-1,) if i % 2 else ()  # what __init__ sent comes first
                assert await ref.ask(Seen()) == (*first, 0, 1, 2, 3, 4)


class Boom(Exception):
    pass


FACTORY_ERRORS: dict[str, type[BaseException]] = {
    "Boom": Boom,
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
}


def raising_factory(kind: str) -> Any:
    def factory() -> Recorder:
        raise FACTORY_ERRORS[kind]("from the factory")

    return factory


def check_factory_error(error: BaseException, kind: str, path: str) -> None:
    if kind == "Boom":
        assert type(error) is Boom
        return
    # Never the KeyboardInterrupt itself: a failure of that actor, not of the spawner.
    assert type(error) is RuntimeError
    assert type(error.__cause__) is FACTORY_ERRORS[kind]
    assert str(error) == f"the factory of actor {path} raised {kind}"


@pytest.mark.parametrize("kind", list(FACTORY_ERRORS))
async def test_a_host_spawn_whose_factory_raises_raises_there_and_leaves_no_actor(
    kind: str,
) -> None:
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            with pytest.raises(BaseException) as caught:  # noqa: PT011  # checked below
                await system.spawn(raising_factory(kind), name="x")
            check_factory_error(caught.value, kind, "/user/x")
            assert system.lookup("/user/x") is None
            ref = await system.spawn(Recorder, name="x")  # the name is free again
            await ref.send(Tick(1))
            assert await ref.ask(Seen()) == (1,)


class SpawnRaising(actors.Request[str], frozen=True):
    """Ask a `Spawner` to spawn a child named ``child`` whose factory raises ``kind``."""

    kind: str
    placement: int


class Spawner(Actor[SpawnRaising]):
    async def receive(self, message: SpawnRaising) -> str:
        try:
            await self.spawn(
                raising_factory(message.kind), name="child", placement=message.placement
            )
        except BaseException as error:  # the test looks at what came back
            try:
                check_factory_error(error, message.kind, f"{self.ref.path}/child")
            except AssertionError as wrong:
                return f"wrong error {error!r}: {wrong}"
            return "raised"
        return "spawned"


@pytest.mark.parametrize("kind", list(FACTORY_ERRORS))
@pytest.mark.parametrize("where", ["own loop", "other loop"])
async def test_a_child_whose_factory_raises_fails_its_spawn_only(kind: str, where: str) -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            parent = await system.spawn(Spawner, placement=0)
            placement = 0 if where == "own loop" else 1
            assert await parent.ask(SpawnRaising(kind, placement)) == "raised"
            assert system.lookup(f"{parent.path}/child") is None
            assert parent.is_alive  # the parent itself did not fail
            assert await parent.ask(SpawnRaising(kind, placement)) == "raised"  # name free


class StartsInInit(Actor[Tick | Seen]):
    """From __init__: sends itself a message, starts a timer, and watches another actor."""

    def __init__(self, target: ActorRef[Any], ticks: Countdown, ended: Flag) -> None:
        self.seen: list[int] = []
        self.ticks = ticks
        self.ended = ended
        self.ref.try_send(Tick(1))
        self.timer = self.send_after(0.0, Tick(2))
        self.watch(target)

    async def receive(self, message: Tick | Seen) -> tuple[int, ...] | None:
        match message:
            case Tick(n):
                self.seen.append(n)
                self.ticks.tick()
            case Seen():
                return tuple(sorted(self.seen))
        return None

    async def on_terminated(self, event: actors.Terminated) -> None:
        self.seen.append(99)
        self.ended.set()


async def test_init_may_send_to_itself_start_a_timer_and_watch_from_a_host_spawn() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            target = await system.spawn(Recorder, placement=1)
            ticks, ended = Countdown(2), Flag()
            ref = await system.spawn(lambda: StartsInInit(target, ticks, ended), placement=0)
            await ticks.done.wait()  # the message from __init__ and the timer's tick
            await target.stop()
            await ended.wait()  # the watch made in __init__ holds
            assert await ref.ask(Seen()) == (1, 2, 99)


class SlowStart(Actor[Count]):
    def __init__(self, entered: Flag, release: Flag) -> None:
        self.entered = entered
        self.release = release
        self.ready = False

    async def on_start(self) -> None:
        self.entered.set()
        await self.release.wait()
        self.ready = True

    async def receive(self, message: Count) -> int:
        return int(self.ready)


async def test_a_host_spawn_with_on_start_still_waits_for_it() -> None:
    entered, release, returned = Flag(), Flag(), Flag()
    refs: list[ActorRef[Count]] = []

    async with ActorSystem(workers=1) as system:

        async def spawner() -> None:
            refs.append(await system.spawn(lambda: SlowStart(entered, release)))
            returned.set()

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(spawner)
                await entered.wait()
                assert not returned.is_set()  # on_start is running: spawn has not returned
                release.set()
                await returned.wait()
            assert await refs[0].ask(Count()) == 1


class QuickStart(Recorder):
    """Has an on_start (its spawn waits for the home loop), which does nothing."""

    async def on_start(self) -> None:
        pass


SPAWNERS = 3


async def test_many_host_spawns_racing_shutdown_lose_nothing_and_hang_nowhere() -> None:
    # Spawners on loops of their own (threads), so that they really race the shutdown; each
    # spawns until the system refuses, idle actors, ones whose __init__ sends to itself
    # (a hand-over), and ones with an on_start (a wait for the home loop).
    system = ActorSystem(workers=2)
    await system.start()
    going = Countdown(SPAWNERS)
    spawned: list[list[ActorRef[Any]]] = [[] for _ in range(SPAWNERS)]
    unexpected: list[BaseException] = []

    async def spawn_until_refused(mine: list[ActorRef[Any]]) -> None:
        kinds = (Recorder, InitSends, QuickStart)
        for i in itertools.count():
            try:
                mine.append(await system.spawn(kinds[i % 3]))
            except (actors.SystemNotRunning, actors.ActorStopped):
                return
            if i == 50:
                going.tick()

    def spawner(mine: list[ActorRef[Any]]) -> None:
        try:
            asyncio.run(spawn_until_refused(mine))
        except BaseException as error:  # reported by the test
            unexpected.append(error)
            going.tick()

    threads = [
        threading.Thread(target=spawner, args=(spawned[i],), name=f"spawner-{i}")
        for i in range(SPAWNERS)
    ]
    for thread in threads:
        thread.start()
    try:
        with anyio.fail_after(WAIT):
            await going.done.wait()
            await system.shutdown()
    finally:
        await system.shutdown()
        for thread in threads:
            await anyio.to_thread.run_sync(thread.join, WAIT)
    assert not unexpected
    assert all(not thread.is_alive() for thread in threads)
    refs = [ref for mine in spawned for ref in mine]
    assert len(refs) > SPAWNERS * 50
    with anyio.fail_after(WAIT):
        for ref in refs:
            assert await ref.join() is None  # ended, and stopped rather than failed
    assert all(system.lookup(ref.path) is None for ref in refs)
    assert system.cells()[1:] == []  # nothing left in the tree but the root


async def test_host_spawns_hand_over_to_their_loop_in_batches() -> None:
    # Worker 0 is held in a handler, so nothing handed to it runs yet: every hand-over of the
    # spawns below falls into one batch. Without batching, each spawn would post its own
    # callback (and, before spawns were built on the host, wait for it: a hang here).
    gate = ThreadGate()
    async with ActorSystem(workers=1, use_uvloop=False, blocked_threshold=None) as system:
        blocker = await system.spawn(lambda: Blocker(gate))
        loop = blocker._cell.home.loop  # pyright: ignore[reportPrivateUsage]
        try:
            with anyio.fail_after(WAIT):
                await blocker.send(Block())
                await gate.entered.wait()
                with posts_to(loop) as calls:
                    idle = [await system.spawn(Recorder) for _ in range(200)]
                    assert calls == []  # nothing to run: handed over without a call
                    busy = [await system.spawn(InitSends) for _ in range(200)]
                    assert len(calls) == 1  # one batch for the 200 that had a message
        finally:
            gate.open()
        with anyio.fail_after(WAIT):
            for ref in busy:
                await ref.send(Tick(0))
                assert await ref.ask(Seen()) == (-1, 0)
            for ref in idle:
                await ref.send(Tick(0))
                assert await ref.ask(Seen()) == (0,)


class WantsLoop(Actor[Count]):
    """Takes the running loop in __init__ (belongs in on_start)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()

    async def receive(self, message: Count) -> int:
        return 0


async def test_init_of_a_host_spawn_sees_no_event_loop_rather_than_the_hosts(
    anyio_backend_name: str,
) -> None:
    # A loop taken in __init__ would be the spawner's, not the one the actor runs on: a
    # task or future made on it would live outside the actor. It fails the spawn instead.
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            with pytest.raises(RuntimeError, match="no running event loop"):
                await system.spawn(WantsLoop, name="loopy")
            assert system.lookup("/user/loopy") is None
            if anyio_backend_name == "asyncio":
                asyncio.get_running_loop()  # the host's own is back
            await system.spawn(Recorder, name="loopy")  # the name is free


class BuiltSlowly(Recorder):
    """Its factory waits for the test (on the spawner's thread); maybe an on_start that hangs."""

    def __init__(self, entered: Flag, release: threading.Event) -> None:
        super().__init__()
        entered.set()
        release.wait(WAIT)


class BuiltSlowlyStartsForever(BuiltSlowly):
    async def on_start(self) -> None:
        await Flag().wait()  # until killed


@pytest.mark.parametrize("on_start", [False, True])
async def test_a_kill_while_the_factory_runs_on_the_spawners_thread_is_carried_out(
    on_start: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # drain_timeout=0: the shutdown kills the actor while its factory still runs on the
    # spawner's thread; the kill must end it once it is handed over, not be lost (the
    # shutdown would then abandon it after the kill's grace) nor race its construction.
    entered, release = Flag(), threading.Event()
    kind = BuiltSlowlyStartsForever if on_start else BuiltSlowly
    outcome: list[object] = []
    system = ActorSystem(workers=1, drain_timeout=0)
    await system.start()

    def spawner() -> None:
        async def spawn() -> None:
            try:
                outcome.append(await system.spawn(lambda: kind(entered, release), name="slow"))
            except actors.ActorStopped as error:
                outcome.append(error)

        asyncio.run(spawn())

    thread = threading.Thread(target=spawner, name="spawner")
    thread.start()
    try:
        with anyio.fail_after(WAIT):
            await entered.wait()
            cell = system.tree.find("/user/slow")
            assert cell is not None
            building: Any = cell.task  # the marker a kill notes itself in
            async with anyio.create_task_group() as tg:
                tg.start_soon(system.shutdown)
                await wait_until(lambda: building.killed)
                release.set()
    finally:
        release.set()
        await system.shutdown()
        await anyio.to_thread.run_sync(thread.join, WAIT)
    assert "abandoning" not in caplog.text
    (result,) = outcome
    if on_start:
        assert isinstance(result, actors.ActorStopped)  # stopped while starting
    else:
        assert isinstance(result, ActorRef)
        with anyio.fail_after(WAIT):
            assert await result.join() is None
    assert system.lookup("/user/slow") is None
