"""The drain (`Cell._drain` in ``actors/_cell.py``): a synchronous handler's actor runs as a
loop callback, without a task, and hands everything unusual to its run task.

Each test names the path it covers: the task-less wake-up, life and timer ticks, every
fallback (a failure, stop, kill, suspension and restart, ``become`` to an async handler and
back, stash and unstash), fairness, senders on every kind of thread and loop, moves and
evacuations, the dead-letter invariant under stops and kills (seeded random rounds in one
system rather than hypothesis, whose shrinking would restart threads and loops per example;
the seed replays a failure), and what a handler sees (``in_handler``, anyio, deadlines).
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import threading
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import msgspec
import pytest
import sniffio
from _support import WAIT, Countdown, ThreadGate, wait_until

import actors
from actors import Actor, ActorSystem, OneForAll
from actors._cell import _DRAIN_TEMPLATE, Cell  # pyright: ignore[reportPrivateUsage]
from actors._ref import cell_of

pytestmark = pytest.mark.anyio


class Note(msgspec.Struct, frozen=True):
    n: int
    sender: int = 0


class Fail(msgspec.Struct, frozen=True):
    pass


class Quit(msgspec.Struct, frozen=True):
    pass


class Block(msgspec.Struct, frozen=True):
    gate: ThreadGate


class Log(actors.Request[tuple[tuple[int, int, bool], ...]], frozen=True):
    """The (sender, n, in a task) of every Note handled by this instance, in order."""


class Probe(actors.Request[tuple[bool, bool, bool, str, float | None]], frozen=True):
    """In a task? in_handler (own, other's)? sniffio's library, the deadline."""

    other: actors.ActorRef[Any]


actors.register_sendable(ThreadGate)

Msg = Note | Fail | Quit | Block | Log | Probe


class Journal(Actor[Msg]):
    """Synchronous throughout: records every Note, and whether a task ran it."""

    def __init__(self, handled: Countdown | None = None, seen: list[int] | None = None) -> None:
        self.log: list[tuple[int, int, bool]] = []
        self.handled = handled
        self.seen = seen  # shared with the test: every n handled, across restarts

    def receive(self, message: Msg) -> Any:
        match message:
            case Note(n, sender):
                self.log.append((sender, n, asyncio.current_task() is not None))
                if self.seen is not None:
                    self.seen.append(n)
                if self.handled is not None:
                    self.handled.tick()
            case Fail():
                raise ValueError("told to fail")
            case Quit():
                self.stop()
            case Block(gate):
                gate.block()
            case Log():
                return tuple(self.log)
            case Probe(other):
                own = self._actors_cell
                return (
                    asyncio.current_task() is not None,
                    own.in_handler(),
                    cell_of(other).in_handler(),
                    sniffio.current_async_library(),
                    actors.deadline(),
                )
        return None


async def test_an_idle_sync_actor_is_woken_without_a_task(spawned_tasks: list[str]) -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Journal, name="idle")
        cell = cell_of(ref)
        with anyio.fail_after(WAIT):
            for burst in range(5):  # each burst finds the actor idle
                await ref.send(Note(burst))
                await ref.ask(Log())
                # Idle once the drain returns (the reply may reach us before): no task, no
                # parked future.
                await wait_until(lambda: cell.task is None)
                assert cell.parked is None
            log = await ref.ask(Log())
    assert [n for _, n, _ in log] == list(range(5))
    assert not any(in_task for _, _, in_task in log)
    assert "/user/idle" not in spawned_tasks


async def test_a_whole_life_takes_no_task(spawned_tasks: list[str]) -> None:
    """Spawned, sent one message, stopped by its own handler, joined: no task at all."""
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            ref = await system.spawn(Journal, name="brief", restart=actors.Restart.TEMPORARY)
            await ref.send(Note(1))
            await ref.send(Quit())
            await ref.join()
            assert cell_of(ref).outcome == "stopped"
    assert "/user/brief" not in spawned_tasks


async def test_a_failure_in_a_drained_handler_restarts_it_and_loses_nothing() -> None:
    """The failed tell is the only one lost; those queued behind it reach the new instance,
    in order, and an ask that fails gets the error."""
    seen: list[int] = []
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: Journal(seen=seen))
        gate = ThreadGate()
        with anyio.fail_after(WAIT):
            await ref.send(Block(gate))  # queue the rest behind a held loop: one burst
            await gate.entered.wait()
            await ref.send_many([Note(1), Fail(), Note(2), Note(3)])
            gate.open()
            await wait_until(lambda: len(seen) == 3)
            log = await ref.ask(Log())  # the new instance's
            assert [n for _, n, _ in log] == [2, 3]
            with pytest.raises(ValueError, match="told to fail"):
                await ref.ask(Fail())  # an ask fails its asker, and the actor
            await ref.send(Note(4))
            assert [n for _, n, _ in await ref.ask(Log())] == [4]
    assert seen == [1, 2, 3, 4]
    assert cell_of(ref).incarnation == 2


async def test_a_stop_drains_the_queue_then_ends_without_a_task(
    spawned_tasks: list[str],
) -> None:
    handled = Countdown(50)
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: Journal(handled), name="drained")
        gate = ThreadGate()
        blocker = await system.spawn(Journal, placement=0)
        with anyio.fail_after(WAIT):
            await blocker.send(Block(gate))
            await gate.entered.wait()
            await ref.send_many([Note(i) for i in range(50)])
            async with anyio.create_task_group() as group:
                group.start_soon(ref.stop)  # from the host: drains what was accepted
                await wait_until(lambda: ref.statistics().status == "stopping")
                gate.open()
            await handled.done.wait()
    assert "/user/drained" not in spawned_tasks


@pytest.mark.parametrize("when", ["idle", "queued", "in the handler"])
async def test_a_kill_ends_a_drained_actor_and_accounts_for_every_message(when: str) -> None:
    seen: list[int] = []
    async with ActorSystem(workers=1) as system:
        before = system.dead_letters.count
        ref = await system.spawn(lambda: Journal(seen=seen))
        blocker = await system.spawn(Journal, placement=0)
        cell = cell_of(ref)
        gate = ThreadGate()
        with anyio.fail_after(WAIT):
            await ref.ask(Log())  # started, idle
            if when == "idle":
                cell.kill()
                sent = 0
            else:
                holder = ref if when == "in the handler" else blocker
                await holder.send(Block(gate))
                await gate.entered.wait()
                sent = 20
                await ref.send_many([Note(i) for i in range(sent)])  # a drain is due, or runs
                cell.kill()
                gate.open()
            await ref.join()
    assert cell.outcome == "stopped"
    dead = system.dead_letters.count - before
    assert len(seen) + dead == sent
    if when != "idle":
        assert seen == []  # the kill came before any of them: none handled


class KillThenFail(list[int]):
    """A journal list whose append kills the actor, then fails its handler."""

    cell: Cell | None = None

    def append(self, n: int) -> None:
        assert self.cell is not None
        self.cell.kill()  # in the handler: the drain meets the KILL at its next boundary
        raise ValueError("failed with a kill pending")


async def test_a_kill_pending_when_a_drained_handler_fails_was_for_that_instance() -> None:
    """The failure ends the instance the kill was for (in place, no task): the restarted
    instance must not take the KILL signal left in its control lane for its own."""
    seen = KillThenFail()
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: Journal(seen=seen))
        seen.cell = cell_of(ref)
        with anyio.fail_after(WAIT):
            await ref.send(Note(1))
            await wait_until(lambda: seen.cell is not None and seen.cell.incarnation == 1)
            assert await ref.ask(Log()) == ()  # the new instance runs, not killed
    assert seen.cell.outcome == "stopped"


class Kids(actors.Request[tuple[actors.ActorRef[Msg], ...]], frozen=True):
    pass


class Boss(Actor[Kids]):
    """Synchronous; its two synchronous children restart together (OneForAll)."""

    supervision = OneForAll()

    def receive(self, message: Kids) -> tuple[actors.ActorRef[Msg], ...]:
        return tuple(self.spawn_soon(Journal, name=f"kid-{i}") for i in range(2))


async def test_a_group_restart_suspends_and_restarts_drained_siblings() -> None:
    async with ActorSystem(workers=1) as system:
        boss = await system.spawn(Boss)
        with anyio.fail_after(WAIT):
            first, second = await boss.ask(Kids())
            await second.send(Note(7))
            assert [n for _, n, _ in await second.ask(Log())] == [7]
            await first.send(Fail())  # the sibling is suspended and restarted too
            await wait_until(lambda: cell_of(second).incarnation == 1)
            assert await second.ask(Log()) == ()  # a fresh instance
            await first.send(Note(1))
            await second.send(Note(2))
            assert [n for _, n, _ in await first.ask(Log())] == [1]
            assert [n for _, n, _ in await second.ask(Log())] == [2]


class Turn(msgspec.Struct, frozen=True):
    to_async: bool


class Shifter(Actor[Note | Turn | Log]):
    """Synchronous, until a Turn makes its handler async (and another makes it sync again)."""

    def __init__(self) -> None:
        self.log: list[tuple[int, int, bool]] = []

    def receive(self, message: Note | Turn | Log) -> Any:
        return self.handle(message)

    def handle(self, message: Note | Turn | Log) -> Any:
        match message:
            case Note(n):
                self.log.append((0, n, asyncio.current_task() is not None))
            case Turn(to_async):
                self.become(self.async_handle if to_async else self.handle)
            case Log():
                return tuple(self.log)
        return None

    async def async_handle(self, message: Note | Turn | Log) -> Any:
        await asyncio.sleep(0)  # a real await: this handler needs its task
        return self.handle(message)


async def test_become_sync_async_sync_in_one_burst_keeps_the_order() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Shifter)
        gate = ThreadGate()
        blocker = await system.spawn(Journal, placement=0)
        with anyio.fail_after(WAIT):
            await blocker.send(Block(gate))
            await gate.entered.wait()
            await ref.send_many(
                [Note(1), Turn(True), Note(2), Note(3), Turn(False), Note(4)]  # one burst
            )
            gate.open()
            log = await ref.ask(Log())
            assert [n for _, n, _ in log] == [1, 2, 3, 4]
            in_task = [t for _, _, t in log]
            assert in_task[:3] == [False, True, True]  # drained, then the run task's
            # The run task ends once dry (it may linger a loop turn first), not parked.
            await wait_until(lambda: cell_of(ref).task is None)
            await ref.send(Note(5))  # idle again, synchronous: drained again
            log = await ref.ask(Log())
    assert log[-1] == (0, 5, False)


class Open(msgspec.Struct, frozen=True):
    pass


class Echo(actors.Request[int], frozen=True):
    n: int


class Stasher(Actor[Note | Open | Echo | Log]):
    """Synchronous: stashes Notes and Echoes until Open, then unstashes them in order."""

    def __init__(self) -> None:
        self.open = False
        self.log: list[tuple[int, int, bool]] = []

    def receive(self, message: Note | Open | Echo | Log) -> Any:
        match message:
            case Open():
                self.open = True
                self.unstash_all()
            case Note(n) | Echo(n) if not self.open:
                self.stash(message)
            case Note(n):
                self.log.append((0, n, asyncio.current_task() is not None))
            case Echo(n):
                self.log.append((0, n, asyncio.current_task() is not None))
                return n
            case Log():
                return tuple(self.log)
        return None


async def test_stash_and_unstash_from_a_drained_handler() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Stasher)
        with anyio.fail_after(WAIT):
            await ref.send(Note(1))
            replies: list[int] = []
            async with anyio.create_task_group() as group:

                async def echo() -> None:
                    replies.append(await ref.ask(Echo(2)))

                group.start_soon(echo)
                await wait_until(lambda: ref.statistics().mailbox.depth == 0)
                await ref.send(Note(3))
                await ref.send(Open())
            await ref.send(Note(4))
            log = await ref.ask(Log())
    assert [n for _, n, _ in log] == [1, 2, 3, 4]
    assert replies == [2]


class Slow(Actor[Echo]):
    """Asynchronous: answers how many Notes the floods had handled when it ran."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    async def receive(self, message: Echo) -> int:
        return len(self.seen)


async def test_flooding_sync_actors_take_turns_and_an_async_one_still_runs() -> None:
    seen: list[int] = []
    async with ActorSystem(workers=1, throughput=8, blocked_threshold=None) as system:
        first = await system.spawn(lambda: Journal(seen=seen), placement=0)
        second = await system.spawn(lambda: Journal(seen=seen), placement=0)
        other = await system.spawn(lambda: Slow(seen), placement=0)
        gate = ThreadGate()
        blocker = await system.spawn(Journal, placement=0)
        with anyio.fail_after(WAIT):
            await blocker.send(Block(gate))
            await gate.entered.wait()
            await first.send_many([Note(1)] * 400)
            await second.send_many([Note(2)] * 400)
            answered: list[int] = []
            async with anyio.create_task_group() as group:

                async def ask() -> None:
                    answered.append(await other.ask(Echo(0)))

                group.start_soon(ask)
                await wait_until(lambda: other.statistics().mailbox.depth == 1)
                gate.open()
            await wait_until(lambda: len(seen) == 800)
    assert answered[0] < 800  # the async actor ran before the floods were through
    runs: list[int] = []
    for n in seen:
        if not runs or runs[-1] != n:
            runs.append(n)
    assert len(runs) >= 50  # turns of at most ``throughput`` (8) each: about 100 runs
    assert max(_run_lengths(seen)) <= 8


def _run_lengths(values: list[int]) -> list[int]:
    lengths: list[int] = []
    previous = None
    for value in values:
        if value == previous:
            lengths[-1] += 1
        else:
            lengths.append(1)
            previous = value
    return lengths


class Pump(msgspec.Struct, frozen=True):
    target: actors.ActorRef[Msg]
    sender: int
    count: int


class Producer(Actor[Pump]):
    """Synchronous producer on its own loop: try_send until accepted."""

    def receive(self, message: Pump) -> None:
        for n in range(message.count):
            message.target.try_send(Note(n, message.sender))


async def test_senders_on_every_loop_and_thread_keep_their_order() -> None:
    per_sender, threads = 300, 3
    async with ActorSystem(workers=3) as system:
        total = per_sender * (3 + threads + 1)
        handled = Countdown(total)
        target = await system.spawn(lambda: Journal(handled), placement=0, capacity=total)
        with anyio.fail_after(WAIT * 3):
            for loop in range(3):  # same-loop and cross-loop producers
                producer = await system.spawn(Producer, placement=loop)
                await producer.send(Pump(target, loop, per_sender))

            def plain(sender: int) -> None:
                for n in range(per_sender):
                    target.blocking_send(Note(n, sender))

            workers = [threading.Thread(target=plain, args=(10 + i,)) for i in range(threads)]
            for worker in workers:
                worker.start()
            for n in range(per_sender):  # the host task
                await target.send(Note(n, 99))
            await anyio.to_thread.run_sync(lambda: [worker.join() for worker in workers])
            await handled.done.wait()
            log = await target.ask(Log())
    assert len(log) == total
    by_sender: dict[int, list[int]] = {}
    for sender, n, _ in log:
        by_sender.setdefault(sender, []).append(n)
    assert len(by_sender) == 3 + threads + 1
    for ns in by_sender.values():
        assert ns == list(range(per_sender))


async def test_processed_plus_dead_letters_plus_refused_is_sent_under_stops_and_kills() -> None:
    rng = random.Random(17)
    async with ActorSystem(workers=2) as system:
        for round_ in range(20):
            seen: list[int] = []
            before = system.dead_letters.count
            ref = await system.spawn(
                lambda seen=seen: Journal(seen=seen),
                placement=rng.randrange(2),
                restart=actors.Restart.TEMPORARY,
            )
            cell = cell_of(ref)
            sent = refused = 0
            end_at = rng.randrange(60)
            how = rng.choice(["stop", "kill", "quit"])
            with anyio.fail_after(WAIT):
                for n in range(60):
                    if n == end_at:
                        if how == "stop":
                            await ref.stop()
                        elif how == "kill":
                            cell.kill()
                        else:
                            ref.try_send(Quit())  # counted by neither side
                    try:
                        if rng.random() < 0.5:
                            ref.try_send(Note(n))
                        else:
                            await ref.send(Note(n))
                        sent += 1
                    except actors.ActorStopped:
                        refused += 1
                    if rng.random() < 0.2:
                        await anyio.lowlevel.checkpoint()
                await ref.join()
            dead = system.dead_letters.count - before
            assert len(seen) + dead + refused == sent + refused == 60, (round_, how)


async def test_a_drained_handler_sees_its_actor_anyio_and_its_deadline() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Journal)
        other = await system.spawn(Journal)
        with anyio.fail_after(WAIT):
            await other.ask(Log())
            in_task, own, others, library, left = await ref.ask(Probe(other), timeout=5.0)
    assert (in_task, own, others, library) == (False, True, False, "asyncio")
    assert left is not None
    assert 0 < left <= 5.0


class Now(actors.Request[float], frozen=True):
    pass


class Clocked(Actor[Now]):
    def receive(self, message: Now) -> float:
        return anyio.current_time()  # anyio finds its library without a task


async def test_anyio_works_in_a_drained_handler() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Clocked)
        with anyio.fail_after(WAIT):
            assert await ref.ask(Now()) > 0


async def test_the_watchdog_moves_a_drained_actor_off_a_loop_its_neighbour_blocks() -> None:
    async with ActorSystem(workers=2, blocked_threshold=1.0) as system:
        seen: list[int] = []
        gate = ThreadGate()
        with anyio.fail_after(WAIT):
            blocker = await system.spawn(Journal, placement=0)
            mover = await system.spawn(lambda: Journal(seen=seen))
            await mover.ask(Log())
            home = mover.statistics().loop
            if home != "0":  # the default placement put it elsewhere: block its loop instead
                blocker = await system.spawn(Journal, placement=int(home))
            await blocker.send(Block(gate))
            await gate.entered.wait()
            await wait_until(lambda: system.placer.worker(int(home)).blocked)
            await mover.send(Note(1))  # woken from the host: evacuated, not stuck behind
            await wait_until(lambda: seen == [1])
            assert mover.statistics().loop != home
            gate.open()


async def test_moves_and_evacuations_between_drains_keep_order_and_count() -> None:
    """Forced moves and watchdog-style evacuations hit drained actors at fairness turns and
    at rest, from a mover task and a thread, while the host and threads send. The host
    sends until at least one evacuation has happened (they need a run in progress)."""
    per_sender, threads = 400, 2
    seen: list[int] = []
    rng = random.Random(5)
    async with ActorSystem(workers=3, throughput=4, blocked_threshold=None) as system:
        target = await system.spawn(lambda: Journal(seen=seen), capacity=100_000)
        cell = cell_of(target)
        stop = threading.Event()
        moved = [0]

        def evacuator() -> None:
            chooser = random.Random(6)
            while not stop.is_set():
                home = system.placer.worker(chooser.randrange(3))
                if cell.evacuate_to(home, stuck_only=True):
                    home.loop.call_soon_threadsafe(cell.posted_start)
                    moved[0] += 1

        def plain(sender: int) -> None:
            for n in range(per_sender):
                target.blocking_send(Note(n, sender))

        helpers = [threading.Thread(target=evacuator)]
        helpers += [threading.Thread(target=plain, args=(10 + i,)) for i in range(threads)]
        host_sent = 0
        with anyio.fail_after(WAIT * 3):
            for helper in helpers:
                helper.start()
            try:
                while host_sent < per_sender or (moved[0] == 0 and host_sent < 50_000):
                    await target.send(Note(host_sent, 99))
                    host_sent += 1
                    if host_sent % 10 == 0:
                        cell.request_move(system.placer.worker(rng.randrange(3)))
                        await anyio.lowlevel.checkpoint()
            finally:
                stop.set()
                await anyio.to_thread.run_sync(lambda: [helper.join() for helper in helpers])
            total = per_sender * threads + host_sent
            await wait_until(lambda: len(seen) >= total)
            log = await target.ask(Log())
    assert moved[0] > 0
    assert len(log) == total
    by_sender: dict[int, list[int]] = {}
    for sender, n, in_task in log:
        by_sender.setdefault(sender, []).append(n)
        assert not in_task
    assert by_sender.pop(99) == list(range(host_sent))
    for ns in by_sender.values():
        assert ns == list(range(per_sender))


class Every(msgspec.Struct, frozen=True):
    seconds: float


class Ticker(Actor[Every | Note | Log]):
    """Synchronous: a periodic timer's Notes are logged like any other."""

    def __init__(self) -> None:
        self.log: list[tuple[int, int, bool]] = []

    def receive(self, message: Every | Note | Log) -> Any:
        match message:
            case Every(seconds):
                self.send_every(seconds, Note(-1))
            case Note(n):
                self.log.append((0, n, asyncio.current_task() is not None))
            case Log():
                return tuple(self.log)
        return None


async def test_a_periodic_timer_ticks_into_a_drain_without_a_task(
    spawned_tasks: list[str],
) -> None:
    clock = actors.ManualClock()
    async with ActorSystem(workers=1, clock=clock) as system:
        ref = await system.spawn(Ticker, name="ticker")
        with anyio.fail_after(WAIT):
            await ref.send(Every(1.0))
            await ref.ask(Log())  # the timer is set
            for n in range(5):
                clock.advance(1.0)
                while len(await ref.ask(Log())) != n + 1:  # noqa: ASYNC110  # no tick event
                    await anyio.sleep(0.001)
            await ref.send(Note(7))
            log = await ref.ask(Log())
    assert [n for _, n, _ in log] == [-1] * 5 + [7]
    assert not any(in_task for _, _, in_task in log)
    assert "/user/ticker" not in spawned_tasks


# -- each actor's own context, made from a shared template --------------------------------------

_mark: contextvars.ContextVar[str | None] = contextvars.ContextVar("test_drain_mark", default=None)


class Mark(actors.Request[str | None], frozen=True):
    """Set the test's context variable to ``value``; reply with what it held before."""

    value: str


class Marker(Actor[Mark]):
    def receive(self, message: Mark) -> str | None:
        seen = _mark.get()
        _mark.set(message.value)
        return seen


async def test_each_drained_actor_keeps_its_own_context_variables() -> None:
    # An actor's drain context is a copy of one template (`_DRAIN_TEMPLATE`): what a handler
    # sets stays in its own actor's context, for its next messages, and nowhere else.
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            first = await system.spawn(Marker)
            second = await system.spawn(Marker)
            assert await first.ask(Mark("first")) is None
            assert await second.ask(Mark("second")) is None  # nothing leaked from the first
            assert await first.ask(Mark("again")) == "first"  # kept between messages
            assert await second.ask(Mark("again")) == "second"
    assert _mark not in _DRAIN_TEMPLATE
    assert all(var.name != "actors_running_cell" for var in _DRAIN_TEMPLATE)
